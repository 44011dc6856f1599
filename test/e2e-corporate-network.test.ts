/**
 * A corporate network: the provider is reachable only through a forward proxy named by
 * HTTPS_PROXY (Node 20's own fetch ignores it), and it serves TLS with a private CA that
 * the daemon learns from NODE_EXTRA_CA_CERTS or from the account's own --ca-file. The real
 * IdP over https, a real CONNECT proxy, real certificates made by openssl.
 */
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, tempHome, postConfGrant } from './support/daemon.js';
import { startForwardProxy, type ForwardProxy } from './support/forward-proxy.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { makeTestCa, type TestCa } from './support/tls.js';

let ca: TestCa;
let idp: TestIdp;
let proxy: ForwardProxy;
beforeAll(async () => {
  ca = makeTestCa();
  idp = await startIdp({ tls: { key: ca.key, cert: ca.cert, ca: ca.ca } });
  proxy = await startForwardProxy();
});
afterAll(async () => {
  await proxy.close();
  await idp.close();
  ca.cleanup();
});

async function daemonWith(env: Record<string, string | undefined>) {
  const h = tempHome();
  const d = new DaemonProcess(h.home, {
    ...h.env,
    HTTPS_PROXY: undefined,
    HTTP_PROXY: undefined,
    NO_PROXY: undefined,
    https_proxy: undefined,
    http_proxy: undefined,
    no_proxy: undefined,
    ...env,
  });
  await d.start();
  return { d, cleanup: async () => (await d.stop('SIGKILL'), h.cleanup()) };
}
const add = (d: DaemonProcess, name: string, extra: string[] = []) =>
  d.cli(
    ['add', name, '--issuer', idp.issuer, '--client-id', 'conf', '--client-secret-stdin', '--scope', 'openid offline_access api', ...extra],
    'conf-secret\n',
  );

describe('corporate networks', () => {
  it('reaches a private-CA provider through HTTPS_PROXY, trusting NODE_EXTRA_CA_CERTS', async () => {
    const { d, cleanup } = await daemonWith({ HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: ca.caFile });
    try {
      proxy.seen.length = 0;
      const r = await add(d, 'corp');
      expect(r.code, r.stderr).toBe(0);
      await postConfGrant(d, idp, 'corp');
      const tok = await d.cli(['token', 'corp']);
      expect(tok.code, tok.stderr).toBe(0);
      expect((await idp.introspect(tok.stdout.trim())).active).toBe(true);
      // Discovery and the token endpoint went through the proxy, as tunnels.
      expect(proxy.seen.filter((s) => s === `CONNECT localhost:${idp.port}`).length).toBeGreaterThan(0);
    } finally {
      await cleanup();
    }
  });

  it("trusts an account's own --ca-file, and says what is wrong for an account without it", async () => {
    const { d, cleanup } = await daemonWith({});
    try {
      const bad = await add(d, 'untrusted');
      expect(bad.code).toBe(1);
      expect(bad.stderr).toMatch(/SELF_SIGNED|UNABLE_TO_VERIFY|CERT/);
      expect(bad.stderr).toContain('--no-check');
      const good = await add(d, 'trusted', ['--ca-file', ca.caFile]);
      expect(good.code, good.stderr).toBe(0);
      await postConfGrant(d, idp, 'trusted');
      expect((await d.cli(['token', 'trusted'])).code).toBe(0);
      const missing = await add(d, 'typo', ['--ca-file', '/nonexistent/ca.pem']);
      expect(missing.code).toBe(1); // refused by the daemon
      expect(missing.stderr).toContain('ca_file');
    } finally {
      await cleanup();
    }
  });

  it('bypasses the proxy for NO_PROXY hosts', async () => {
    const { d, cleanup } = await daemonWith({ HTTPS_PROXY: proxy.url, NO_PROXY: 'localhost', NODE_EXTRA_CA_CERTS: ca.caFile });
    try {
      proxy.seen.length = 0;
      expect((await add(d, 'direct')).code).toBe(0);
      expect(proxy.seen).toEqual([]);
    } finally {
      await cleanup();
    }
  });

  it("sends the API proxy's upstream requests through HTTP_PROXY too", async () => {
    const api = http.createServer((req, res) => res.end(JSON.stringify({ auth: Boolean(req.headers.authorization) })));
    await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
    const port = (api.address() as { port: number }).port;
    const { d, cleanup } = await daemonWith({ HTTP_PROXY: proxy.url, HTTPS_PROXY: proxy.url, NODE_EXTRA_CA_CERTS: ca.caFile });
    try {
      expect((await add(d, 'apis', ['--api-base', `http://127.0.0.1:${port}/api`])).code).toBe(0);
      await postConfGrant(d, idp, 'apis');
      proxy.seen.length = 0;
      const r = await d.cli(['api', 'apis', '/me', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual({ auth: true });
      // Through the proxy, as a tunnel (undici tunnels plain http too) or an absolute-form request.
      expect(proxy.seen.some((x) => x === `CONNECT 127.0.0.1:${port}` || x === `GET http://127.0.0.1:${port}/api/me`)).toBe(true);
    } finally {
      await cleanup();
      await new Promise((r) => api.close(r));
    }
  });
});
