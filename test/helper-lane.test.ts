/**
 * `POST /v1/helpers/TOOL/ACTION` has a lane of its own (src/daemon/http/helper-lane.ts) in
 * front of the Hono route, with the same handler. It must answer byte for byte as the route
 * does: the same status, the same header lines (names as written), the same body. A target
 * with a query the lane does not read (`?x=1`, which the route ignores) is left to the
 * route, so one daemon shows both answers of each request: a token, an unknown account, a
 * body the helper refuses, one too large, a DPoP account, a refused caller, an unknown tool.
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { putConfAccount } from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';

/** One request written as raw bytes; the answer as its header lines (without Date) and its body. */
function raw(socket: string, request: string): Promise<{ head: string[]; body: string }> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    const chunks: Buffer[] = [];
    c.on('data', (b) => chunks.push(b));
    c.on('error', reject);
    c.on('close', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const at = text.indexOf('\r\n\r\n');
      resolve({
        head: text
          .slice(0, at)
          .split('\r\n')
          .filter((l) => !l.startsWith('Date:')),
        body: text.slice(at + 4),
      });
    });
    c.end(request);
  });
}

const post = (target: string, body: string, more = '') =>
  `POST ${target} HTTP/1.1\r\nHost: tokend\r\nUser-Agent: tokend-fast\r\nContent-Type: application/octet-stream\r\n${more}Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`;

/** The lane's answer and the route's to the same request (the route's through `?x=1`, or `&x=1` after a query). */
async function both(socket: string, target: string, body: string, more = '') {
  const lane = await raw(socket, post(target, body, more));
  const app = await raw(socket, post(`${target}${target.includes('?') ? '&' : '?'}x=1`, body, more));
  expect(lane.head).toEqual(app.head);
  expect(lane.body).toBe(app.body);
  return lane;
}

describe('POST /v1/helpers/TOOL/ACTION', () => {
  const idp = useIdp();
  const { d } = useDaemon({ account: { idp, args: ['--host', 'git.example.test'], grant: true } });
  const git = (host: string) => `protocol=https\nhost=${host}\n\n`;

  it('answers on its lane exactly as the Hono route answers it', async () => {
    await putConfAccount(d, idp.issuer, 'svc', { dpop: true, hosts: ['dpop.example.test'] });
    const token = (await d.request('POST', '/v1/token', { account: 'work' })).json.access_token as string;

    const cli = await both(d.socket, '/v1/helpers/cli/token', 'work');
    expect(cli.head[0]).toBe('HTTP/1.1 200 OK');
    expect(cli.head).toContain('x-tokend-exit: 0');
    expect(cli.body).toBe(`${token}\n`);
    const got = await both(d.socket, '/v1/helpers/git/get', git('git.example.test'));
    expect(got.body).toContain(`password=${token}\n`);
    const kube = await both(d.socket, '/v1/helpers/kubectl/get?account=work', '');
    expect(kube.body).toContain(`"token":"${token}"`);

    const unknown = await both(d.socket, '/v1/helpers/cli/token', 'nope');
    expect(unknown.head[0]).toBe('HTTP/1.1 422 Unprocessable Entity');
    expect(unknown.head.join('\n')).toContain('x-tokend-stderr: tokend: no account named "nope"');
    const kubeUnknown = await both(d.socket, '/v1/helpers/kubectl/get?account=nope', '');
    expect(kubeUnknown.head[0]).toBe('HTTP/1.1 422 Unprocessable Entity');

    const badName = await both(d.socket, '/v1/helpers/cli/token', 'a b');
    expect(badName.head).toContain('x-tokend-exit: 2');
    const badInput = await both(d.socket, '/v1/helpers/git/get', '\0\0garbage');
    expect(badInput.head.join('\n')).toContain('contains a NUL byte');
    const big = await both(d.socket, '/v1/helpers/git/get', 'x'.repeat(70_000));
    expect(big.head[0]).toBe('HTTP/1.1 413 Payload Too Large');
    expect(JSON.parse(big.body).error.code).toBe('payload_too_large');

    const dpop = await both(d.socket, '/v1/helpers/git/get', git('dpop.example.test'));
    expect(dpop.head.join('\n')).toContain('account "svc" uses DPoP');
    expect(dpop.body).not.toContain('password=');

    const tool = await both(d.socket, '/v1/helpers/frob/get', '');
    expect(tool.head[0]).toBe('HTTP/1.1 404 Not Found');
    expect(tool.head).toContain('Content-Type: application/json');
  });

  it('refuses a caller the account does not allow, as the route does, with its audit row', async () => {
    const r = await d.request('PATCH', '/v1/accounts/work', { access: { mode: 'callers', callers: [{ exe: '/usr/bin/true' }] } });
    expect(r.status, r.text).toBe(200);
    try {
      const refused = await both(d.socket, '/v1/helpers/cli/token', 'work');
      expect(refused.head[0]).toBe('HTTP/1.1 422 Unprocessable Entity');
      expect(refused.head.join('\n')).toContain(`(pid ${process.pid}`);
      expect(refused.body).toBe('');
      const gitRefused = await both(d.socket, '/v1/helpers/git/get', git('git.example.test'));
      expect(gitRefused.body).not.toContain('password=');
      const { json } = await d.request('GET', '/v1/audit?account=work&action=denied&limit=50');
      expect(json.entries.some((e: { caller?: { pid?: number } }) => e.caller?.pid === process.pid)).toBe(true);
    } finally {
      await d.cli(['access', 'work', 'open']);
    }
  });
});
