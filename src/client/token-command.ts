/**
 * `tokend token`: the command scripts call most (`$(tokend token work)`). Its sh fast
 * path is in bin/tokend; this is the full one, with options.
 */
import type { DpopProofRequest, DpopProofResponse, TokenRequest, TokenResponse } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { parseOptions, requireName, wholeSeconds } from './args.js';
import { EXIT, UsageError, type Command } from './io.js';

export const TOKEN_HELP = `usage: tokend token NAME [--min-ttl S] [--scope S] [--audience A] [--json]
       tokend token --url URL [--min-ttl S] [--scope S] [--audience A] [--json]
       tokend token NAME --dpop-for METHOD URL [--nonce N] [--json]

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
  --dpop-for METHOD URL
                 a DPoP account (tokend add --dpop): print the two headers of one
                 request to URL, \`Authorization: DPoP TOKEN\` and \`DPoP: PROOF\`; the
                 proof is signed by the daemon, which keeps the key. With --json:
                 {account, access_token, token_type, proof, expires_at}
  --nonce N      with --dpop-for: the nonce the API gave in DPoP-Nonce (RFC 9449 §9)

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
  const { values, positionals } = parseOptions(
    'token',
    args,
    {
      ...TOKEN_REQUEST_OPTIONS,
      url: { type: 'string' },
      json: { type: 'boolean' },
      'dpop-for': { type: 'string' },
      nonce: { type: 'string' },
    },
    2,
  );
  if (values.help) {
    io.stdout(TOKEN_HELP);
    return EXIT.ok;
  }
  if (values['dpop-for'] !== undefined) return dpopFor(values, positionals, io, client);
  if (positionals.length > 1) throw new UsageError(`too many arguments (at most 1, got ${positionals.length})`, 'token');
  if (values.nonce !== undefined) throw new UsageError('--nonce goes with --dpop-for', 'token');
  const target = values.url ? { url: values.url } : { account: requireName(positionals[0], 'token') };
  const body = tokenRequest(target, values, 'token');
  const tok = await client().json<TokenResponse>('POST', ROUTES.token, body);
  io.stdout(values.json ? JSON.stringify(tok, null, 2) + '\n' : tok.access_token + '\n');
  const note = clampNote(tok, body.min_ttl);
  if (note) io.stderr(note);
  return EXIT.ok;
};

/** `tokend token NAME --dpop-for METHOD URL`: the token and a proof for that one request (POST /v1/dpop/proof). */
async function dpopFor(
  values: { 'dpop-for'?: string; nonce?: string; json?: boolean; url?: string },
  positionals: string[],
  io: Parameters<Command>[1],
  client: Parameters<Command>[2],
): Promise<number> {
  if (values.url) throw new UsageError('--dpop-for names the account: tokend token NAME --dpop-for METHOD URL', 'token');
  const account = requireName(positionals[0], 'token');
  const url = positionals[1];
  if (!url)
    throw new UsageError('--dpop-for takes a method and a URL: tokend token NAME --dpop-for GET https://api.example.com/x', 'token');
  const body: DpopProofRequest = {
    account,
    htm: values['dpop-for']!.toUpperCase(),
    htu: url,
    ...(values.nonce ? { nonce: values.nonce } : {}),
  };
  const r = await client().json<DpopProofResponse>('POST', ROUTES.dpopProof, body);
  io.stdout(values.json ? JSON.stringify(r, null, 2) + '\n' : `Authorization: DPoP ${r.access_token}\nDPoP: ${r.proof}\n`);
  return EXIT.ok;
}
