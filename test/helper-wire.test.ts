/**
 * Helper wire formats (git-credential(1), docker's helper protocol, client-go, the EngFlow spec) and the daemon's helper handlers: round trips,
 * garbage on stdin, and the sh shims' HTTP contract, with fake deps in place of the broker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import { once } from 'node:events';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatGitCredential, GitFormatError, parseGitCredentialInput } from '../src/protocol/helpers/git.js';
import {
  DOCKER_ERR_NO_SERVER_URL,
  DOCKER_ERR_NO_USERNAME,
  DOCKER_ERR_NOT_FOUND,
  dockerServerTarget,
  formatDockerCredential,
  parseDockerInput,
} from '../src/protocol/helpers/docker.js';
import { formatExecCredential, parseKubectlExecInfo } from '../src/protocol/helpers/kubectl.js';
import { formatBazelCredential, parseBazelRequest, rfc3339Seconds } from '../src/protocol/helpers/bazel.js';
import { handleHelper, type HelperDeps, type HelperToken } from '../src/daemon/helper-handlers.js';
import { encodeStderrHeader, helperHttpResponse, HELPER_STDERR_HEADER } from '../src/protocol/helper-http.js';
import { matchAccount, type MatchTarget } from '../src/daemon/match.js';
import { run as runProgram } from './support/run.js';

const TOKEN = 'at-SECRET-0123456789abcdef';
const EXPIRES_MS = Date.UTC(2030, 0, 2, 3, 4, 5, 678);
const EXPIRES_S = Math.floor(EXPIRES_MS / 1000);

interface FakeDeps extends HelperDeps {
  calls: { getToken: Array<[string, number]>; reject: Array<[string, string | undefined]>; find: MatchTarget[] };
}

/** Deps over a small account table; `tokenFor` decides what getToken does per account. */
function fakeDeps(
  opts: {
    accounts?: Array<{ name: string; hosts: string[]; username?: string }>;
    tokenFor?: (account: string) => HelperToken | Error | { code: string; message: string };
  } = {},
): FakeDeps {
  const accounts = opts.accounts ?? [
    { name: 'gh', hosts: ['github.com'] },
    { name: 'lab', hosts: ['gitlab.example.com'], username: 'oauth2-lab' },
    { name: 'local', hosts: ['127.0.0.1'] },
    { name: 'reg', hosts: ['registry.example.com', 'index.docker.io'] },
    { name: 'kube', hosts: ['https://172.17.4.100:6443'] },
    { name: 'dup1', hosts: ['dup.example.com'] },
    { name: 'dup2', hosts: ['dup.example.com'] },
    { name: 'broken', hosts: ['broken.example.com'] },
  ];
  const calls: FakeDeps['calls'] = { getToken: [], reject: [], find: [] };
  return {
    calls,
    findAccount(target) {
      calls.find.push(target);
      return matchAccount(accounts, target);
    },
    async getToken(account, minTtl) {
      calls.getToken.push([account, minTtl]);
      const t = opts.tokenFor?.(account);
      if (t instanceof Error || (t && 'code' in t)) throw t;
      if (t) return t;
      if (account === 'broken') {
        throw { code: 'reauth_required', message: 'account "broken" needs a new login: run `tokend login broken`' };
      }
      const username = accounts.find((a) => a.name === account)?.username;
      return { access_token: TOKEN, token_type: 'Bearer', expires_at: EXPIRES_MS, ...(username ? { username } : {}) };
    },
    reject(account, accessToken) {
      calls.reject.push([account, accessToken]);
    },
  };
}

const b = (s: string | Buffer): Buffer => (typeof s === 'string' ? Buffer.from(s, 'utf8') : s);

async function run(tool: string, action: string, stdin: string | Buffer, deps: HelperDeps, env?: Record<string, string>) {
  const r = await handleHelper(tool, action, { stdin: b(stdin), ...(env ? { env } : {}) }, deps);
  // Whatever happened, a token never goes to stderr.
  expect(r.stderr ?? '').not.toContain(TOKEN);
  expect(r.stderr ?? '').not.toMatch(/\n/);
  return { ...r, out: r.stdout.toString('utf8') };
}

// ------------------------------------------------------------------ git

describe('git wire format', () => {
  it('parses the attributes git sends, splitting host:port', () => {
    const r = parseGitCredentialInput('get', 'protocol=https\nhost=example.com:8443\npath=org/repo.git\nusername=bob\n\n');
    expect(r).toEqual({
      ok: true,
      request: { action: 'get', protocol: 'https', host: 'example.com', port: 8443, path: 'org/repo.git', username: 'bob' },
    });
  });

  it('ignores unknown and other multi-valued keys, keeps capabilities, and reads to EOF without a blank line', () => {
    const r = parseGitCredentialInput(
      'get',
      'capability[]=authtype\nprotocol=https\nwwwauth[]=Basic realm="x"\nstate[]=x:y\nfuture_thing=1\nhost=github.com',
    );
    expect(r).toEqual({ ok: true, request: { action: 'get', protocol: 'https', host: 'github.com', capabilities: ['authtype'] } });
  });

  it('reads what git 2.46+ sends: capability[] in order (an empty one clears the list), authtype and credential', () => {
    const r = parseGitCredentialInput(
      'erase',
      `capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=github.com\nauthtype=Bearer\ncredential=${TOKEN}\nephemeral=1\n` +
        `password_expiry_utc=${EXPIRES_S}\nwwwauth[]=Bearer realm="x"\nstate[]=tokend:1\n`,
    );
    expect(r).toEqual({
      ok: true,
      request: {
        action: 'erase',
        protocol: 'https',
        host: 'github.com',
        capabilities: ['authtype', 'state'],
        authtype: 'Bearer',
        credential: TOKEN,
      },
    });
    const cleared = parseGitCredentialInput(
      'get',
      'capability[]=authtype\ncapability[]=\ncapability[]=state\nprotocol=https\nhost=a.test\n',
    );
    expect(cleared.ok && cleared.request.capabilities).toEqual(['state']);
  });

  it('stops at the first blank line', () => {
    const r = parseGitCredentialInput('get', 'protocol=https\nhost=a.test\n\nhost=b.test\nno equals here\n');
    expect(r.ok && r.request.host).toBe('a.test');
  });

  it('splits url= into its parts (clearing earlier fields, as git does)', () => {
    const r = parseGitCredentialInput('get', 'host=ignored.test\nurl=https://al%40ice:pw@Example.com:8443/org/repo.git/\n');
    expect(r).toEqual({
      ok: true,
      request: {
        action: 'get',
        protocol: 'https',
        host: 'Example.com',
        port: 8443,
        path: 'org/repo.git',
        username: 'al@ice',
        password: 'pw',
      },
    });
  });

  it('keeps IPv6 brackets and reads their port', () => {
    const r = parseGitCredentialInput('get', 'protocol=http\nhost=[::1]:8080\n');
    expect(r.ok && r.request).toMatchObject({ host: '[::1]', port: 8080 });
  });

  it.each<[string, string | Buffer, string]>([
    ['a line without =', 'protocol=https\nhost=a.test\ngarbage\n', 'invalid_line'],
    ['a CR in a value (CVE-2024-52006)', 'protocol=https\nhost=evil.test\rhost=github.com\n', 'carriage_return'],
    ['CRLF line ends', 'protocol=https\r\nhost=a.test\r\n\r\n', 'carriage_return'],
    ['a NUL byte', 'protocol=https\nhost=a\0b.test\n', 'nul_byte'],
    ['a 1 MiB line', `protocol=https\nhost=${'a'.repeat(1024 * 1024)}\n`, 'line_too_long'],
    ['a line just over 65535 bytes', `protocol=https\npath=${'p'.repeat(65_535 - 5)}\n`, 'line_too_long'],
    ['more than 64 KiB of short lines', 'x=y\n'.repeat(20_000), 'input_too_large'],
    ['empty stdin', '', 'missing_protocol'],
    ['no host', 'protocol=https\n', 'missing_host'],
    ['a bad port', 'protocol=https\nhost=a.test:99999\n', 'invalid_port'],
    ['an unparseable url=', 'url=not-a-url\n', 'invalid_url'],
    ['binary bytes', Buffer.from([0xff, 0xfe, 0x00, 0x01, 0x0a, 0x80, 0x3d]), 'nul_byte'],
    ['binary bytes without NUL', Buffer.from([0xff, 0xfe, 0x80, 0x0a, 0x81]), 'invalid_line'],
  ])('refuses %s', (_why, input, code) => {
    const r = parseGitCredentialInput('get', input);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe(code);
  });

  it('never repeats a value in an error message', () => {
    const r = parseGitCredentialInput('get', `protocol=https\nhost=a.test\npassword=${TOKEN}\rx\n`);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.message).toBe('credential value for "password" contains carriage return');
      expect(r.error.message).not.toContain(TOKEN);
    }
  });

  it('formats only username, password and password_expiry_utc', () => {
    const out = formatGitCredential({ username: 'oauth2', password: TOKEN, password_expiry_utc: EXPIRES_S });
    expect(out.toString()).toBe(`username=oauth2\npassword=${TOKEN}\npassword_expiry_utc=${EXPIRES_S}\n`);
    expect(formatGitCredential({ password: 'p' }).toString()).toBe('password=p\n');
  });

  it('formats a Bearer answer with capability[]=authtype first, then authtype, credential, ephemeral and the expiry', () => {
    const out = formatGitCredential({ authtype: 'Bearer', credential: TOKEN, ephemeral: true, password_expiry_utc: EXPIRES_S });
    expect(out.toString()).toBe(
      `capability[]=authtype\nauthtype=Bearer\ncredential=${TOKEN}\nephemeral=1\npassword_expiry_utc=${EXPIRES_S}\n`,
    );
    expect(() => formatGitCredential({ authtype: 'Bearer', credential: `${TOKEN}\nurl=https://evil.test` })).toThrow(/credential contains/);
    expect(() => formatGitCredential({ authtype: 'Bearer x', credential: TOKEN })).toThrow(/one word/);
    expect(() => formatGitCredential({ authtype: 'Bearer', credential: '' })).toThrow(GitFormatError);
  });

  it('refuses to format a value that could inject an attribute', () => {
    expect(() => formatGitCredential({ password: 'x\nurl=https://evil.test' })).toThrow(GitFormatError);
    expect(() => formatGitCredential({ username: 'a\rb', password: 'x' })).toThrow(/username/);
    expect(() => formatGitCredential({ password: '' })).toThrow(GitFormatError);
  });

  it('round-trips: what the helper prints parses back', () => {
    const out = formatGitCredential({ username: 'oauth2', password: TOKEN, password_expiry_utc: EXPIRES_S });
    const back = parseGitCredentialInput('get', Buffer.concat([b('protocol=https\nhost=h.test\n'), out]));
    expect(back.ok && back.request).toMatchObject({ username: 'oauth2', password: TOKEN });
  });
});

describe('git helper', () => {
  it('get: answers username oauth2, the token and its expiry, asking for 300 s of validity', async () => {
    const deps = fakeDeps();
    const r = await run('git', 'get', 'protocol=https\nhost=github.com\n\n', deps);
    expect(r).toMatchObject({ exitCode: 0 });
    expect(r.out).toBe(`username=oauth2\npassword=${TOKEN}\npassword_expiry_utc=${EXPIRES_S}\n`);
    expect(r.out).not.toContain('url=');
    expect(r.stderr).toBeUndefined();
    expect(deps.calls.getToken).toEqual([['gh', 300]]);
  });

  // What git 2.46+ writes on a helper's stdin (git-credential(1); credential.c credential_write):
  // capability[] lines first, then protocol, host, path, username; wwwauth[] after a 401.
  const GIT_246_GET = 'capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=github.com\nwwwauth[]=Bearer realm="GitHub"\n\n';

  it('get from git 2.46+ (capability[]=authtype): a Bearer credential, ephemeral, with its expiry; no username or password', async () => {
    const deps = fakeDeps();
    const r = await run('git', 'get', GIT_246_GET, deps);
    expect(r).toMatchObject({ exitCode: 0 });
    expect(r.out).toBe(`capability[]=authtype\nauthtype=Bearer\ncredential=${TOKEN}\nephemeral=1\npassword_expiry_utc=${EXPIRES_S}\n`);
    expect(r.out).not.toMatch(/^(username|password|state\[\])=/m);
    expect(deps.calls.getToken).toEqual([['gh', 300]]);
  });

  it('get from git 2.46+ for an account with a username: still Bearer (the username is for Basic only)', async () => {
    const r = await run('git', 'get', GIT_246_GET.replace('github.com', 'gitlab.example.com'), fakeDeps());
    expect(r.out.split('\n').slice(0, 3)).toEqual(['capability[]=authtype', 'authtype=Bearer', `credential=${TOKEN}`]);
  });

  it('get from git 2.46+ with a token that is not a bearer token (DPoP): the Basic answer', async () => {
    const deps = fakeDeps({ tokenFor: () => ({ access_token: TOKEN, token_type: 'DPoP', expires_at: null }) });
    const r = await run('git', 'get', GIT_246_GET, deps);
    expect(r.out).toBe(`username=oauth2\npassword=${TOKEN}\n`);
  });

  it('get from git 2.46+ for an account set to Basic (--git-auth basic, the github and gitlab presets): the Basic answer', async () => {
    const deps = fakeDeps({ tokenFor: () => ({ access_token: TOKEN, token_type: 'Bearer', expires_at: null, gitAuth: 'basic' }) });
    const r = await run('git', 'get', GIT_246_GET, deps);
    expect(r.out).toBe(`username=oauth2\npassword=${TOKEN}\n`);
  });

  it('get from git 2.46+ announcing only state: the Basic answer', async () => {
    const r = await run('git', 'get', 'capability[]=state\nprotocol=https\nhost=github.com\n', fakeDeps());
    expect(r.out).toBe(`username=oauth2\npassword=${TOKEN}\npassword_expiry_utc=${EXPIRES_S}\n`);
  });

  it('erase from git 2.46+ reports the refused Bearer credential, which it sends instead of a password', async () => {
    const deps = fakeDeps();
    const r = await run(
      'git',
      'erase',
      `capability[]=authtype\ncapability[]=state\nprotocol=https\nhost=github.com\nauthtype=Bearer\ncredential=${TOKEN}\nephemeral=1\npassword_expiry_utc=${EXPIRES_S}\nwwwauth[]=Bearer error="invalid_token"\n\n`,
      deps,
    );
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(deps.calls.reject).toEqual([['gh', TOKEN]]);
    // A credential of another scheme is not one of ours to compare.
    await run('git', 'erase', `capability[]=authtype\nprotocol=https\nhost=github.com\nauthtype=Digest\ncredential=xyz\n`, deps);
    expect(deps.calls.reject.at(-1)).toEqual(['gh', undefined]);
  });

  it("get: the account's configured username wins", async () => {
    const r = await run('git', 'get', 'protocol=https\nhost=gitlab.example.com\n', fakeDeps());
    expect(r.out.split('\n')[0]).toBe('username=oauth2-lab');
  });

  it('get: keeps the username git already has when the account configures none', async () => {
    const r = await run('git', 'get', 'protocol=https\nhost=github.com\nusername=alice\n', fakeDeps());
    expect(r.out).toBe(`password=${TOKEN}\npassword_expiry_utc=${EXPIRES_S}\n`);
  });

  it('get: leaves out password_expiry_utc when the expiry is unknown', async () => {
    const deps = fakeDeps({ tokenFor: () => ({ access_token: TOKEN, token_type: 'bearer', expires_at: null }) });
    const r = await run('git', 'get', 'protocol=https\nhost=github.com\n', deps);
    expect(r.out).toBe(`username=oauth2\npassword=${TOKEN}\n`);
  });

  it('get: serves plain http on loopback, never to a remote host', async () => {
    expect((await run('git', 'get', 'protocol=http\nhost=127.0.0.1:8080\n', fakeDeps())).out).toContain('password=');
    const remote = await run('git', 'get', 'protocol=http\nhost=github.com\n', fakeDeps());
    expect(remote).toMatchObject({ exitCode: 0, out: '' });
  });

  it('get: a host with no account prints nothing and exits 0, silently', async () => {
    const deps = fakeDeps();
    const r = await run('git', 'get', 'protocol=https\nhost=unknown.test\n', deps);
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(r.stderr).toBeUndefined();
    expect(deps.calls.getToken).toEqual([]);
  });

  it('get: two tied accounts print nothing and name both on stderr', async () => {
    const r = await run('git', 'get', 'protocol=https\nhost=dup.example.com\n', fakeDeps());
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(r.stderr).toMatch(/"dup1" and "dup2"/);
  });

  it('get: an account needing a login prints nothing, exits 0 and says what to run', async () => {
    const r = await run('git', 'get', 'protocol=https\nhost=broken.example.com\n', fakeDeps());
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(r.stderr).toBe('tokend: account "broken" needs a new login: run `tokend login broken`');
  });

  it('get: a token that cannot be written safely is not printed, nor shown', async () => {
    const deps = fakeDeps({
      tokenFor: () => ({ access_token: `${TOKEN}\nurl=https://evil.test`, token_type: 'Bearer', expires_at: null }),
    });
    const r = await run('git', 'get', 'protocol=https\nhost=github.com\n', deps);
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(r.stderr).toMatch(/^tokend: /);
  });

  it.each<[string, string | Buffer]>([
    ['binary bytes', Buffer.from(Array.from({ length: 256 }, (_, i) => i))],
    ['no blank line and no newline', 'protocol=https\nhost=github.com'],
    ['a 1 MiB line', `protocol=https\nhost=${'g'.repeat(1024 * 1024)}`],
    ['a CR in a value', 'protocol=https\nhost=github.com\rx\n'],
    ['a line without =', 'protocol=https\nhost=github.com\nnonsense\n'],
    ['empty stdin', ''],
  ])('get with %s: never throws, never hangs', async (_why, input) => {
    const r = await run('git', 'get', input, fakeDeps());
    expect(r.exitCode).toBe(0);
    // "no blank line" is still a valid request (EOF ends it); the rest are silent misses.
    if (_why.startsWith('no blank line')) expect(r.out).toContain('password=');
    else {
      expect(r.out).toBe('');
      if (input.length > 0) expect(r.stderr).toMatch(/^tokend: ignoring git credential input: /);
    }
  });

  it('store does nothing and asks for no token', async () => {
    const deps = fakeDeps();
    const r = await run('git', 'store', `protocol=https\nhost=github.com\nusername=oauth2\npassword=${TOKEN}\n`, deps);
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(deps.calls.getToken).toEqual([]);
    expect(deps.calls.reject).toEqual([]);
  });

  it('erase reports the rejected token to the broker, and prints nothing', async () => {
    const deps = fakeDeps();
    const r = await run('git', 'erase', `protocol=https\nhost=github.com\nusername=oauth2\npassword=${TOKEN}\n`, deps);
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(deps.calls.reject).toEqual([['gh', TOKEN]]);
  });

  it('erase for a host with no account does nothing', async () => {
    const deps = fakeDeps();
    await run('git', 'erase', 'protocol=https\nhost=unknown.test\npassword=x\n', deps);
    expect(deps.calls.reject).toEqual([]);
  });

  it.each(['capability', 'frobnicate', ''])('ignores the unknown action %j silently', async (action) => {
    const r = await run('git', action, 'protocol=https\nhost=github.com\n', fakeDeps());
    expect(r).toEqual({ exitCode: 0, stdout: Buffer.alloc(0), out: '' });
  });

  it('a dependency that throws synchronously is a silent miss, not a throw', async () => {
    const deps = fakeDeps();
    deps.findAccount = () => {
      throw new Error(`boom ${TOKEN}`);
    };
    const r = await run('git', 'get', 'protocol=https\nhost=github.com\n', deps);
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(r.stderr).toBe('tokend: internal error while answering the credential helper');
  });
});

// ------------------------------------------------------------------ docker

describe('docker wire format and helper', () => {
  it('get: a bare registry host, whitespace trimmed', async () => {
    const deps = fakeDeps();
    const r = await run('docker', 'get', '  registry.example.com\n', deps);
    expect(r.exitCode).toBe(0);
    expect(r.out).toBe(`{"ServerURL":"registry.example.com","Username":"oauth2","Secret":"${TOKEN}"}\n`);
    expect(deps.calls.getToken).toEqual([['reg', 60]]);
  });

  it('get: Docker Hub’s https://index.docker.io/v1/', async () => {
    const r = await run('docker', 'get', 'https://index.docker.io/v1/', fakeDeps());
    expect(JSON.parse(r.out)).toEqual({ ServerURL: 'https://index.docker.io/v1/', Username: 'oauth2', Secret: TOKEN });
  });

  it('get: a miss is the exact "not found" string on stdout, exit 1', async () => {
    const r = await run('docker', 'get', 'other.example.com', fakeDeps());
    expect(r).toMatchObject({ exitCode: 1, out: `${DOCKER_ERR_NOT_FOUND}\n` });
  });

  it.each(['', '   \n', '\n\n'])('get with empty input %j: "no credentials server URL"', async (input) => {
    const r = await run('docker', 'get', input, fakeDeps());
    expect(r).toMatchObject({ exitCode: 1, out: `${DOCKER_ERR_NO_SERVER_URL}\n` });
  });

  it('get: a provider error goes to stdout with exit 1', async () => {
    const deps = fakeDeps({ accounts: [{ name: 'broken', hosts: ['registry.example.com'] }] });
    const r = await run('docker', 'get', 'registry.example.com', deps);
    expect(r.exitCode).toBe(1);
    expect(r.out).toMatch(/^tokend: account "broken" needs a new login/);
    expect(r.out.endsWith('\n')).toBe(true);
  });

  it('get: plain http to a remote registry never matches', async () => {
    const r = await run('docker', 'get', 'http://registry.example.com', fakeDeps());
    expect(r).toMatchObject({ exitCode: 1, out: `${DOCKER_ERR_NOT_FOUND}\n` });
  });

  it('store for a registry an account serves: accepted, nothing kept (tokend owns the tokens)', async () => {
    const deps = fakeDeps();
    const r = await run('docker', 'store', `{"ServerURL":"registry.example.com","Username":"u","Secret":"${TOKEN}"}`, deps);
    expect(r).toMatchObject({ exitCode: 0, out: '' });
    expect(deps.calls.getToken).toEqual([]);
  });

  it('store for a registry no account serves: exit 1 and why on stdout, so docker login does not claim a saved login', async () => {
    const deps = fakeDeps();
    const r = await run('docker', 'store', `{"ServerURL":"https://other.example.com/v2/","Username":"u","Secret":"${TOKEN}"}`, deps);
    expect(r.exitCode).toBe(1);
    expect(r.out).toBe(
      'tokend: no tokend account serves https://other.example.com, and tokend keeps no registry passwords: this login is not saved ' +
        '(add an account with --host for this registry, or set another credential helper for it in credHelpers)\n',
    );
    expect(r.out).not.toContain(TOKEN);
    expect(deps.calls.getToken).toEqual([]);
    const tied = await run('docker', 'store', `{"ServerURL":"dup.example.com","Username":"u","Secret":"${TOKEN}"}`, deps);
    expect(tied).toMatchObject({ exitCode: 1, out: expect.stringMatching(/"dup1" and "dup2"/) });
  });

  it.each<[string, string, string]>([
    ['bad JSON', `{"ServerURL": "x", "Secret": "${TOKEN}"`, 'invalid JSON on stdin'],
    ['a JSON array', '[1,2]', 'invalid JSON on stdin'],
    ['binary bytes', '\u0000\u00ff\u0001', 'invalid JSON on stdin'],
    ['no server URL', `{"Username":"u","Secret":"${TOKEN}"}`, DOCKER_ERR_NO_SERVER_URL],
    ['no username', `{"ServerURL":"r.test","Secret":"${TOKEN}"}`, DOCKER_ERR_NO_USERNAME],
  ])('store with %s: exit 1, the reason on stdout, no secret echoed', async (_why, input, expected) => {
    const r = await run('docker', 'store', input, fakeDeps());
    expect(r.exitCode).toBe(1);
    expect(r.out.startsWith(expected)).toBe(true);
    expect(r.out).not.toContain(TOKEN);
  });

  it('store matches JSON keys case-insensitively, as Go does', () => {
    expect(parseDockerInput('store', '{"serverurl":"r.test","username":"u","secret":"s"}')).toEqual({
      ok: true,
      request: { action: 'store', serverUrl: 'r.test', username: 'u', secret: 's' },
    });
  });

  it('erase reports the account stale; a miss is "not found"', async () => {
    const deps = fakeDeps();
    expect(await run('docker', 'erase', 'registry.example.com', deps)).toMatchObject({ exitCode: 0, out: '' });
    expect(deps.calls.reject).toEqual([['reg', undefined]]);
    expect(await run('docker', 'erase', 'nope.test', deps)).toMatchObject({ exitCode: 1, out: `${DOCKER_ERR_NOT_FOUND}\n` });
  });

  it('list answers {} without a lister, the lister’s map with one', async () => {
    expect((await run('docker', 'list', 'unused', fakeDeps())).out).toBe('{}\n');
    const deps = fakeDeps();
    deps.listDockerServers = () => ({ 'registry.example.com': 'oauth2' });
    expect((await run('docker', 'list', '', deps)).out).toBe('{"registry.example.com":"oauth2"}\n');
  });

  it('an unknown action is an error on stdout', async () => {
    expect(await run('docker', 'frob', '', fakeDeps())).toMatchObject({ exitCode: 1, out: 'Unknown credential action\n' });
  });

  it('a 1 MiB input is refused like the Go library does', async () => {
    const r = await run('docker', 'get', 'a'.repeat(1024 * 1024), fakeDeps());
    expect(r).toMatchObject({ exitCode: 1, out: 'bufio.Scanner: token too long\n' });
  });

  it('server URLs become match targets', () => {
    expect(dockerServerTarget('registry.example.com')).toEqual({ protocol: 'https', host: 'registry.example.com' });
    expect(dockerServerTarget('localhost:5000')).toEqual({ protocol: 'https', host: 'localhost', port: 5000 });
    expect(dockerServerTarget('https://index.docker.io/v1/')).toEqual({ protocol: 'https', host: 'index.docker.io', path: '/v1/' });
    expect(dockerServerTarget('http://[::1]:5000')).toEqual({ protocol: 'http', host: '[::1]', port: 5000 });
    expect(dockerServerTarget('https://')).toBeUndefined();
  });

  it('formats fields in the Go struct’s order', () => {
    expect(formatDockerCredential({ Secret: 's', Username: 'u', ServerURL: 'h' } as never).toString()).toBe(
      '{"ServerURL":"h","Username":"u","Secret":"s"}\n',
    );
  });
});

// ------------------------------------------------------------------ kubectl

describe('kubectl wire format and helper', () => {
  const info = (apiVersion: string, server?: string) =>
    JSON.stringify({
      apiVersion,
      kind: 'ExecCredential',
      spec: { interactive: false, ...(server ? { cluster: { server, 'certificate-authority-data': 'LS0t' } } : {}) },
    });

  it('answers v1 with the token and an RFC 3339 expiry in whole seconds', async () => {
    const deps = fakeDeps();
    const r = await run('kubectl', 'get', '', deps, {
      KUBERNETES_EXEC_INFO: info('client.authentication.k8s.io/v1', 'https://172.17.4.100:6443'),
    });
    expect(r.exitCode).toBe(0);
    expect(JSON.parse(r.out)).toEqual({
      apiVersion: 'client.authentication.k8s.io/v1',
      kind: 'ExecCredential',
      status: { token: TOKEN, expirationTimestamp: '2030-01-02T03:04:05Z' },
    });
    expect(deps.calls.getToken).toEqual([['kube', 60]]);
  });

  it('answers in the apiVersion it was asked in (v1beta1)', async () => {
    const r = await run('kubectl', 'get', '', fakeDeps(), {
      KUBERNETES_EXEC_INFO: info('client.authentication.k8s.io/v1beta1', 'https://172.17.4.100:6443'),
    });
    expect(JSON.parse(r.out).apiVersion).toBe('client.authentication.k8s.io/v1beta1');
  });

  it('defaults to v1 without KUBERNETES_EXEC_INFO, for an account named on the command line', async () => {
    const deps = fakeDeps();
    const r = await run('kubectl', 'get', '', deps, { TOKEND_ACCOUNT: 'gh' });
    expect(JSON.parse(r.out).apiVersion).toBe('client.authentication.k8s.io/v1');
    expect(deps.calls.getToken).toEqual([['gh', 60]]);
  });

  it('reads the exec info from stdin when no env is given (a byte-pipe client)', async () => {
    const r = await run('kubectl', 'get', info('client.authentication.k8s.io/v1', 'https://172.17.4.100:6443'), fakeDeps());
    expect(r.exitCode).toBe(0);
  });

  it('leaves out expirationTimestamp when the expiry is unknown', () => {
    const out = formatExecCredential({ apiVersion: 'client.authentication.k8s.io/v1', token: 't', expires_at: null });
    expect(JSON.parse(out.toString()).status).toEqual({ token: 't' });
  });

  it.each<[string, Record<string, string>, RegExp]>([
    ['bad JSON', { KUBERNETES_EXEC_INFO: '{nope' }, /not JSON/],
    ['binary bytes', { KUBERNETES_EXEC_INFO: '\u0000\u0001\u00ff' }, /not JSON/],
    [
      'a removed apiVersion',
      { KUBERNETES_EXEC_INFO: info('client.authentication.k8s.io/v1alpha1') },
      /unsupported ExecCredential apiVersion/,
    ],
    ['a JSON string', { KUBERNETES_EXEC_INFO: '"x"' }, /not an ExecCredential/],
    ['no cluster info and no account', { KUBERNETES_EXEC_INFO: info('client.authentication.k8s.io/v1') }, /provideClusterInfo/],
    [
      'a server no account serves',
      { KUBERNETES_EXEC_INFO: info('client.authentication.k8s.io/v1', 'https://10.0.0.1:6443') },
      /no tokend account serves https:\/\/10\.0\.0\.1:6443/,
    ],
  ])('%s: exit 1, one line on stderr, nothing on stdout', async (_why, env, message) => {
    const r = await run('kubectl', 'get', '', fakeDeps(), env);
    expect(r).toMatchObject({ exitCode: 1, out: '' });
    expect(r.stderr).toMatch(message);
  });

  it('a provider error: exit 1 with the message on stderr', async () => {
    const r = await run('kubectl', 'get', '', fakeDeps(), { TOKEND_ACCOUNT: 'broken' });
    expect(r).toMatchObject({ exitCode: 1, out: '' });
    expect(r.stderr).toMatch(/tokend login broken/);
  });

  it('parses an absent env as v1', () => {
    expect(parseKubectlExecInfo(undefined)).toEqual({
      ok: true,
      request: { apiVersion: 'client.authentication.k8s.io/v1', interactive: false },
    });
  });
});

// ------------------------------------------------------------------ bazel

describe('bazel wire format and helper', () => {
  it('answers headers and expires in whole seconds (Bazel rejects milliseconds)', async () => {
    const deps = fakeDeps();
    const r = await run('bazel', 'get', '{"uri":"https://github.com/org/repo/archive.tar.gz","extra":{"x":1}}', deps);
    expect(r.exitCode).toBe(0);
    expect(r.out).toBe(`{"headers":{"Authorization":["Bearer ${TOKEN}"]},"expires":"2030-01-02T03:04:05Z"}\n`);
    expect(JSON.parse(r.out).expires).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(deps.calls.getToken).toEqual([['gh', 60]]);
  });

  it('normalises a lower-case token_type to Bearer, and keeps another scheme as is', () => {
    expect(formatBazelCredential({ token: 't', token_type: 'bearer', expires_at: null }).toString()).toBe(
      '{"headers":{"Authorization":["Bearer t"]}}\n',
    );
    expect(formatBazelCredential({ token: 't', token_type: 'token', expires_at: null }).toString()).toContain('"token t"');
  });

  it('rounds expiry down to the second', () => {
    expect(rfc3339Seconds(Date.UTC(2024, 0, 1, 0, 0, 0, 999))).toBe('2024-01-01T00:00:00Z');
  });

  it.each<[string, string, RegExp]>([
    ['bad JSON', '{"uri":', /not JSON/],
    ['empty stdin', '', /not JSON/],
    ['binary bytes', '\u0000\u00ff', /not JSON/],
    ['no uri', '{"url":"https://github.com"}', /no "uri"/],
    ['a non-string uri', '{"uri":42}', /no "uri"/],
    ['a relative uri', '{"uri":"/just/a/path"}', /not an absolute URI/],
    ['a foreign domain', '{"uri":"https://elsewhere.test/x"}', /no tokend account serves https:\/\/elsewhere\.test/],
    ['plain http to a remote host', '{"uri":"http://github.com/x"}', /no tokend account serves/],
  ])('%s: exit 1 with a line on stderr', async (_why, input, message) => {
    const r = await run('bazel', 'get', input, fakeDeps());
    expect(r).toMatchObject({ exitCode: 1, out: '' });
    expect(r.stderr).toMatch(message);
  });

  it('a 1 MiB request is refused', () => {
    const r = parseBazelRequest(`{"uri":"https://a.test/${'x'.repeat(1024 * 1024)}"}`);
    expect(r.ok).toBe(false);
  });

  it('only get is an action', async () => {
    const r = await run('bazel', 'store', '{"uri":"https://github.com"}', fakeDeps());
    expect(r.exitCode).toBe(1);
  });

  it('an account named on the command line skips host matching', async () => {
    const deps = fakeDeps();
    const r = await run('bazel', 'get', '{"uri":"https://elsewhere.test/x"}', deps, { TOKEND_ACCOUNT: 'gh' });
    expect(r.exitCode).toBe(0);
    expect(deps.calls.find).toEqual([]);
  });
});

// ------------------------------------------------------------------ HTTP contract and the sh shims

describe('the HTTP contract of POST /v1/helpers/:tool/:action', () => {
  it('maps exit 0 to 200 and exit 1 to 422, stderr to a header', () => {
    const ok = helperHttpResponse({ exitCode: 0, stdout: b('x'), stderr: 'tokend: héllo' });
    expect(ok.status).toBe(200);
    expect(ok.headers[HELPER_STDERR_HEADER]).toBe('tokend: h%C3%A9llo');
    expect(ok.headers['x-tokend-exit']).toBe('0');
    expect(ok.body.toString()).toBe('x');
    const fail = helperHttpResponse({ exitCode: 1, stdout: b('credentials not found in native keychain\n') });
    expect(fail.status).toBe(422);
    expect(fail.headers[HELPER_STDERR_HEADER]).toBeUndefined();
    expect(fail.headers['x-tokend-exit']).toBe('1');
  });

  it('percent-encodes only % and what is not printable ASCII in the stderr header', () => {
    expect(encodeStderrHeader('tokend: 100% "ok" `run x`')).toBe('tokend: 100%25 "ok" `run x`');
    expect(decodeURIComponent(encodeStderrHeader('naïve ✓ 100%'))).toBe('naïve ✓ 100%');
  });

  it('an unknown tool is an error, not a throw', async () => {
    const r = await run('npm', 'get', '', fakeDeps());
    expect(r.exitCode).toBe(1);
  });
});

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const nativeBuilt = existsSync(path.join(repoRoot, 'build', 'tokend-fast'));

/**
 * Each variant is a copy of bin/ in a temp folder: `curl` alone, or with build/tokend-fast
 * beside it, or that binary run under the helpers' names (build/git-credential-tokend, what
 * `tokend setup git` names when it was built), which hands what it cannot answer to the shim.
 * None has dist/, so a fallback to node shows as the shim's own hint: every variant must
 * give the tool the same bytes.
 */
describe.each([
  { variant: 'curl', native: false, entry: false },
  ...(nativeBuilt ? [{ variant: 'tokend-fast', native: true, entry: false }] : []),
  ...(nativeBuilt ? [{ variant: 'build/git-credential-tokend', native: true, entry: true }] : []),
])('helpers ($variant) against a daemon on a Unix socket', ({ native, entry }) => {
  let dir: string;
  let binDir: string;
  let sock: string;
  let staleSock: string;
  let server: http.Server;
  let deps: FakeDeps;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'tokend-shim-'));
    binDir = path.join(dir, 'bin');
    await mkdir(binDir);
    for (const f of ['git-credential-tokend', 'docker-credential-tokend', 'tokend-sh-lib']) {
      await copyFile(path.join(repoRoot, 'bin', f), path.join(binDir, f));
      await chmod(path.join(binDir, f), 0o755);
    }
    if (native) {
      await mkdir(path.join(dir, 'build'));
      await copyFile(path.join(repoRoot, 'build', 'tokend-fast'), path.join(dir, 'build', 'tokend-fast'));
      await chmod(path.join(dir, 'build', 'tokend-fast'), 0o755);
      for (const tool of ['git', 'docker']) await symlink('tokend-fast', path.join(dir, 'build', `${tool}-credential-tokend`));
    }
    sock = path.join(dir, 'tokend.sock');
    deps = fakeDeps();
    // A stand-in for the daemon's route: handleHelper + helperHttpResponse, as the real one must.
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const m = /^\/v1\/helpers\/([a-z]+)\/([a-z-]+)$/.exec(req.url ?? '');
        if (!m || req.method !== 'POST') {
          res.writeHead(404).end();
          return;
        }
        if (m[2] === 'crash') {
          res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":{"code":"internal","message":"x"}}');
          return;
        }
        void handleHelper(m[1]!, m[2]!, { stdin: Buffer.concat(chunks) }, deps).then((r) => {
          const h = helperHttpResponse(r);
          res.writeHead(h.status, h.headers).end(h.body);
        });
      });
    });
    server.listen(sock);
    await once(server, 'listening');
    await symlink(gitShim(), path.join(dir, 'git-credential-tokend'));
    // A socket file nobody listens on: what a killed daemon leaves behind.
    staleSock = path.join(dir, 'stale.sock');
    spawnSync(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(staleSock)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
  });

  afterAll(async () => {
    server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  function sh(cmd: string, args: string[], stdin: string, env: Record<string, string> = {}) {
    return runProgram(cmd, args, {
      stdin,
      env: {
        PATH: process.env.PATH ?? '/usr/bin:/bin',
        HOME: dir,
        TOKEND_SOCKET: sock,
        TOKEND_NO_AUTOSTART: '1',
        GIT_CONFIG_NOSYSTEM: '1',
        GIT_TERMINAL_PROMPT: '0',
        ...env,
      },
    });
  }

  const gitShim = () => path.join(dir, entry ? 'build' : 'bin', 'git-credential-tokend');
  const dockerShim = () => path.join(dir, entry ? 'build' : 'bin', 'docker-credential-tokend');
  const NO_DAEMON = 'tokend: daemon not reachable, and node or dist/client/helper-main.js is missing (run npm run build)\n';

  it('git-credential-tokend get: the exact bytes, exit 0', async () => {
    const r = await sh(gitShim(), ['get'], 'protocol=https\nhost=github.com\n\n');
    expect(r).toEqual({ code: 0, stdout: `username=oauth2\npassword=${TOKEN}\npassword_expiry_utc=${EXPIRES_S}\n`, stderr: '' });
  });

  it('git-credential-tokend through an npm-link style symlink, with --socket=', async () => {
    const r = await sh(path.join(dir, 'git-credential-tokend'), [`--socket=${sock}`, 'get'], 'protocol=https\nhost=github.com\n', {
      TOKEND_SOCKET: '',
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`password=${TOKEN}\n`);
  });

  it('git-credential-tokend: the daemon’s stderr line reaches stderr; stdout stays empty', async () => {
    const r = await sh(gitShim(), ['get'], 'protocol=https\nhost=broken.example.com\n');
    expect(r).toEqual({ code: 0, stdout: '', stderr: 'tokend: account "broken" needs a new login: run `tokend login broken`\n' });
  });

  it('git-credential-tokend erase: trailing newlines and the password reach the daemon intact', async () => {
    const before = deps.calls.reject.length;
    const r = await sh(gitShim(), ['erase'], `protocol=https\nhost=github.com\npassword=${TOKEN}\n\n\n`);
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
    expect(deps.calls.reject.slice(before)).toEqual([['gh', TOKEN]]);
  });

  it('docker-credential-tokend: 200 → JSON and exit 0; 422 → the message on stdout and exit 1', async () => {
    const ok = await sh(dockerShim(), ['get'], 'registry.example.com\n');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ Username: 'oauth2', Secret: TOKEN });
    const miss = await sh(dockerShim(), ['get'], 'nope.test\n');
    expect(miss).toEqual({ code: 1, stdout: `${DOCKER_ERR_NOT_FOUND}\n`, stderr: '' });
  });

  it('real git uses the shim as its credential helper', async () => {
    const r = await sh(
      'git',
      ['-c', 'credential.helper=', '-c', `credential.helper=${gitShim()}`, 'credential', 'fill'],
      'protocol=https\nhost=github.com\n\n',
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`protocol=https\nhost=github.com\nusername=oauth2\npassword=${TOKEN}\n`);
  });

  it('a dead daemon (stale socket) falls back to node; without node the tool is told its way', async () => {
    expect(await sh(gitShim(), ['get'], 'protocol=https\nhost=github.com\n', { TOKEND_SOCKET: staleSock })).toEqual({
      code: 0,
      stdout: '',
      stderr: NO_DAEMON,
    });
    expect(await sh(dockerShim(), ['get'], 'registry.example.com', { TOKEND_SOCKET: staleSock })).toEqual({
      code: 1,
      stdout: NO_DAEMON,
      stderr: '',
    });
  });

  it('no socket at all goes straight to the node fallback', async () => {
    const r = await sh(gitShim(), ['get'], 'protocol=https\nhost=github.com\n', { TOKEND_SOCKET: path.join(dir, 'none.sock') });
    expect(r).toEqual({ code: 0, stdout: '', stderr: NO_DAEMON });
  });

  it.skipIf(native)('curl: a status other than 200/422 falls back to node', async () => {
    const r = await sh(gitShim(), ['crash'], 'protocol=https\nhost=github.com\n');
    expect(r).toEqual({ code: 0, stdout: '', stderr: NO_DAEMON });
  });

  it.runIf(native && !entry)(
    'a build/tokend-fast that does not run as itself (exit 126, killed) falls back to node, which answers the tool its way',
    async () => {
      const fast = path.join(dir, 'build', 'tokend-fast');
      const real = `${fast}.real`;
      await copyFile(fast, real);
      const broken = (status: number) =>
        `tokend: ${dir}/build/tokend-fast cannot run here (exit ${status}); answering through node. Rebuild it: node "${dir}/scripts/build-native.mjs"\n`;
      try {
        for (const [body, status] of [
          ['exit 126', 126],
          ['kill -9 $$', 137],
        ] as const) {
          await writeFile(fast, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
          // (Before our line, the shell may say what happened to its child: dash prints "Killed".)
          const git = await sh(gitShim(), ['get'], 'protocol=https\nhost=github.com\n');
          expect([git.code, git.stdout, git.stderr.endsWith(broken(status) + NO_DAEMON)], git.stderr).toEqual([0, '', true]);
          const docker = await sh(dockerShim(), ['get'], 'registry.example.com');
          expect([docker.code, docker.stdout, docker.stderr.endsWith(broken(status))], docker.stderr).toEqual([1, NO_DAEMON, true]);
        }
      } finally {
        await copyFile(real, fast);
      }
      // The real one answers again, at once.
      expect((await sh(gitShim(), ['get'], 'protocol=https\nhost=github.com\n')).stdout).toContain(`password=${TOKEN}\n`);
    },
  );
});
