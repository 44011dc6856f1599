/**
 * `tokend api NAME PATH`: one request to an account's API through the daemon's proxy, in
 * the spirit of `gh api`. The token never reaches this process: the daemon injects it.
 * The answer's body streams to stdout as it arrives (a large download never sits in memory).
 */
import fs from 'node:fs';
import type http from 'node:http';
import { Readable } from 'node:stream';
import { PROXY_ERROR_HEADER, ROUTES } from '../protocol/routes.js';
import { errorFromAnswer } from '../sdk/errors.js';
import { header } from '../sdk/socket-transport.js';
import { parseOptions, requireName } from './args.js';
import { EXIT, UsageError, type Command } from './io.js';

export const API_HELP = `usage: tokend api NAME PATH [-X METHOD] [-H 'Name: value']... [-d DATA | -d @FILE | -d @-] [--json]

Sends one request to account NAME's API (its api_base, set with \`tokend set NAME --api-base
URL\`) through the daemon, which adds the account's token: this process never sees it.
PATH is below api_base, with its query (e.g. /user or /v2/bookings?take=10). The body of
the answer goes to stdout as it arrives; the status goes to stderr when it is not 2xx.

  -X, --method METHOD     the method (default GET, or POST with -d)
  -H, --header 'K: V'     a request header (repeatable); Authorization and Cookie are
                          never sent (the daemon sends the account's token instead)
  -d, --data DATA         the request body: DATA as is, @FILE from a file, @- from stdin
  --json                  pretty-print a JSON answer

Exit status: 0 the API answered 2xx, 1 it answered something else (or could not be
reached), 2 bad usage, 3 the account needs a login.
`;

export const apiCommand: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions(
    'api',
    args,
    {
      method: { type: 'string', short: 'X' },
      header: { type: 'string', short: 'H', multiple: true },
      data: { type: 'string', short: 'd' },
      json: { type: 'boolean' },
    },
    2,
  );
  if (values.help) {
    io.stdout(API_HELP);
    return EXIT.ok;
  }
  const name = requireName(positionals[0], 'api');
  const path = positionals[1];
  if (!path) throw new UsageError('needs a PATH below the account api_base, e.g. /user', 'api');
  if (/^[a-z][a-z0-9+.-]*:/i.test(path)) throw new UsageError('PATH is a path below the account api_base, not a URL', 'api');
  const headers: Record<string, string> = {};
  for (const h of values.header ?? []) {
    const i = h.indexOf(':');
    if (i <= 0) throw new UsageError(`--header takes 'Name: value' (got "${h.slice(0, 40)}")`, 'api');
    headers[h.slice(0, i).trim().toLowerCase()] = h.slice(i + 1).trim();
  }
  const body = values.data === undefined ? undefined : dataSource(values.data);
  const method = (values.method ?? (body ? 'POST' : 'GET')).toUpperCase();
  if (!/^[A-Z]{1,16}$/.test(method)) throw new UsageError(`--method: "${method.slice(0, 20)}" is not an HTTP method`, 'api');

  // The transport starts the daemon when nothing listens (like every command's), before sending.
  const res = await client().stream(method, ROUTES.proxy(name, path), headers, body);
  const status = res.statusCode ?? 0;
  if (res.headers[PROXY_ERROR_HEADER] !== undefined) {
    // The daemon's own answer (no token, no such account): reported as every command's (cli.ts).
    throw errorFromAnswer(status, await readAll(res), header(res, 'retry-after'));
  }
  const isJson = /\bjson\b/i.test(String(res.headers['content-type'] ?? ''));
  if (values.json && isJson) {
    const text = await readAll(res);
    try {
      io.stdout(JSON.stringify(JSON.parse(text), null, 2) + '\n');
    } catch {
      io.stdout(text);
    }
  } else {
    for await (const chunk of res) io.stdout(chunk as string);
  }
  if (status < 200 || status > 299) {
    io.stderr(`tokend: ${name} answered HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}\n`);
    return EXIT.error;
  }
  return EXIT.ok;
};

function dataSource(data: string): Readable {
  if (data === '@-') return process.stdin;
  if (data.startsWith('@')) {
    const file = data.slice(1);
    if (!fs.existsSync(file)) throw new UsageError(`--data: no file ${file.slice(0, 200)}`, 'api');
    return fs.createReadStream(file);
  }
  return Readable.from([Buffer.from(data)]);
}

async function readAll(res: http.IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
