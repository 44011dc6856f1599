/**
 * `@tokend/client` as an app gets it: `npm pack` of packages/client, `npm install` of the
 * tarball into a fresh project with an empty npm cache and --offline (it has no
 * dependencies, so nothing is fetched), then a strict consumer type-checked against the
 * shipped declarations with skipLibCheck off, and run against a real daemon that the
 * package's autostart starts from TOKEND_BIN, or finds as `tokend` on PATH, or says it
 * cannot find.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { daemonCommand } from '../src/protocol/autostart.js';
import { resolvePaths } from '../src/protocol/paths.js';
import { ROOT, TOKEND_BIN, socketRequest, tokendEnv } from './support/daemon.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { typecheckApp } from './support/app-tsc.js';
import { importGraph } from './support/sdk-graph.js';

const run = promisify(execFile);
const PACKAGE = path.join(ROOT, 'packages', 'client');
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'client-consumer', 'consumer.ts');
const npm = (args: string[], cwd: string) => run('npm', [...args, '--no-audit', '--no-fund'], { cwd, maxBuffer: 16 << 20 });

describe('@tokend/client from its packed tarball, installed alone', { timeout: 120_000 }, () => {
  let work: string;
  let project: string;
  let installed: string;
  let packed: string[];
  let idp: TestIdp;
  /** Daemons the consumer's autostart started, stopped at the end, and their homes. */
  const daemons: number[] = [];
  const homes: string[] = [];

  beforeAll(async () => {
    if (!fs.existsSync(path.join(PACKAGE, 'dist', 'sdk', 'index.d.ts')))
      throw new Error('packages/client is not built: run `npm run build`');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-cpkg-'));
    project = path.join(work, 'app');
    fs.mkdirSync(project);
    const p = JSON.parse((await npm(['pack', '--json', '--pack-destination', work], PACKAGE)).stdout)[0];
    packed = p.files.map((f: { path: string }) => f.path);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'client-consumer', private: true, type: 'module' }));
    const started = performance.now();
    await npm(['install', path.join(work, p.filename), '--offline', '--cache', path.join(work, 'npm-cache')], project);
    // Recorded, not asserted (no timing assertions): the issue asks for well under 10 s.
    console.log(`@tokend/client: npm install --offline with an empty cache took ${Math.round(performance.now() - started)} ms`);
    installed = path.join(project, 'node_modules', '@tokend', 'client');
    idp = await startIdp();
  }, 180_000);

  afterAll(async () => {
    for (const pid of daemons) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        /* gone already */
      }
    }
    await idp?.close();
    for (const home of homes) fs.rmSync(home, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    if (work) fs.rmSync(work, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });

  it('the tarball: ESM with declarations, node >= 20, no dependency, no install script, no native code', () => {
    expect(packed.filter((f) => !f.startsWith('dist/')).sort()).toEqual(['LICENSE', 'package.json']);
    expect(packed).toContain('dist/sdk/index.js');
    expect(packed).toContain('dist/sdk/index.d.ts');
    expect(packed.filter((f) => f.endsWith('.node') || f.endsWith('.map') || f.endsWith('.c'))).toEqual([]);
    const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
    expect(manifest).toMatchObject({ name: '@tokend/client', type: 'module', license: 'MIT', engines: { node: '>=20' } });
    for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies', 'bundleDependencies', 'bin', 'gypfile'])
      expect(manifest[field], field).toBeUndefined();
    for (const script of ['preinstall', 'install', 'postinstall', 'prepare']) expect(manifest.scripts?.[script], script).toBeUndefined();
    // What node loads from it: its own modules and node's built-ins, nothing else.
    const graph = importGraph(path.join(installed, 'dist'), 'sdk/index.js');
    expect(graph.packages).toEqual({});
    expect(graph.modules.filter((m) => !packed.includes(`dist/${m}`))).toEqual([]);
    // The declarations name no package either (zod's wire types are written out).
    for (const f of packed.filter((f) => f.endsWith('.d.ts')))
      expect(fs.readFileSync(path.join(installed, f), 'utf8'), f).not.toMatch(/^(?:import|export)\b[^;]*?\bfrom\s+['"](?!node:|\.)/m);
  });

  it('npm ls --all --omit=dev lists @tokend/client and nothing else', async () => {
    const ls = JSON.parse((await npm(['ls', '--all', '--omit=dev', '--json'], project)).stdout);
    expect(Object.keys(ls.dependencies)).toEqual(['@tokend/client']);
    expect(ls.dependencies['@tokend/client'].dependencies).toBeUndefined();
    expect(fs.readdirSync(path.join(project, 'node_modules')).filter((e) => !e.startsWith('.'))).toEqual(['@tokend']);
  });

  it('type-checks a strict app (nodenext, skipLibCheck off) against the shipped declarations', async () => {
    fs.copyFileSync(FIXTURE, path.join(project, 'consumer.ts'));
    const output = await typecheckApp(project, ['consumer.ts'], {
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      noEmitOnError: true,
      // Every declaration file checked, the package's too: one that names a missing package fails here.
      skipLibCheck: false,
      outDir: 'out',
    });
    expect(output).toBe('');
    expect(fs.existsSync(path.join(project, 'out', 'consumer.js'))).toBe(true);
  });

  /** Run the consumer under a home of its own, with autostart on and no `tokend` on PATH unless `bin` puts one there. */
  async function consumer(args: string[], extra: { TOKEND_BIN?: string; binDir?: string } = {}) {
    expect(fs.existsSync(path.join(project, 'out', 'consumer.js')), 'the type check above emits the app').toBe(true);
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-'));
    homes.push(home);
    const env = tokendEnv(home, { PATH: [extra.binDir, path.dirname(process.execPath), '/usr/bin', '/bin'].filter(Boolean).join(':') });
    delete env.TOKEND_NO_AUTOSTART;
    delete env.TOKEND_BIN;
    if (extra.TOKEND_BIN) env.TOKEND_BIN = extra.TOKEND_BIN;
    const app = spawn(process.execPath, [path.join(project, 'out', 'consumer.js'), ...args], { cwd: project, env });
    let stdout = '';
    let stderr = '';
    app.stdout.on('data', (c) => (stdout += c));
    app.stderr.on('data', (c) => (stderr += c));
    const code = await new Promise<number | null>((resolve) => app.on('close', resolve));
    expect([code, stderr]).toEqual([0, '']);
    const said = JSON.parse(stdout);
    if (said.pid) daemons.push(said.pid);
    return { said, home, env };
  }

  it('starts the daemon from TOKEND_BIN and reads a token and an account from it', async () => {
    for (const dir of ['/usr/bin', '/bin', path.dirname(process.execPath)])
      expect(fs.existsSync(path.join(dir, 'tokend')), dir).toBe(false);
    const { said, env } = await consumer(['token', idp.issuer], { TOKEND_BIN });
    expect(said).toEqual({
      added: 'svc',
      token: { account: 'svc', type: 'Bearer', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) },
      info: { status: 'active', flow: 'client-credentials', expires_at: 'string' },
      pid: expect.any(Number),
    });
    // The token the daemon serves is the one the app read, and the provider issued it.
    const served = await socketRequest(resolvePaths(env).socket, 'POST', '/v1/token', { account: 'svc' });
    expect(createHash('sha256').update(served.json.access_token).digest('hex')).toBe(said.token.sha256);
    expect((await idp.introspect(served.json.access_token)).active).toBe(true);
  });

  it('finds the daemon as `tokend` on PATH when TOKEND_BIN is not set', async () => {
    const binDir = path.join(work, 'bin');
    fs.mkdirSync(binDir, { recursive: true });
    fs.symlinkSync(TOKEND_BIN, path.join(binDir, 'tokend'));
    const { said } = await consumer(['health'], { binDir });
    expect(said).toEqual({ pid: expect.any(Number) });
  });

  it('with neither TOKEND_BIN nor tokend on PATH: daemon_not_found, saying how to install tokend, and nothing made', async () => {
    const { said, home } = await consumer(['health']);
    expect(said.error).toMatchObject({ code: 'daemon_not_found', retryable: false });
    expect(said.error.message).toContain('TOKEND_BIN');
    expect(said.error.message).toContain('npm install -g tokend');
    expect(fs.readdirSync(home)).toEqual([]);

    // A relative PATH entry means the app's own folder: never a daemon from there.
    fs.mkdirSync(path.join(project, 'bin'), { recursive: true });
    fs.symlinkSync(TOKEND_BIN, path.join(project, 'bin', 'tokend'));
    const relative = await consumer(['health'], { binDir: 'bin' });
    expect(relative.said.error.code).toBe('daemon_not_found');

    const notThere = path.join(work, 'no-such-tokend');
    const wrong = await consumer(['health'], { TOKEND_BIN: notThere });
    expect(wrong.said.error.code).toBe('daemon_not_found');
    expect(wrong.said.error.message).toContain(`TOKEND_BIN is ${notThere}, which is not an executable file`);
  });
});

describe("autostart's daemon command (src/protocol/autostart.ts)", () => {
  it("TOKEND_BIN first, then the tokend package's own bin/tokend, then `tokend` on PATH; a folder or a missing file is no command", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-bin-'));
    try {
      const other = path.join(dir, 'tokend');
      fs.writeFileSync(other, '#!/bin/sh\n', { mode: 0o755 });
      expect(daemonCommand({ TOKEND_BIN: other, PATH: '' })).toEqual([other]);
      // Run from this checkout, the tokend package: its own daemon, whatever PATH holds.
      expect(daemonCommand({ PATH: dir })).toEqual([process.execPath, TOKEND_BIN]);
      for (const wrong of [dir, path.join(dir, 'missing')]) {
        expect(daemonCommand({ TOKEND_BIN: wrong, PATH: dir })).toBe(
          `TOKEND_BIN is ${wrong}, which is not an executable file; set it to the tokend command (\`command -v tokend\` where tokend is installed)`,
        );
      }
      fs.chmodSync(other, 0o644);
      expect(daemonCommand({ TOKEND_BIN: other })).toMatch(/^TOKEND_BIN is .* not an executable file/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
