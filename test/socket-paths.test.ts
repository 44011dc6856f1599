/**
 * The sh shims find the daemon's socket without node (`tokend_resolve_socket` in
 * bin/tokend-sh-lib), and so does the native helper (build/git-credential-tokend,
 * `resolve_socket` in native/tokend-fast.c); the node client uses `resolvePaths`
 * (src/protocol/paths.ts). All three run here on the same environments, each as a real
 * process, and must name the same socket, or leave the answer to node.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';

const SH_LIB = path.join(ROOT, 'bin', 'tokend-sh-lib');
const PATHS_JS = path.join(ROOT, 'dist', 'protocol', 'paths.js');
const HELPER_MAIN_JS = path.join(ROOT, 'dist', 'client', 'helper-main.js');

type Env = Record<string, string>;

/** native/tokend-fast.c built with its socket probe (a main that prints what the helper would connect to). */
function buildProbe(dir: string): string | undefined {
  const out = path.join(dir, 'socket-probe');
  const r = spawnSync('cc', ['-std=c99', '-w', '-DTOKEND_SOCKET_PROBE', '-o', out, path.join(ROOT, 'native', 'tokend-fast.c')], {
    encoding: 'utf8',
  });
  return r.status === 0 ? out : undefined;
}

/** What the native helper would connect to, or 'defer' when it would hand the call to the shim. */
function cSocket(probe: string, env: Env, args: string[], cwd: string): string {
  const r = spawnSync(probe, [...args, 'get'], { env, cwd, encoding: 'utf8' });
  if (r.status === 7) return 'defer';
  if (r.status !== 0) throw new Error(`the probe failed (${r.status}): ${r.stderr}`);
  return path.resolve(cwd, r.stdout);
}

/** What `tokend_resolve_socket` sets after the shim read its arguments, or 'defer' when it says only node can tell. */
function shSocket(env: Env, args: string[], cwd: string): string {
  const script = '. "$0"; tokend_parse_args "$@"; if tokend_resolve_socket; then printf %s "$TOKEND_SOCK"; else exit 7; fi';
  const r = spawnSync('/bin/sh', ['-c', script, SH_LIB, ...args, 'get'], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    cwd,
    encoding: 'utf8',
  });
  if (r.status === 7) return 'defer';
  if (r.status !== 0) throw new Error(`sh failed (${r.status}): ${r.stderr}`);
  // The shim hands the path to tokend-fast or curl as is: a relative one is relative to the same cwd.
  return path.resolve(cwd, r.stdout);
}

/**
 * The node helper's socket for the same arguments, in a node process with exactly `env`
 * (env-paths reads the process's own): `--socket` as helper-main reads it, then resolvePaths.
 */
function nodeSocket(env: Env, args: string[], cwd: string): string {
  const code = `Promise.all([import(${JSON.stringify(pathToFileURL(PATHS_JS).href)}), import(${JSON.stringify(pathToFileURL(HELPER_MAIN_JS).href)})])
    .then(([p, h]) => process.stdout.write(p.resolvePaths(process.env, h.parseHelperArgs(JSON.parse(process.argv[1])).socket).socket))`;
  const r = spawnSync(process.execPath, ['-e', code, JSON.stringify([...args, 'get'])], { env, cwd, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`node failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

describe.skipIf(process.platform === 'win32')('the sh shims and resolvePaths find the same socket', () => {
  let cwd: string;
  let probe: string | undefined;
  beforeAll(() => {
    cwd = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-paths-')));
    // Where the helpers' native client is built (a C compiler is there), it is checked too.
    probe = buildProbe(cwd);
    if (!probe && fs.existsSync(path.join(ROOT, 'build', 'tokend-fast')))
      throw new Error('build/tokend-fast exists but cc could not build the socket probe');
  });
  afterAll(() => fs.rmSync(cwd, { recursive: true, force: true }));

  const H = '/home/u';
  const rows: Array<[why: string, env: Env, expected: string, args?: string[]]> = [
    ['TOKEND_SOCKET', { HOME: H, TOKEND_SOCKET: '/s/t.sock' }, '/s/t.sock'],
    ['a relative TOKEND_SOCKET', { HOME: H, TOKEND_SOCKET: 'rel/t.sock' }, '<cwd>/rel/t.sock'],
    [
      'TOKEND_SOCKET beats TOKEND_HOME and XDG_RUNTIME_DIR',
      { HOME: H, TOKEND_SOCKET: '/s/t.sock', TOKEND_HOME: '/th', XDG_RUNTIME_DIR: '/run/user/1' },
      '/s/t.sock',
    ],
    ['an empty TOKEND_SOCKET counts as unset', { HOME: H, TOKEND_SOCKET: '', TOKEND_HOME: '/th' }, '/th/run/tokend.sock'],
    ['TOKEND_HOME', { HOME: H, TOKEND_HOME: '/th' }, '/th/run/tokend.sock'],
    ['TOKEND_HOME with a trailing slash', { HOME: H, TOKEND_HOME: '/th/' }, '/th/run/tokend.sock'],
    ['a relative TOKEND_HOME', { HOME: H, TOKEND_HOME: 'th' }, '<cwd>/th/run/tokend.sock'],
    ['TOKEND_HOME with a space', { HOME: H, TOKEND_HOME: '/t h' }, '/t h/run/tokend.sock'],
    [
      'TOKEND_HOME beats XDG_RUNTIME_DIR and TOKEND_DATA_DIR',
      { HOME: H, TOKEND_HOME: '/th', XDG_RUNTIME_DIR: '/run/user/1', TOKEND_DATA_DIR: '/d' },
      '/th/run/tokend.sock',
    ],
    [
      'an empty TOKEND_HOME counts as unset',
      { HOME: H, TOKEND_HOME: '', XDG_RUNTIME_DIR: '/run/user/1' },
      '/run/user/1/tokend/tokend.sock',
    ],
    ['XDG_RUNTIME_DIR', { HOME: H, XDG_RUNTIME_DIR: '/run/user/1' }, '/run/user/1/tokend/tokend.sock'],
    ['a relative XDG_RUNTIME_DIR', { HOME: H, XDG_RUNTIME_DIR: 'run' }, '<cwd>/run/tokend/tokend.sock'],
    [
      'XDG_RUNTIME_DIR beats TOKEND_DATA_DIR',
      { HOME: H, XDG_RUNTIME_DIR: '/run/user/1', TOKEND_DATA_DIR: '/d' },
      '/run/user/1/tokend/tokend.sock',
    ],
    ['an empty XDG_RUNTIME_DIR counts as unset', { HOME: H, XDG_RUNTIME_DIR: '' }, `${H}/.local/share/tokend/run/tokend.sock`],
    ['TOKEND_DATA_DIR', { HOME: H, TOKEND_DATA_DIR: '/d' }, '/d/run/tokend.sock'],
    ['a relative TOKEND_DATA_DIR', { HOME: H, TOKEND_DATA_DIR: 'd' }, '<cwd>/d/run/tokend.sock'],
    ['an empty TOKEND_DATA_DIR counts as unset', { HOME: H, TOKEND_DATA_DIR: '' }, `${H}/.local/share/tokend/run/tokend.sock`],
    [
      'TOKEND_CONFIG_DIR and TOKEND_KEY_FILE do not move the socket',
      { HOME: H, TOKEND_CONFIG_DIR: '/c', TOKEND_KEY_FILE: '/k' },
      `${H}/.local/share/tokend/run/tokend.sock`,
    ],
    ['HOME alone: the XDG data default', { HOME: H }, `${H}/.local/share/tokend/run/tokend.sock`],
    ['XDG_DATA_HOME', { HOME: H, XDG_DATA_HOME: '/xd' }, '/xd/tokend/run/tokend.sock'],
    ['a relative XDG_DATA_HOME', { HOME: H, XDG_DATA_HOME: 'xd' }, '<cwd>/xd/tokend/run/tokend.sock'],
    ['an empty XDG_DATA_HOME counts as unset', { HOME: H, XDG_DATA_HOME: '' }, `${H}/.local/share/tokend/run/tokend.sock`],
    ['a relative HOME', { HOME: 'hh' }, '<cwd>/hh/.local/share/tokend/run/tokend.sock'],
    [
      'every variable empty but HOME',
      { HOME: H, TOKEND_SOCKET: '', TOKEND_HOME: '', XDG_RUNTIME_DIR: '', TOKEND_DATA_DIR: '', XDG_DATA_HOME: '' },
      `${H}/.local/share/tokend/run/tokend.sock`,
    ],
    // Without HOME only node knows the home folder (getpwuid): the shim leaves it to node.
    ['no HOME', {}, 'defer'],
    ['an empty HOME', { HOME: '' }, 'defer'],
    // git passes the helper's configured words: `credential.helper = tokend --socket=PATH`.
    ['--socket=PATH beats TOKEND_SOCKET', { HOME: H, TOKEND_SOCKET: '/a.sock' }, '/b.sock', ['--socket=/b.sock']],
    ['--socket PATH', { HOME: H, TOKEND_HOME: '/th' }, '/b.sock', ['--socket', '/b.sock']],
    ['a relative --socket', { HOME: H }, '<cwd>/b.sock', ['--socket=b.sock']],
    ['an empty --socket= counts as unset', { HOME: H, TOKEND_SOCKET: '/a.sock' }, '/a.sock', ['--socket=']],
    ['an empty --socket counts as unset', { HOME: H, TOKEND_SOCKET: '/a.sock' }, '/a.sock', ['--socket', '']],
  ];

  it.each(rows)('%s', (_why, env, expected, args = []) => {
    const node = nodeSocket(env, args, cwd);
    const sh = shSocket(env, args, cwd);
    const c = probe ? cSocket(probe, env, args, cwd) : undefined;
    if (expected === 'defer') {
      expect({ sh, c }).toEqual({ sh: 'defer', c: probe ? 'defer' : undefined });
      return;
    }
    const want = expected.replace('<cwd>', cwd);
    expect({ sh, node, c }).toEqual({ sh: want, node: want, c: probe ? want : undefined });
  });
});
