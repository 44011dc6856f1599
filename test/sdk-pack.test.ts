/**
 * `tokend/client` as an app gets it: `npm pack`, `npm install` of the tarball into a fresh
 * project, a consumer type-checked by tsc against the shipped declarations, then run, with
 * nothing in node_modules but the tarball's own files, against a real daemon and the
 * real IdP.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';
import { startDaemon, type TestDaemon } from './support/fake-as.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { typecheckApp } from './support/app-tsc.js';
import { importGraph, SDK_PENDING_PACKAGES } from './support/sdk-graph.js';

const run = promisify(execFile);
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'sdk-consumer', 'consumer.ts');

describe('tokend/client from the packed tarball', () => {
  let work: string;
  let project: string;
  let idp: TestIdp;
  let t: TestDaemon;

  beforeAll(async () => {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'sdk', 'index.d.ts'))) throw new Error('dist/sdk is not built: run `npm run build`');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-pack-'));
    project = path.join(work, 'app');
    fs.mkdirSync(project);
    // dist/ is built by `npm test`; --ignore-scripts skips `prepare` building it again.
    const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], { cwd: ROOT, maxBuffer: 16 << 20 });
    const tarball = path.join(work, (JSON.parse(packed.stdout) as Array<{ filename: string }>)[0]!.filename);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'sdk-consumer', private: true, type: 'module' }));
    // --ignore-scripts: better-sqlite3 would otherwise compile for minutes, for a daemon
    // this app never runs (the test's daemon is the checkout's).
    await run('npm', ['install', tarball, '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', '--no-package-lock'], {
      cwd: project,
      maxBuffer: 16 << 20,
    });
    idp = await startIdp();
    t = await startDaemon();
  }, 120_000);

  afterAll(async () => {
    await t?.cleanup();
    await idp?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('type-checks an app against the shipped declarations, including what they must refuse', async () => {
    fs.copyFileSync(FIXTURE, path.join(project, 'consumer.ts'));
    const output = await typecheckApp(project, ['consumer.ts'], {
      noEmitOnError: true,
      // As most apps have it (tsc --init); typings that fail to resolve still show, as the
      // consumer's @ts-expect-error lines go unused.
      skipLibCheck: true,
      outDir: 'out',
    });
    expect(output).toBe('');
    expect(fs.existsSync(path.join(project, 'out', 'consumer.js'))).toBe(true);
  });

  it('runs with nothing installed but the tarball: addAccount, login with a task, waitForLogin, token, info, accounts, events, a typed error', async () => {
    expect(fs.existsSync(path.join(project, 'out', 'consumer.js')), 'the type check above emits the app').toBe(true);
    // Every dependency of tokend goes: the SDK must not need one.
    const installed = path.join(project, 'node_modules', 'tokend');
    const needed = Object.keys(importGraph(path.join(installed, 'dist'), 'sdk/index.js').packages);
    expect(needed).toEqual([...SDK_PENDING_PACKAGES].sort());
    for (const entry of fs.readdirSync(path.join(project, 'node_modules'))) {
      if (entry !== 'tokend' && !entry.startsWith('.') && !needed.includes(entry))
        fs.rmSync(path.join(project, 'node_modules', entry), { recursive: true, force: true });
    }
    expect(fs.existsSync(path.join(project, 'node_modules', 'zod'))).toBe(false);

    const app = spawn(process.execPath, [path.join(project, 'out', 'consumer.js'), idp.issuer], {
      cwd: project,
      env: t.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    app.stderr.on('data', (c) => (stderr += c));
    const lines = readLines(app.stdout);
    const exited = new Promise<number | null>((resolve) => app.on('close', resolve));
    try {
      const login = await lines.next(20_000);
      expect(login, stderr).toMatchObject({ step: 'login', verification_uri: `${idp.issuer}/device` });
      expect(login.user_code).toMatch(/^[A-Z0-9-]+$/);
      await idp.approveDevice(login.user_code);

      const done = await lines.next(20_000);
      expect(await exited, stderr).toBe(0);
      const served = await t.d.request('POST', '/v1/token', { account: 'work' });
      // Login tasks (`task`, `GET /v1/logins?task=`) are in the protocol before every daemon has them.
      const tasksKnown = (await t.d.request('GET', '/v1/logins')).status === 200;
      expect(done).toEqual({
        step: 'done',
        added: { name: 'work', status: 'no_grant' },
        login: { status: 'active', task: tasksKnown ? 'task-42' : null },
        token: { account: 'work', token_type: 'Bearer', expires_in: expect.any(Number), sha256: sha256(served.json.access_token) },
        info: { status: 'active', has_refresh_token: true, last_login: 'active' },
        accounts: ['work'],
        byTask: tasksKnown ? [login.id] : { error: 'not_found' },
        unknown: { code: 'not_found', status: 404, isTokendError: true },
        events: expect.arrayContaining([
          { type: 'login.pending', account: 'work', login_id: login.id },
          { type: 'login.succeeded', account: 'work', login_id: login.id },
        ]),
      });
      expect((await idp.introspect(served.json.access_token)).active).toBe(true);
      // The package's commands still install and run beside the SDK.
      const list = await run(path.join(project, 'node_modules', '.bin', 'tokend'), ['list', '--json'], { env: t.env });
      expect(JSON.parse(list.stdout)).toMatchObject({ accounts: [{ name: 'work', status: 'active' }] });
      expect(fs.existsSync(path.join(project, 'node_modules', '.bin', 'git-credential-tokend'))).toBe(true);
      // No token in the daemon's log.
      expect(t.d.logs).not.toContain(served.json.access_token);
    } finally {
      app.kill('SIGKILL');
    }
  });
});

function sha256(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

/** JSON lines from a child's stdout, one at a time. */
function readLines(stream: NodeJS.ReadableStream): { next(timeoutMs: number): Promise<any> } {
  const queue: string[] = [];
  let buf = '';
  let wake: (() => void) | undefined;
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      queue.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
    wake?.();
  });
  return {
    async next(timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (queue.length === 0) {
        if (Date.now() > deadline) throw new Error('timed out waiting for the app to say something');
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, 100);
        });
      }
      return JSON.parse(queue.shift()!);
    },
  };
}
