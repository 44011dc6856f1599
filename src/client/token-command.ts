/**
 * `tokend token`: the command scripts call most (`$(tokend token work)`). Its sh fast
 * path is in bin/tokend; this is the full one, with options.
 */
import type { TokenRequest, TokenResponse } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { parseOptions, requireName, wholeSeconds } from './args.js';
import { EXIT, type Command } from './io.js';

export const TOKEN_HELP = `usage: tokend token NAME [--min-ttl S] [--scope S] [--audience A] [--json]
       tokend token --url URL [--min-ttl S] [--scope S] [--audience A] [--json]

Prints a valid access token of account NAME (or of the account whose --host patterns
match URL) on stdout, and nothing else, so \`$(tokend token NAME)\` works. The daemon
serves it from memory, or refreshes once for every caller that waits.

  --min-ttl S    the token must stay valid for S more seconds (default 30). A token can
                 satisfy at most half its own lifetime, so a larger S is clamped: you get
                 the freshest token, and a line on stderr says how long it lasts
  --scope S      a token with a narrower scope (refresh grant with scope), cached apart
  --audience A   a token for another resource (RFC 8707), cached apart
  --url URL      pick the account by URL instead of NAME
  --json         print {account, access_token, token_type, expires_at, expires_in, scope}

Exit status: 0 ok, 1 error (no such account, the provider unreachable), 2 bad usage,
3 the account needs a login (\`tokend login NAME\`).
`;

/** The options that shape a token request; `tokend exec` takes them too. */
export const TOKEN_REQUEST_OPTIONS = {
  'min-ttl': { type: 'string' },
  scope: { type: 'string' },
  audience: { type: 'string' },
} as const;

/** The body of POST /v1/token from those options. */
export function tokenRequest(
  target: { account: string } | { url: string },
  values: { 'min-ttl'?: string; scope?: string; audience?: string },
  command: string,
): TokenRequest {
  const body: TokenRequest = { ...target };
  const minTtl = wholeSeconds(values['min-ttl'], '--min-ttl', command);
  if (minTtl !== undefined) body.min_ttl = minTtl;
  if (values.scope) body.scope = values.scope;
  if (values.audience) body.audience = values.audience;
  return body;
}

/**
 * The daemon clamps min_ttl to half a token's lifetime (a provider issuing short tokens
 * must not cause a refresh per request); say so when the token falls short of what was asked.
 */
export function clampNote(tok: TokenResponse, minTtl: number | undefined): string | undefined {
  if (minTtl === undefined || tok.expires_in === null || tok.expires_in >= minTtl) return undefined;
  return (
    `tokend: this token of "${tok.account}" is valid for ${tok.expires_in} s, less than --min-ttl ${minTtl}: ` +
    'a token can satisfy at most half its own lifetime, so --min-ttl was clamped\n'
  );
}

export const tokenCommand: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions('token', args, {
    ...TOKEN_REQUEST_OPTIONS,
    url: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.help) {
    io.stdout(TOKEN_HELP);
    return EXIT.ok;
  }
  const target = values.url ? { url: values.url } : { account: requireName(positionals[0], 'token') };
  const body = tokenRequest(target, values, 'token');
  const tok = await client().json<TokenResponse>('POST', ROUTES.token, body);
  io.stdout(values.json ? JSON.stringify(tok, null, 2) + '\n' : tok.access_token + '\n');
  const note = clampNote(tok, body.min_ttl);
  if (note) io.stderr(note);
  return EXIT.ok;
};
