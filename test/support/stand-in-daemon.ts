/**
 * A stand-in for the daemon: an HTTP server on a Unix socket that records every request
 * (method, path, query, body) and answers what the test scripts. For CLI behaviour whose
 * daemon side is not there yet, and for answers a real daemon gives only in rare states.
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';

export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: http.IncomingHttpHeaders;
  /** The parsed JSON body, the raw text when it is not JSON, undefined when empty. */
  body: unknown;
}

export interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface StandInDaemon {
  socket: string;
  /** Env for the CLI: this socket, no autostart, a private TOKEND_HOME. */
  env: NodeJS.ProcessEnv;
  requests: RecordedRequest[];
  /** What to answer next; by default 404 not_found for everything. */
  answer: (req: RecordedRequest) => Answer;
  close(): Promise<void>;
}

export async function startStandInDaemon(): Promise<StandInDaemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-si-'));
  const socket = path.join(dir, 'tokend.sock');
  const standIn: StandInDaemon = {
    socket,
    env: cliEnv(dir, socket),
    requests: [],
    answer: () => ({ status: 404, body: { error: { code: 'not_found', message: 'not here' } } }),
    close: async () => {
      server.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://tokend');
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text === '' ? undefined : text;
      try {
        body = text === '' ? undefined : JSON.parse(text);
      } catch {
        /* keep the text */
      }
      const recorded: RecordedRequest = {
        method: req.method ?? '',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        headers: req.headers,
        body,
      };
      standIn.requests.push(recorded);
      const a = standIn.answer(recorded);
      const payload = typeof a.body === 'string' ? a.body : a.body === undefined ? '' : JSON.stringify(a.body);
      res.writeHead(a.status, {
        'content-type': typeof a.body === 'string' ? 'application/octet-stream' : 'application/json',
        ...a.headers,
      });
      res.end(payload);
    });
  });
  server.listen(socket);
  await once(server, 'listening');
  return standIn;
}

function cliEnv(home: string, socket: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, TOKEND_HOME: home, TOKEND_SOCKET: socket, TOKEND_NO_AUTOSTART: '1' };
  for (const k of ['TOKEND_CONFIG_DIR', 'TOKEND_DATA_DIR', 'TOKEND_KEY_FILE']) delete env[k];
  return env;
}
