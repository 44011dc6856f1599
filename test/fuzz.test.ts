/**
 * Property-based fuzzing (fast-check) of every parser that meets untrusted bytes: the four
 * helper wire formats and their handlers, every API body, config.json, the proxy path, a
 * deep-link login's callback URL, and sealed database values with tampered ciphertext.
 * Properties: nothing throws past its own error type (no 500), nothing hangs, no secret is
 * echoed, round trips hold where a format has one.
 *
 * Seeded and bounded in time: each property runs for at most a few seconds. A failure
 * prints its seed and path; `FUZZ_SEED=<seed> npx vitest run test/fuzz.test.ts` reproduces it.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/daemon/audit.js';
import { Broker } from '../src/daemon/broker.js';
import { ConfigStore } from '../src/daemon/config.js';
import type { Driver } from '../src/daemon/drivers/driver.js';
import { ApiError } from '../src/daemon/errors.js';
import { EventBus } from '../src/daemon/events.js';
import { handleHelper, type HelperDeps } from '../src/daemon/helper-handlers.js';
import { createApp } from '../src/daemon/http/app.js';
import { mountLogins } from '../src/daemon/http/logins-route.js';
import type { Logger } from '../src/daemon/log.js';
import { LoginManager } from '../src/daemon/logins.js';
import { ProxyPathError, resolveProxyUrl, splitProxyTarget } from '../src/daemon/proxy-path.js';
import { open, seal } from '../src/daemon/store/crypto.js';
import { AccountConfig } from '../src/protocol/api.js';
import { ConfigFile, parseConfigFile, Settings } from '../src/protocol/config-file.js';
import { parseBazelRequest, rfc3339Seconds } from '../src/protocol/helpers/bazel.js';
import { parseDockerInput } from '../src/protocol/helpers/docker.js';
import { formatGitCredential, parseGitCredentialInput } from '../src/protocol/helpers/git.js';
import { parseKubectlExecInfo } from '../src/protocol/helpers/kubectl.js';
import { MemoryStore } from './support/memory-store.js';

const SEED = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Math.floor(Math.random() * 2 ** 31);
/** Every property: this seed, this many runs at most, and never more than `ms` of the suite's time. */
const budget = (ms = 3000, numRuns = 400) => ({ seed: SEED, numRuns, interruptAfterTimeLimit: ms, markInterruptAsFailure: false });
const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const SECRET = 'tok-SECRET-7f3a9c';

/** Bytes as untrusted input comes: random, text-like, and line-structured. */
const anyBytes = fc.oneof(
  fc.uint8Array({ maxLength: 4096 }).map((a) => Buffer.from(a)),
  fc.string({ unit: 'binary', maxLength: 2048 }).map((s) => Buffer.from(s, 'utf8')),
  fc
    .array(
      fc.tuple(
        fc.constantFrom('protocol', 'host', 'path', 'username', 'password', 'url', 'capability[]', 'wwwauth[]', '', '='),
        fc.string({ maxLength: 80 }),
      ),
      { maxLength: 12 },
    )
    .map((kv) => Buffer.from(kv.map(([k, v]) => `${k}=${v}`).join('\n') + '\n\n')),
);

describe(`fuzz (FUZZ_SEED=${SEED})`, () => {
  describe('helper wire formats', () => {
    it('git: any input parses or is refused with a code; never throws', () => {
      fc.assert(
        fc.property(fc.constantFrom('get', 'store', 'erase', 'capability', 'x'), anyBytes, (action, input) => {
          const r = parseGitCredentialInput(action, input);
          if (r.ok) {
            for (const v of [r.request.protocol, r.request.host, r.request.path ?? '', r.request.username ?? ''])
              expect(v).not.toMatch(/[\n\0]/);
          } else expect(typeof r.error.code).toBe('string');
        }),
        budget(),
      );
    });

    it('git: what a helper prints reads back as the same credential', () => {
      const value = fc.string({ minLength: 1, maxLength: 200 }).filter((s) => !/[\n\r\0]/.test(s));
      fc.assert(
        fc.property(value, value, fc.option(fc.integer({ min: 0, max: 2 ** 40 }), { nil: undefined }), (username, password, expiry) => {
          const out = formatGitCredential({ username, password, password_expiry_utc: expiry }).toString('utf8');
          const lines = Object.fromEntries(
            out
              .slice(0, -1)
              .split('\n')
              .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
          );
          expect(lines).toEqual({ username, password, ...(expiry !== undefined ? { password_expiry_utc: String(expiry) } : {}) });
          expect(out).not.toContain('url=');
        }),
        budget(),
      );
    });

    it('docker, kubectl, Bazel: any input parses or is refused; never throws', () => {
      fc.assert(
        fc.property(fc.constantFrom('get', 'store', 'erase', 'list', 'version'), anyBytes, (action, input) => {
          expect(typeof parseDockerInput(action, input).ok).toBe('boolean');
          expect(typeof parseKubectlExecInfo(input).ok).toBe('boolean');
          expect(typeof parseBazelRequest(input).ok).toBe('boolean');
        }),
        budget(),
      );
    });

    it('Bazel expiries are whole-second RFC 3339, as Bazel parses them', () => {
      fc.assert(
        fc.property(fc.integer({ min: 0, max: 253_402_300_799_000 }), (ms) => {
          expect(rfc3339Seconds(ms)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
        }),
        budget(),
      );
    });

    it('the helper handlers: any stdin to any tool answers within the protocol, and a token only for its own host', async () => {
      const deps: HelperDeps = {
        findAccount: (t) => (t.host === 'git.example.test' ? { kind: 'match', account: { name: 'w' } } : { kind: 'none' }),
        getToken: async () => ({ access_token: SECRET, token_type: 'Bearer', expires_at: Date.now() + 3_600_000 }),
        reject: () => undefined,
        listDockerServers: () => ({ 'git.example.test': 'oauth2' }),
      };
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom('git', 'docker', 'kubectl', 'bazel'),
          fc.constantFrom('get', 'store', 'erase', 'list', 'zzz'),
          anyBytes,
          async (tool, action, stdin) => {
            const r = await handleHelper(tool as 'git', action, { stdin, env: {} }, deps);
            expect(Number.isInteger(r.exitCode)).toBe(true);
            expect(r.stderr ?? '').not.toContain(SECRET);
            const text = stdin.toString('latin1');
            if (r.stdout.includes(SECRET)) expect(text).toMatch(/git\.example\.test/);
          },
        ),
        budget(4000, 300),
      );
    });
  });

  describe('config.json', () => {
    it('any text is a config or a named refusal; never a throw', () => {
      const text = fc.oneof(
        fc.string({ maxLength: 500 }),
        fc.json({ maxDepth: 4 }),
        fc
          .record({
            version: fc.constantFrom(1, 2, '1'),
            settings: fc.dictionary(fc.string(), fc.jsonValue()),
            accounts: fc.dictionary(fc.string(), fc.jsonValue()),
          })
          .map((o) => JSON.stringify(o)),
      );
      fc.assert(
        fc.property(text, (t) => {
          const r = parseConfigFile(t);
          if (!r.ok) expect(r.error.length).toBeGreaterThan(0);
        }),
        budget(),
      );
    });
  });

  describe('config.json accounts', () => {
    const A = { driver: 'oauth2', issuer: 'https://idp.example', client_id: 'c', scopes: ['openid'] };
    it('are checked as zod checks them one by one, whether written alike or not (shared, frozen configs)', () => {
      const account = fc.oneof(
        fc.constantFrom(
          A,
          { ...A },
          { ...A, hosts: ['git.example'] },
          { ...A, scopes: ['openid', 'x'] },
          Object.assign({ scopes: ['openid'] }, A),
        ),
        fc.record({ driver: fc.constantFrom('oauth2', 'nope'), issuer: fc.constantFrom('https://i.example', 'ftp://x', 5) }),
        fc.jsonValue({ maxDepth: 2 }),
      );
      // "__proto__" apart: zod's record skips it silently; it is refused by name (below).
      const name = fc
        .oneof(fc.constantFrom('a', 'b', 'c', 'work', 'bad name', 'constructor', 'toString'), fc.string({ maxLength: 8 }))
        .filter((n) => n !== '__proto__');
      fc.assert(
        fc.property(fc.dictionary(name, account, { maxKeys: 12 }), (accounts) => {
          const text = JSON.stringify({ accounts });
          const ours = parseConfigFile(text);
          const zods = ConfigFile.safeParse(JSON.parse(text));
          expect(ours.ok).toBe(zods.success);
          if (ours.ok && zods.success) expect(ours.config).toEqual(zods.data);
        }),
        budget(),
      );
      // Written alike: one checked config, frozen, so no account's change can reach another's.
      const two = parseConfigFile(JSON.stringify({ accounts: { a: A, b: { ...A }, c: { ...A, hosts: ['git.example'] } } }));
      if (!two.ok) throw new Error(two.error);
      expect(two.config.accounts.a).toBe(two.config.accounts.b);
      expect(two.config.accounts.c).not.toBe(two.config.accounts.a);
      expect(Object.isFrozen(two.config.accounts.a) && Object.isFrozen(two.config.accounts.a!.scopes)).toBe(true);
      expect(parseConfigFile('{"accounts":{"__proto__":{}}}')).toEqual({
        ok: false,
        error: expect.stringMatching(/^is invalid: accounts\.__proto__: account names are/),
      });
    });
  });

  describe('the proxy path', () => {
    const base = 'https://api.example.test/rest/1.0';
    const segment = fc.oneof(
      fc.constantFrom(
        '..',
        '.',
        '%2e%2e',
        '%2E%2e',
        '%2e',
        '',
        '%2f',
        '%2F',
        '%5c',
        '%0d%0a',
        '%00',
        'http:',
        'evil.example',
        '@evil',
        'a%2fb',
        '\\',
        '%',
        '%zz',
      ),
      fc.string({ maxLength: 12 }),
      fc.stringMatching(/^[A-Za-z0-9._~-]{1,10}$/),
    );
    it('a path either stays under api_base or is refused with ProxyPathError: nothing else, ever', () => {
      fc.assert(
        fc.property(fc.array(segment, { maxLength: 6 }), fc.string({ maxLength: 40 }), (segs, q) => {
          const rest = segs.join('/');
          const query = q ? `?${q}` : '';
          try {
            const url = resolveProxyUrl(base, rest, query);
            expect(url.origin).toBe('https://api.example.test');
            expect(url.pathname.startsWith('/rest/1.0/')).toBe(true);
            expect(url.pathname.split('/')).not.toContain('..');
          } catch (err) {
            expect(err).toBeInstanceOf(ProxyPathError);
          }
        }),
        budget(),
      );
    });

    it('any request target splits into an account and a rest, or is not a proxy path', () => {
      fc.assert(
        fc.property(fc.string({ maxLength: 200 }), (s) => {
          const t = splitProxyTarget(`/v1/proxy/${s}`);
          expect(t).toBeDefined();
          expect(t!.query === '' || t!.query.startsWith('?')).toBe(true);
        }),
        budget(),
      );
    });
  });

  describe('sealed database values', () => {
    const key = randomBytes(32);
    it('round-trip, and any tampering (a bit, a cut, another row) fails loudly instead of opening', () => {
      fc.assert(
        fc.property(fc.string({ maxLength: 300 }), fc.nat(), fc.constantFrom('flip', 'cut', 'aad', 'key'), (plain, where, how) => {
          const blob = seal(key, plain, 'grant:w:refresh_token');
          expect(open(key, blob, 'grant:w:refresh_token')).toBe(plain);
          const bad = Buffer.from(blob);
          let aad = 'grant:w:refresh_token';
          let k = key;
          if (how === 'flip') bad[where % bad.length] ^= 1 << (where % 8);
          if (how === 'aad') aad = 'grant:other:refresh_token';
          if (how === 'key') k = randomBytes(32);
          const tampered = how === 'cut' ? bad.subarray(0, where % bad.length) : bad;
          expect(() => open(k, tampered, aad)).toThrow();
        }),
        budget(),
      );
    });
  });

  describe('the socket API', () => {
    let dir: string;
    let app: ReturnType<typeof createApp>;
    let logins: LoginManager;
    let loginId: string;
    const driver: Driver = {
      name: 'oauth2',
      refresh: async () => ({ access_token: SECRET, token_type: 'Bearer', expires_in: 600 }),
      check: async () => [],
      authorizationUrl: async (_c, p) => `https://as.example/authorize?state=${p.state}`,
      exchangeCode: async () => ({ access_token: SECRET, token_type: 'Bearer', refresh_token: 'rt' }),
    };
    beforeAll(async () => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-fuzz-'));
      const config = await ConfigStore.open(path.join(dir, 'config.json'));
      const store = new MemoryStore();
      const events = new EventBus();
      const getDriver = (n: string) => (n === 'oauth2' ? driver : undefined);
      const broker = new Broker({ store, config, getDriver, events, log: quiet });
      await config.putAccount(
        'desk',
        AccountConfig.parse({ client_id: 'c', token_endpoint: 'https://as.example/token', redirect_uri: 'com.example.app:/cb' }),
      );
      store.putSecret('desk', 'client_secret', SECRET);
      logins = new LoginManager({ store, config, broker, events, log: quiet, getDriver });
      const audit = new AuditLog(store, quiet);
      app = createApp({
        config,
        store,
        broker,
        getDriver,
        events,
        audit,
        log: quiet,
        version: 't',
        startedAt: Date.now(),
        shutdown: new AbortController().signal,
        logins,
        extend: [mountLogins({ logins })],
      });
      loginId = (await logins.start('desk', 'browser')).id;
    });
    afterAll(() => {
      logins.close();
      fs.rmSync(dir, { recursive: true, force: true });
    });

    const routes: Array<[string, string]> = [
      ['PUT', '/v1/accounts/fz'],
      ['PATCH', '/v1/accounts/desk'],
      ['POST', '/v1/accounts/desk/import'],
      ['POST', '/v1/accounts/desk/login'],
      ['POST', '/v1/token'],
      ['POST', '/v1/credential/reject'],
      ['GET', '/v1/logins?status=x'],
      ['POST', '/v1/accounts/..%2Fx/refresh'],
    ];
    const body = fc.oneof(
      fc.json({ maxDepth: 3 }),
      fc.string({ maxLength: 300 }),
      fc.constant(''),
      fc.constant('{"client_id":"c","token_endpoint":"http://example.com/t"}'),
    );

    it('any body to any route: a 2xx or a 4xx in the error shape, never a 500, never the stored secret', async () => {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...routes), body, async ([method, p], b) => {
          const r = await app.request(p.replace('?status=x', `?status=${encodeURIComponent(b.slice(0, 20))}`), {
            method,
            headers: { 'content-type': 'application/json' },
            body: method === 'GET' ? undefined : b,
          });
          const text = await r.text();
          expect([p, r.status < 500]).toEqual([p, true]);
          expect(text).not.toContain(SECRET);
          if (r.status >= 400) expect(JSON.parse(text).error.code).toEqual(expect.any(String));
        }),
        budget(6000, 300),
      );
    });

    it("any callback URL handed to a deep-link login: refused unless it is the login's own, and the login stays pending", async () => {
      const url = fc.oneof(
        fc.webUrl({ withQueryParameters: true }),
        fc.string({ maxLength: 200 }),
        fc
          .record({ state: fc.string({ maxLength: 50 }), code: fc.string({ maxLength: 20 }) })
          .map((q) => `com.example.app:/cb?${new URLSearchParams(q)}`),
      );
      await fc.assert(
        fc.asyncProperty(url, async (u) => {
          try {
            await logins.completeCallback(loginId, u);
          } catch (err) {
            expect(err).toBeInstanceOf(ApiError);
            expect((err as ApiError).status).toBeLessThan(500);
          }
          expect((await logins.get(loginId)).status).toBe('pending');
        }),
        budget(3000, 300),
      );
    });
  });
});

// Settings must stay parseable with defaults (the fuzzed app above relies on them).
Settings.parse({});
