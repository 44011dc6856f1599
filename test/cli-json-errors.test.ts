/**
 * With --json, a failing command says why on stdout as `{"error":{"code","message"}}` (and
 * in words on stderr), for every command that takes --json, through the real CLI against a
 * real daemon, and with no daemon at all. A program reading stdout never gets text.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, tokendEnv } from './support/daemon.js';
import { useDaemon } from './support/fixtures.js';

/** The one JSON error on stdout: code and message, nothing else printed there. */
function jsonError(r: { stdout: string; stderr: string }): { code: string; message: string } {
  let parsed: any;
  expect(() => (parsed = JSON.parse(r.stdout)), `stdout is one JSON document: ${r.stdout}\nstderr: ${r.stderr}`).not.toThrow();
  expect(Object.keys(parsed)).toEqual(['error']);
  expect(parsed.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
  // The person still reads the reason on stderr.
  expect(r.stderr).toContain(parsed.error.message.replace(/^tokend [a-z ]+: /, ''));
  return parsed.error;
}

/** Every command that takes --json, on an account that does not exist (or with nothing else to fail on: bad usage). */
const CASES: Array<{ args: string[]; stdin?: string; code: string; exit: number }> = [
  { args: ['add', 'x', '--client-id', 'c', '--no-check', '--json'], code: 'invalid_request', exit: 1 },
  { args: ['set', 'nosuch', '--scope', 'x', '--json'], code: 'not_found', exit: 1 },
  { args: ['login', 'nosuch', '--json'], code: 'not_found', exit: 1 },
  { args: ['login', 'nosuch', '--flow', 'device', '--no-wait', '--json'], code: 'not_found', exit: 1 },
  { args: ['import', 'nosuch', '--refresh-token-stdin', '--json'], stdin: 'rt-not-a-real-one', code: 'not_found', exit: 1 },
  { args: ['list', 'extra', '--json'], code: 'usage', exit: 2 },
  { args: ['status', 'nosuch', '--json'], code: 'not_found', exit: 1 },
  { args: ['refresh', 'nosuch', '--json'], code: 'not_found', exit: 1 },
  { args: ['refresh', '--json'], code: 'usage', exit: 2 },
  { args: ['logout', 'nosuch', '--json'], code: 'not_found', exit: 1 },
  { args: ['remove', 'nosuch', '--json'], code: 'not_found', exit: 1 },
  { args: ['token', 'nosuch', '--json'], code: 'not_found', exit: 1 },
  { args: ['token', '--url', 'https://nothing-matches.example/x', '--json'], code: 'not_found', exit: 1 },
  { args: ['api', 'nosuch', '/user', '--json'], code: 'not_found', exit: 1 },
  { args: ['setup', 'git', '--global', '--no-such-option', '--json'], code: 'usage', exit: 2 },
  { args: ['listen-key', '--json'], code: 'not_found', exit: 1 },
  { args: ['key', 'where', '--to', 'file', '--json'], code: 'usage', exit: 2 },
  { args: ['service', 'bogus', '--json'], code: 'usage', exit: 2 },
  { args: ['doctor', '--bogus', '--json'], code: 'usage', exit: 2 },
  { args: ['version', 'extra', '--json'], code: 'usage', exit: 2 },
  { args: ['no-such-command', '--json'], code: 'usage', exit: 2 },
];

describe('--json errors against a running daemon', () => {
  const { t } = useDaemon();

  it.each(CASES)('tokend $args.0 … --json → $code, exit $exit', async ({ args, stdin, code, exit }) => {
    const r = await t.d.cli(args, stdin);
    expect(r.code, r.stderr).toBe(exit);
    expect(jsonError(r).code).toBe(code);
  });

  it('carries what the daemon said besides code and message (the account)', async () => {
    const r = await t.d.cli(['refresh', 'nosuch', '--json']);
    expect(jsonError(r)).toMatchObject({ code: 'not_found', account: 'nosuch' });
  });

  it('without --json, stdout stays empty and the reason is on stderr', async () => {
    const r = await t.d.cli(['refresh', 'nosuch']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^tokend: no account named "nosuch"/);
  });

  it('--json after `--` belongs to the command run, not to tokend', async () => {
    const r = await t.d.cli(['exec', 'nosuch', '--', 'true', '--json']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
  });

  it('`tokend status` of an account without a client (AMP) prints no client_id line, never "undefined"', async () => {
    const add = await t.d.cli(
      ['add', 'amp', '--preset', 'amp', '--username', 'someone', '--password-stdin', '--no-check'],
      'not-a-real-password',
    );
    expect(add.code, add.stderr).toBe(0);
    for (const args of [['status', 'amp'], ['status']]) {
      const r = await t.d.cli(args);
      expect(r.stdout).toContain('driver:     amp (preset amp)');
      expect(r.stdout).not.toContain('undefined');
      expect(r.stdout).not.toMatch(/^client_id:/m);
    }
    expect((await t.d.cli(['remove', 'amp'])).code).toBe(0);
  });
});

describe('--json errors with no daemon at all', () => {
  let home: string;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-'));
    env = tokendEnv(home); // TOKEND_NO_AUTOSTART=1: nothing starts one
  });
  afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

  const daemonCommands = CASES.filter((c) => c.code !== 'usage' && c.args[0] !== 'listen-key').concat([
    { args: ['list', '--json'], code: 'daemon_unreachable', exit: 1 },
    { args: ['status', '--json'], code: 'daemon_unreachable', exit: 1 },
    { args: ['key', '--json'], code: 'daemon_unreachable', exit: 1 },
  ]);

  // Where launchctl does not exist, a launchd install fails before it writes anything.
  it.skipIf(process.platform === 'darwin')(
    'tokend service install … --json: the failure is error {code, message} in its report',
    async () => {
      const r = await runCli(['service', 'install', '--platform', 'darwin', '--json'], { env: { ...env, HOME: home } });
      expect(r.code).toBe(1);
      const report = JSON.parse(r.stdout);
      expect(report).toMatchObject({
        command: 'install',
        ok: false,
        error: { code: 'failed', message: expect.stringContaining('launchd') },
      });
      expect(r.stderr).toContain(report.error.message.split('\n')[0]);
    },
  );

  it('tokend setup git … --json where git cannot run → failed, exit 1', async () => {
    const r = await runCli(['setup', 'git', '--global', '--json'], { env: { ...env, HOME: home, PATH: path.join(home, 'no-bin') } });
    expect(r.code, r.stderr).toBe(1);
    expect(jsonError(r)).toMatchObject({ code: 'failed', message: expect.stringMatching(/^setup git: cannot run git/) });
  });

  it.each(daemonCommands)('tokend $args.0 … --json → daemon_unreachable, exit 1', async ({ args, stdin }) => {
    const r = await runCli(args, { env, stdin });
    expect(r.code, r.stderr).toBe(1);
    expect(jsonError(r)).toMatchObject({ code: 'daemon_unreachable', message: expect.stringContaining('tokend is not running') });
  });
});
