import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { renderServiceFiles, renderTemplate, runService, type ServiceIo } from '../src/client/service.js';
import { SD_LISTEN_FDS_START, inheritedListenFd } from '../src/daemon/socket-activation.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'activated-echo.mjs');
const DIST_ACTIVATION = path.join(ROOT, 'dist', 'daemon', 'socket-activation.js');
const NODE = process.execPath;
const linux = process.platform === 'linux';

const temps: string[] = [];
/** A temporary folder, removed after the file's tests. Short: socket paths max out at 108 bytes. */
function tempDir(prefix = 'tkds-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temps) fs.rmSync(dir, { recursive: true, force: true });
});

function which(cmd: string): string | undefined {
  const res = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return res.status === 0 ? res.stdout.trim() : undefined;
}

/** Captures what runService prints. */
function captureIo(env: NodeJS.ProcessEnv, extra: Partial<ServiceIo> = {}) {
  const out = { stdout: '', stderr: '' };
  const io: ServiceIo = {
    stdout: (s) => void (out.stdout += s),
    stderr: (s) => void (out.stderr += s),
    env,
    ...extra,
  };
  return { io, out };
}

// ------------------------------------------------------------------ systemd units

/**
 * `systemd-analyze verify` on a socket + service pair, as user units. It exits 0 on
 * problems it "ignores" (an unknown key, a bad value), printing them on stderr, so any
 * stderr output counts as a failure too. --user needs XDG_RUNTIME_DIR; --man=no skips
 * the check that Documentation= man pages exist.
 */
function verifyUnits(dir: string): { ok: boolean; output: string } {
  const runtime = fs.mkdtempSync(path.join(dir, 'rt-'));
  const res = spawnSync(
    'systemd-analyze',
    ['verify', '--user', '--man=no', path.join(dir, 'tokend.socket'), path.join(dir, 'tokend.service')],
    { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: dir, XDG_RUNTIME_DIR: runtime, LANG: 'C.UTF-8' } },
  );
  const output = `${res.stdout}${res.stderr}`.trim();
  return { ok: res.status === 0 && output === '', output: `exit ${res.status}: ${output}` };
}

function writeUnits(files: { name: string; contents: string }[]): string {
  const dir = tempDir();
  for (const f of files) fs.writeFileSync(path.join(dir, f.name), f.contents);
  return dir;
}

/** A stand-in bin/tokend: verify only needs ExecStart's first word (node) to exist. */
function fakeTokendBin(dir = tempDir()): string {
  const bin = path.join(dir, 'bin', 'tokend');
  fs.mkdirSync(path.dirname(bin), { recursive: true });
  fs.writeFileSync(bin, '#!/usr/bin/env node\n', { mode: 0o755 });
  return bin;
}

describe.skipIf(!linux)('systemd units', () => {
  const hasAnalyze = which('systemd-analyze') !== undefined;

  it('systemd-analyze is installed (Debian package systemd)', () => {
    expect(hasAnalyze, 'systemd-analyze is missing: apt-get install systemd').toBe(true);
  });

  it('renders with absolute paths and passes systemd-analyze verify --user', () => {
    const tokend = fakeTokendBin();
    const files = renderServiceFiles('linux', { node: NODE, tokend });
    const service = files.find((f) => f.name === 'tokend.service')!.contents;
    const socket = files.find((f) => f.name === 'tokend.socket')!.contents;
    expect(service).toContain(`\nExecStart=${NODE} ${tokend} daemon\n`);
    expect(service).not.toMatch(/@[A-Z_]+@/);
    expect(socket).toMatch(/^ListenStream=%t\/tokend\/tokend\.sock$/m);
    expect(socket).toMatch(/^SocketMode=0600$/m);
    expect(socket).toMatch(/^DirectoryMode=0700$/m);
    // LimitCORE=0: no core file of the daemon's memory (tokens, secrets, the master key).
    for (const line of [
      'UMask=0077',
      'NoNewPrivileges=yes',
      'PrivateTmp=yes',
      'Restart=on-failure',
      'ProtectSystem=strict',
      'LimitCORE=0',
    ]) {
      expect(service).toMatch(new RegExp(`^${line}$`, 'm'));
    }
    // V8's JIT needs W+X pages; this option would kill node at start.
    expect(service).not.toMatch(/^MemoryDenyWriteExecute=/m);
    expect(service).not.toMatch(/^PrivateNetwork=yes/m);

    const result = verifyUnits(writeUnits(files));
    expect(result.ok, result.output).toBe(true);
  });

  it('escapes paths with blanks, % and $ so systemd reads them back unchanged', () => {
    const dir = tempDir();
    const odd = path.join(dir, 'my node %i $HOME');
    fs.mkdirSync(odd);
    fs.symlinkSync(NODE, path.join(odd, 'node'));
    const tokend = fakeTokendBin(path.join(dir, 'a "quoted" $dir'));
    const files = renderServiceFiles('linux', { node: path.join(odd, 'node'), tokend });
    const service = files.find((f) => f.name === 'tokend.service')!.contents;
    // % is a specifier everywhere; $VAR is expanded in arguments only (see the round trip
    // under a real user manager below).
    expect(service).toContain(`ExecStart="${odd.replace(/%/g, '%%')}/node" `);
    expect(service).toContain(`/a \\"quoted\\" $$dir/bin/tokend" daemon`);
    const result = verifyUnits(writeUnits(files));
    expect(result.ok, result.output).toBe(true);
  });

  it('verify fails on a unit with an unknown key (the check can fail)', () => {
    const files = renderServiceFiles('linux', { node: NODE, tokend: fakeTokendBin() }).map((f) =>
      f.name === 'tokend.service' ? { ...f, contents: f.contents.replace('UMask=0077', 'UMaskk=0077') } : f,
    );
    const result = verifyUnits(writeUnits(files));
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/Unknown key/);
  });

  it('verify fails when ExecStart names a program that does not exist', () => {
    const files = renderServiceFiles('linux', { node: '/nonexistent/node', tokend: fakeTokendBin() });
    const result = verifyUnits(writeUnits(files));
    expect(result.ok).toBe(false);
    expect(result.output).toMatch(/not executable|No such file/);
  });

  it('verify fails on a bad SocketMode in the socket unit', () => {
    const files = renderServiceFiles('linux', { node: NODE, tokend: fakeTokendBin() }).map((f) =>
      f.name === 'tokend.socket' ? { ...f, contents: f.contents.replace('SocketMode=0600', 'SocketMode=rw-------') } : f,
    );
    expect(verifyUnits(writeUnits(files)).ok).toBe(false);
  });
});

describe('renderTemplate', () => {
  it('refuses relative paths and placeholders it has no value for', () => {
    expect(() => renderTemplate('ExecStart=@NODE@', { NODE: 'node' }, 'systemd')).toThrow(/absolute/);
    expect(() => renderTemplate('ExecStart=@NODE@ @OTHER@', { NODE: '/usr/bin/node' }, 'systemd')).toThrow(/@OTHER@/);
    // systemd: "Executable name contains special characters"
    expect(() => renderTemplate('ExecStart=@NODE@ x', { NODE: '/opt/"n"/node' }, 'systemd')).toThrow(/quotes or backslashes/);
    expect(renderTemplate('ExecStart=/bin/x @TOKEND@', { TOKEND: '/opt/"n"/t' }, 'systemd')).toBe('ExecStart=/bin/x "/opt/\\"n\\"/t"');
  });

  it('escapes XML in the plist', () => {
    expect(renderTemplate('<string>@NODE@</string>', { NODE: '/a&b/<c>' }, 'plist')).toBe('<string>/a&amp;b/&lt;c&gt;</string>');
  });
});

// ------------------------------------------------------------------ launchd plist

type PlistValue = string | number | boolean | PlistValue[] | { [key: string]: PlistValue };

/**
 * A strict reader for the XML plist subset launchd agents use (plutil is macOS-only):
 * the XML declaration, the Apple DOCTYPE, comments, <plist version="1.0"> with one value;
 * dict (unique keys, key/value pairs), array, string, integer, true, false. Anything
 * else, an unbalanced tag or an unknown entity throws.
 */
function parsePlist(xml: string): PlistValue {
  let rest = xml;
  const take = (re: RegExp): RegExpExecArray | null => {
    const m = re.exec(rest);
    if (m) rest = rest.slice(m[0].length);
    return m;
  };
  if (!take(/^<\?xml version="1\.0" encoding="UTF-8"\?>\s*/)) throw new Error('missing XML declaration');
  const skipMisc = () => {
    while (take(/^\s+/) || take(/^<!--((?!--)[\s\S])*-->/));
  };
  skipMisc();
  if (!take(/^<!DOCTYPE plist PUBLIC "-\/\/Apple\/\/DTD PLIST 1\.0\/\/EN" "http:\/\/www\.apple\.com\/DTDs\/PropertyList-1\.0\.dtd">/)) {
    throw new Error('missing plist DOCTYPE');
  }
  skipMisc();
  if (!take(/^<plist version="1\.0">/)) throw new Error('missing <plist version="1.0">');

  const text = (raw: string): string => {
    if (/[<]/.test(raw)) throw new Error(`markup inside text: ${raw}`);
    const map: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
    return raw.replace(/&([^;&]*)(;?)/g, (_m, e: string, semi: string) => {
      if (!semi || !(e in map)) throw new Error(`bad entity or bare & in: ${raw}`);
      return map[e];
    });
  };
  const value = (): PlistValue => {
    skipMisc();
    let m: RegExpExecArray | null;
    if (take(/^<true\/>/)) return true;
    if (take(/^<false\/>/)) return false;
    if ((m = take(/^<string>([^<]*)<\/string>/))) return text(m[1]);
    if ((m = take(/^<integer>(-?[0-9]+)<\/integer>/))) return Number(m[1]);
    if (take(/^<array>/)) {
      const items: PlistValue[] = [];
      for (skipMisc(); !take(/^<\/array>/); skipMisc()) items.push(value());
      return items;
    }
    if (take(/^<dict>/)) {
      const dict: Record<string, PlistValue> = {};
      for (skipMisc(); !take(/^<\/dict>/); skipMisc()) {
        const key = take(/^<key>([^<]*)<\/key>/);
        if (!key) throw new Error(`expected <key> at: ${rest.slice(0, 40)}`);
        const name = text(key[1]);
        if (name in dict) throw new Error(`duplicate key ${name}`);
        dict[name] = value();
      }
      return dict;
    }
    throw new Error(`unexpected markup at: ${rest.slice(0, 40)}`);
  };
  const root = value();
  skipMisc();
  if (!take(/^<\/plist>\s*$/)) throw new Error(`expected </plist> at the end, got: ${rest.slice(0, 40)}`);
  return root;
}

function lintPlist(file: string): void {
  const plutil = which('plutil');
  if (plutil) {
    const res = spawnSync(plutil, ['-lint', file], { encoding: 'utf8' });
    if (res.status !== 0) throw new Error(`plutil -lint: ${res.stdout}${res.stderr}`);
  }
  parsePlist(fs.readFileSync(file, 'utf8'));
}

describe('launchd plist', () => {
  const home = '/Users/someone';
  const logDir = `${home}/Library/Logs/tokend`;

  it('parses and has the keys launchd needs, with absolute paths', () => {
    const tokend = fakeTokendBin();
    const [file] = renderServiceFiles('darwin', { node: NODE, tokend, logDir });
    expect(file.name).toBe('com.tokend.daemon.plist');
    const plistFile = path.join(tempDir(), file.name);
    fs.writeFileSync(plistFile, file.contents);
    lintPlist(plistFile);

    const plist = parsePlist(file.contents) as Record<string, PlistValue>;
    expect(plist.Label).toBe('com.tokend.daemon');
    expect(plist.ProgramArguments).toEqual([NODE, tokend, 'daemon']);
    for (const arg of (plist.ProgramArguments as string[]).slice(0, 2)) expect(path.isAbsolute(arg)).toBe(true);
    expect(plist.RunAtLoad).toBe(true);
    expect(plist.KeepAlive).toEqual({ SuccessfulExit: false });
    expect(plist.Umask).toBe(0o077);
    // No core file of the daemon's memory (tokens, secrets, the master key): launchd sets both limits.
    expect(plist.SoftResourceLimits).toEqual({ Core: 0 });
    expect(plist.HardResourceLimits).toEqual({ Core: 0 });
    expect(plist.StandardErrorPath).toBe(`${logDir}/tokend.log`);
    expect(String(plist.StandardErrorPath).startsWith(`${home}/Library/Logs/tokend/`)).toBe(true);
  });

  it('the check rejects a broken plist', () => {
    const [file] = renderServiceFiles('darwin', { node: NODE, tokend: fakeTokendBin(), logDir });
    expect(() => parsePlist(file.contents.replace('</array>', ''))).toThrow();
    expect(() => parsePlist(file.contents.replace('<key>RunAtLoad</key>', '<key>Label</key>'))).toThrow(/duplicate/);
    expect(() => parsePlist(file.contents.replace('<true/>', '<true>'))).toThrow();
    expect(() => parsePlist(file.contents.replace('com.tokend.daemon</string>', 'a & b</string>'))).toThrow(/entity/);
    expect(() => parsePlist(file.contents.replace('com.tokend.daemon</string>', 'a &nbsp; b</string>'))).toThrow(/entity/);
  });
});

// ------------------------------------------------------------------ tokend service

describe('tokend service install --dry-run', () => {
  it('prints the systemd units with this node, this install and the socket path; writes nothing', async () => {
    const home = tempDir();
    const tokend = fakeTokendBin();
    const { io, out } = captureIo({ HOME: home, XDG_RUNTIME_DIR: '/run/user/4242', PATH: process.env.PATH }, { tokendBin: tokend });
    const code = await runService(['install', '--dry-run', '--platform', 'linux'], io);
    expect(code, out.stderr).toBe(0);
    const lines = out.stdout.split('\n');
    expect(lines).toContain(`# node:   ${NODE}`);
    expect(lines).toContain(`# tokend: ${tokend}`);
    expect(lines).toContain('# socket: /run/user/4242/tokend/tokend.sock');
    expect(lines).toContain(`# ---- ${home}/.config/systemd/user/tokend.socket`);
    expect(lines).toContain(`# ---- ${home}/.config/systemd/user/tokend.service`);
    expect(lines).toContain(`ExecStart=${NODE} ${tokend} daemon`);
    expect(lines).toContain('ListenStream=%t/tokend/tokend.sock');
    expect(lines).toContain('# would run: systemctl --user enable --now tokend.socket tokend.service');
    expect(fs.readdirSync(home)).toEqual([]);
  });

  it('respects XDG_CONFIG_HOME for the unit folder', async () => {
    const home = tempDir();
    const { io, out } = captureIo(
      { HOME: home, XDG_CONFIG_HOME: `${home}/cfg`, XDG_RUNTIME_DIR: '/run/user/1' },
      { tokendBin: fakeTokendBin() },
    );
    expect(await runService(['install', '--dry-run', '--platform', 'linux', '--json'], io)).toBe(0);
    const report = JSON.parse(out.stdout);
    expect(report.files.map((f: { path: string }) => f.path)).toEqual([
      `${home}/cfg/systemd/user/tokend.socket`,
      `${home}/cfg/systemd/user/tokend.service`,
    ]);
    expect(report).toMatchObject({ ok: true, dry_run: true, manager: 'systemd', node: NODE, socket: '/run/user/1/tokend/tokend.sock' });
  });

  it('prints the launchd plist with absolute paths, log folder and socket path', async () => {
    const home = tempDir();
    const tokend = fakeTokendBin();
    const { io, out } = captureIo({ HOME: home }, { tokendBin: tokend });
    const code = await runService(['install', '--dry-run', '--platform', 'darwin'], io);
    expect(code, out.stderr).toBe(0);
    const lines = out.stdout.split('\n').map((l) => l.trim());
    expect(lines).toContain(`# node:   ${NODE}`);
    expect(lines).toContain(`# tokend: ${tokend}`);
    expect(lines).toContain(`# socket: ${home}/Library/Application Support/tokend/run/tokend.sock`);
    expect(lines).toContain(`# ---- ${home}/Library/LaunchAgents/com.tokend.daemon.plist`);
    expect(lines).toContain(`<string>${NODE}</string>`);
    expect(lines).toContain(`<string>${tokend}</string>`);
    expect(lines).toContain(`<string>${home}/Library/Logs/tokend/tokend.log</string>`);
    expect(out.stdout).toMatch(/# would run: launchctl bootstrap gui\/\d+ .*com\.tokend\.daemon\.plist/);
    const plist = out.stdout.slice(out.stdout.indexOf('<?xml'), out.stdout.indexOf('</plist>') + '</plist>'.length);
    expect(parsePlist(plist)).toMatchObject({ Label: 'com.tokend.daemon', RunAtLoad: true, Umask: 63 });
    expect(fs.readdirSync(home)).toEqual([]);
  });

  it("does not warn about this install's bin/tokend (a sh / ES-module polyglot), but does about a plain sh script", async () => {
    const home = tempDir();
    const env = { HOME: home, XDG_RUNTIME_DIR: '/run/user/4242' };
    const real = captureIo(env, { tokendBin: path.join(ROOT, 'bin', 'tokend') });
    expect(await runService(['install', '--dry-run', '--platform', 'linux'], real.io)).toBe(0);
    expect(real.out.stderr).not.toContain('not a node script');

    const plain = path.join(tempDir(), 'tokend');
    fs.writeFileSync(plain, '#!/bin/sh\nexec tokend-real "$@"\n', { mode: 0o755 });
    const other = captureIo(env, { tokendBin: plain });
    expect(await runService(['install', '--dry-run', '--platform', 'linux'], other.io)).toBe(0);
    expect(other.out.stderr).toContain(`warning: ${plain} starts with "#!/bin/sh", not a node script`);
  });

  it('--help, and bad usage exits 2', async () => {
    const help = captureIo({});
    expect(await runService(['--help'], help.io)).toBe(0);
    expect(help.out.stdout).toMatch(/usage: tokend service install\|uninstall\|status/);
    for (const args of [[], ['start'], ['install', '--bogus'], ['install', '--platform', 'plan9'], ['status', '--dry-run']]) {
      const { io, out } = captureIo({});
      expect(await runService(args, io), args.join(' ')).toBe(2);
      expect(out.stdout).toBe('');
    }
  });
});

/**
 * A fake `systemctl` on PATH: logs every call, and answers like a user manager whose
 * state (enabled, active) lives in a folder; `down` makes show-environment fail like a
 * machine without a user manager.
 */
function fakeSystemctl(dir: string): { bin: string; calls: () => string[]; setDown: (down: boolean) => void } {
  const bin = path.join(dir, 'fakebin');
  fs.mkdirSync(bin, { recursive: true });
  const state = path.join(dir, 'state');
  fs.mkdirSync(state, { recursive: true });
  const log = path.join(dir, 'calls.log');
  fs.writeFileSync(
    path.join(bin, 'systemctl'),
    `#!/bin/sh
S=${JSON.stringify(state)}
echo "$*" >> ${JSON.stringify(log)}
[ "$1" = --user ] || exit 9
shift
verb=$1; shift
case "$verb" in
  show-environment) [ -e "$S/down" ] && { echo "Failed to connect to bus: No medium found" >&2; exit 1; }; echo HOME=/x ;;
  daemon-reload) ;;
  enable|disable)
    now=; for a in "$@"; do case "$a" in --now) now=1;; -*) ;; *)
      if [ $verb = enable ]; then touch "$S/$a.enabled"; if [ -n "$now" ]; then touch "$S/$a.active"; fi
      else rm -f "$S/$a.enabled"; if [ -n "$now" ]; then rm -f "$S/$a.active"; fi; fi;; esac; done ;;
  restart|start) for a in "$@"; do touch "$S/$a.active"; done ;;
  is-enabled|is-active)
    rc=0; for a in "$@"; do case "$a" in -*) continue;; esac
      if [ $verb = is-enabled ]; then f="$S/$a.enabled"; y=enabled; n=disabled; else f="$S/$a.active"; y=active; n=inactive; fi
      if [ -e "$f" ]; then echo $y; else echo $n; rc=1; fi; done; exit $rc ;;
  *) echo "unknown verb $verb" >&2; exit 1 ;;
esac
`,
    { mode: 0o755 },
  );
  return {
    bin,
    calls: () => (fs.existsSync(log) ? fs.readFileSync(log, 'utf8').trim().split('\n').filter(Boolean) : []),
    setDown: (down) => (down ? fs.writeFileSync(path.join(state, 'down'), '') : fs.rmSync(path.join(state, 'down'), { force: true })),
  };
}

describe.skipIf(process.platform === 'win32')('tokend service install / status / uninstall (fake systemctl)', () => {
  function setup() {
    const dir = tempDir();
    const home = path.join(dir, 'home');
    fs.mkdirSync(home);
    const fake = fakeSystemctl(dir);
    const tokend = fakeTokendBin(dir);
    const env = { HOME: home, XDG_RUNTIME_DIR: path.join(dir, 'rt'), PATH: `${fake.bin}:${process.env.PATH}` };
    const call = async (...args: string[]) => {
      const { io, out } = captureIo(env, { tokendBin: tokend, platform: 'linux' });
      const code = await runService(args, io);
      return { code, ...out };
    };
    return { home, fake, tokend, call, unitDir: path.join(home, '.config', 'systemd', 'user') };
  }
  const mutating = (calls: string[]) => calls.filter((c) => !/show-environment|is-enabled|is-active/.test(c));

  it('installs, then a second install with identical files says "already installed" and changes nothing', async () => {
    const { home, fake, call, unitDir, tokend } = setup();
    const first = await call('install');
    expect(first.code, first.stderr).toBe(0);
    expect(mutating(fake.calls())).toEqual(['--user daemon-reload', '--user enable --now tokend.socket tokend.service']);
    expect(fs.readFileSync(path.join(unitDir, 'tokend.service'), 'utf8')).toContain(`ExecStart=${NODE} ${tokend} daemon`);
    expect(first.stderr).toMatch(/wrote .*tokend\.socket/);
    expect(first.stderr).toMatch(/ran: systemctl --user enable --now tokend\.socket tokend\.service/);
    // The sandbox (ProtectSystem=strict) cannot create the daemon's folders: install does, 0700.
    for (const d of [path.join(home, '.config', 'tokend'), path.join(home, '.local', 'share', 'tokend')]) {
      expect(fs.statSync(d).mode & 0o777).toBe(0o700);
    }

    const mtimes = fs.readdirSync(unitDir).map((f) => fs.statSync(path.join(unitDir, f)).mtimeMs);
    const before = fake.calls().length;
    const second = await call('install', '--json');
    expect(second.code, second.stderr).toBe(0);
    expect(second.stderr).toMatch(/already installed/);
    expect(JSON.parse(second.stdout)).toMatchObject({ ok: true, result: 'already_installed', commands: [] });
    expect(mutating(fake.calls().slice(before))).toEqual([]);
    expect(fs.readdirSync(unitDir).map((f) => fs.statSync(path.join(unitDir, f)).mtimeMs)).toEqual(mtimes);
  });

  it('rewrites a changed unit and restarts the service', async () => {
    const { fake, call, unitDir } = setup();
    expect((await call('install')).code).toBe(0);
    fs.appendFileSync(path.join(unitDir, 'tokend.service'), '# edited by hand\n');
    const before = fake.calls().length;
    const res = await call('install');
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toMatch(/updated .*tokend\.service/);
    expect(mutating(fake.calls().slice(before))).toEqual([
      '--user daemon-reload',
      '--user enable tokend.socket tokend.service',
      '--user restart tokend.socket tokend.service',
    ]);
    expect(fs.readFileSync(path.join(unitDir, 'tokend.service'), 'utf8')).not.toContain('edited by hand');
  });

  it('status reports files and unit states; uninstall disables, stops and removes', async () => {
    const { fake, call, unitDir } = setup();
    expect((await call('install')).code).toBe(0);
    const status = await call('status', '--json');
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({
      installed: true,
      up_to_date: true,
      manager_available: true,
      units: { 'tokend.socket': { enabled: 'enabled', active: 'active' }, 'tokend.service': { enabled: 'enabled', active: 'active' } },
    });
    const text = await call('status');
    expect(text.stdout).toMatch(/tokend\.socket: enabled, active/);

    const before = fake.calls().length;
    const un = await call('uninstall');
    expect(un.code, un.stderr).toBe(0);
    expect(mutating(fake.calls().slice(before))).toEqual(['--user disable --now tokend.socket tokend.service', '--user daemon-reload']);
    expect(fs.readdirSync(unitDir)).toEqual([]);
    const again = await call('uninstall');
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/not installed/);
  });

  it('without a systemd user manager: says so, shows how to run tokend daemon by hand, writes nothing, exit 1', async () => {
    const { home, fake, call, tokend } = setup();
    fake.setDown(true);
    const res = await call('install');
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/no systemd user manager here/);
    expect(res.stderr).toContain(`${NODE} ${tokend} daemon`);
    expect(fs.readdirSync(home)).toEqual([]);
    expect(mutating(fake.calls())).toEqual([]);
  });

  it('on a platform with neither systemd nor launchd: exit 1 with the by-hand command', async () => {
    const { io, out } = captureIo({ HOME: tempDir() }, { platform: 'freebsd', tokendBin: '/opt/tokend/bin/tokend' });
    expect(await runService(['install'], io)).toBe(1);
    expect(out.stderr).toMatch(/no service files for freebsd/);
    expect(out.stderr).toContain(`${NODE} /opt/tokend/bin/tokend daemon`);
  });
});

// ------------------------------------------------------------------ socket activation

describe('inheritedListenFd (sd_listen_fds)', () => {
  it('returns fd 3 when LISTEN_PID is ours and LISTEN_FDS=1, and clears the variables', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '1234', LISTEN_FDS: '1', LISTEN_FDNAMES: 'tokend.socket', KEEP: 'x' };
    expect(inheritedListenFd(env, 1234)).toBe(SD_LISTEN_FDS_START);
    expect(env).toEqual({ KEEP: 'x' });
  });

  it('ignores variables meant for another process, but still clears them', () => {
    const env: NodeJS.ProcessEnv = { LISTEN_PID: '999', LISTEN_FDS: '1' };
    expect(inheritedListenFd(env, 1234)).toBeUndefined();
    expect(env).toEqual({});
  });

  it('returns undefined without socket activation or with LISTEN_FDS=0', () => {
    expect(inheritedListenFd({}, 1)).toBeUndefined();
    expect(inheritedListenFd({ LISTEN_PID: '1', LISTEN_FDS: '0' }, 1)).toBeUndefined();
  });

  it('refuses more than one socket and malformed values', () => {
    expect(() => inheritedListenFd({ LISTEN_PID: '7', LISTEN_FDS: '2' }, 7)).toThrow(/exactly one/);
    expect(() => inheritedListenFd({ LISTEN_PID: '7', LISTEN_FDS: 'one' }, 7)).toThrow(/LISTEN_FDS/);
    expect(() => inheritedListenFd({ LISTEN_PID: '7x', LISTEN_FDS: '1' }, 7)).toThrow(/LISTEN_PID/);
  });
});

function request(socketPath: string, urlPath: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: urlPath, method: 'GET', timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

async function waitFor<T>(what: string, probe: () => T | undefined | false, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

describe.skipIf(!linux)('socket activation with systemd-socket-activate', () => {
  let child: ChildProcess | undefined;
  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await exited(child);
    }
    child = undefined;
  });

  it('starts the daemon on the first connection, on the inherited socket, and answers it', async () => {
    expect(which('systemd-socket-activate'), 'systemd-socket-activate is missing: apt-get install systemd').toBeDefined();
    expect(fs.existsSync(DIST_ACTIVATION), `${DIST_ACTIVATION} is missing: run npx tsc -p tsconfig.json first`).toBe(true);
    const dir = tempDir();
    const runDir = path.join(dir, 'tokend');
    fs.mkdirSync(runDir, { mode: 0o700 });
    const socket = path.join(runDir, 'tokend.sock');
    const marker = path.join(dir, 'started.json');

    // Without -a/--accept it binds, waits for the first connection, then execs the
    // command in its own process with LISTEN_PID/LISTEN_FDS=1 and the socket on fd 3.
    child = spawn('systemd-socket-activate', ['-l', socket, '-E', `MARKER=${marker}`, '--', NODE, FIXTURE, 'daemon'], {
      env: { PATH: process.env.PATH, HOME: dir },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    await waitFor('the socket', () => fs.existsSync(socket));
    expect(fs.statSync(socket).isSocket()).toBe(true);
    // systemd-socket-activate has no --socket-mode (v252 binds 0644 whatever the umask):
    // the socket is private through its 0700 folder here, like the unit's DirectoryMode.
    // SocketMode=0600 itself is checked under a real user manager below.
    expect(fs.statSync(runDir).mode & 0o777).toBe(0o700);

    await new Promise((r) => setTimeout(r, 500));
    expect(fs.existsSync(marker), 'the daemon must not start before a client connects').toBe(false);

    const connectedAt = Date.now();
    const res = await request(socket, '/v1/health');
    expect(res.status, stderr).toBe(200);
    expect(res.body).toMatchObject({
      status: 'ok',
      pid: child.pid,
      listen_pid_was: String(child.pid),
      fd: 3,
      fd_is_socket: true,
      listen_env_left: [],
      argv: ['daemon'],
    });
    const started = JSON.parse(fs.readFileSync(marker, 'utf8'));
    expect(started.pid).toBe(child.pid);
    expect(started.started_at).toBeGreaterThanOrEqual(connectedAt - 50);

    // The same process keeps serving.
    expect((await request(socket, '/v1/health')).body.pid).toBe(child.pid);
  });

  it('the real tokend daemon serves on the inherited socket, and leaves it in place on SIGTERM', async () => {
    const bin = path.join(ROOT, 'bin', 'tokend');
    const main = path.join(ROOT, 'dist', 'daemon', 'main.js');
    expect(fs.existsSync(bin) && fs.existsSync(main), `${bin} or ${main} is missing: run npx tsc -p tsconfig.json first`).toBe(true);
    const home = tempDir();
    const runDir = path.join(home, 'sock');
    fs.mkdirSync(runDir, { mode: 0o700 });
    const socket = path.join(runDir, 'tokend.sock');
    child = spawn(
      'systemd-socket-activate',
      ['-l', socket, '-E', `TOKEND_HOME=${home}`, '-E', 'TOKEND_NO_AUTOSTART=1', '--', NODE, bin, 'daemon'],
      { env: { PATH: process.env.PATH, HOME: home }, stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    await waitFor('the socket', () => fs.existsSync(socket));
    await new Promise((r) => setTimeout(r, 300));
    expect(stderr, 'the daemon must not start before a client connects').not.toMatch(/tokend started/);

    const res = await request(socket, '/v1/health');
    expect(res.status, stderr).toBe(200);
    expect(res.body).toMatchObject({ status: 'ok', pid: child.pid });
    expect(stderr).toMatch(/"socket":"fd 3 \(socket activation\)"/);

    child.kill('SIGTERM');
    await exited(child);
    expect(child.exitCode, stderr).toBe(0);
    // The socket belongs to whoever passed it (systemd); the daemon must not unlink it.
    expect(fs.existsSync(socket)).toBe(true);
  });
});

// ------------------------------------------------------------------ a real user manager

/**
 * Runs `systemd --user` for real, to check what only systemd itself can: SocketMode /
 * DirectoryMode, on-demand start, ExecStart, and that the hardening leaves the daemon
 * able to write its folders and reach the network. Needs root (a private mount
 * namespace where /run/systemd/system exists, so the manager believes it was booted
 * with systemd) and a writable cgroup tree to delegate; skipped where that is missing.
 * Root also means the sandbox options really apply (a user manager without user
 * namespaces ignores them).
 */
interface UserManager {
  env: NodeJS.ProcessEnv;
  base: string;
  home: string;
  runtime: string;
  stop: () => Promise<void>;
}

async function startUserManager(): Promise<UserManager | string> {
  if (!linux) return 'not Linux';
  if (process.getuid?.() !== 0) return 'needs root';
  const systemd = ['/lib/systemd/systemd', '/usr/lib/systemd/systemd'].find((p) => fs.existsSync(p));
  if (!systemd) return 'no systemd binary';
  if (!which('unshare') || !which('systemctl')) return 'no unshare or systemctl';
  if (!fs.existsSync('/run/systemd')) return 'no /run/systemd to mount over';
  const v2 = fs.existsSync('/sys/fs/cgroup/cgroup.controllers') ? '/sys/fs/cgroup' : '/sys/fs/cgroup/unified';
  const cgroups = [path.join(v2, `tokend-test-${process.pid}`)];
  if (v2 !== '/sys/fs/cgroup' && fs.existsSync('/sys/fs/cgroup/systemd/cgroup.procs')) {
    cgroups.push(`/sys/fs/cgroup/systemd/tokend-test-${process.pid}`);
  }
  try {
    for (const cg of cgroups) fs.mkdirSync(cg);
  } catch (err) {
    return `cannot make a cgroup: ${(err as Error).message}`;
  }
  const removeCgroups = () => {
    for (const cg of cgroups) {
      const dirs: string[] = [];
      const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
        dirs.push(d);
      };
      try {
        walk(cg);
        for (const d of dirs) fs.rmdirSync(d);
      } catch {
        // best effort: a cgroup with a process left cannot go
      }
    }
  };

  // Not under /tmp: PrivateTmp=yes hides /tmp from the service, and a ReadWritePaths=
  // folder it cannot see fails the start (226/NAMESPACE). Real ones live in /home and
  // /run/user/$UID.
  let base: string;
  try {
    base = fs.mkdtempSync('/run/tkum-');
  } catch (err) {
    removeCgroups();
    return `cannot make a folder under /run: ${(err as Error).message}`;
  }
  temps.push(base);
  const home = path.join(base, 'home');
  const runtime = path.join(base, 'rt');
  fs.mkdirSync(home);
  fs.mkdirSync(runtime, { mode: 0o700 });
  // A small environment: the manager passes it to services, and vitest's (NODE_OPTIONS…)
  // does not belong in a daemon.
  const env = {
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: home,
    XDG_RUNTIME_DIR: runtime,
    LANG: 'C.UTF-8',
  };
  const script = [
    'set -e',
    'mount -t tmpfs tmpfs /run/systemd',
    'mkdir /run/systemd/system',
    ...cgroups.map((cg) => `echo $$ > ${cg}/cgroup.procs`),
    // Core files on for the manager, as on a developer's machine: only LimitCORE=0 keeps them off.
    'ulimit -c unlimited',
    `exec ${systemd} --user --log-target=console --log-level=notice`,
  ].join('\n');
  const manager = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  manager.stdout!.on('data', (d) => (log += d));
  manager.stderr!.on('data', (d) => (log += d));
  const stop = async () => {
    // cgroup.kill (cgroup v2) ends the manager and every service it started.
    try {
      fs.writeFileSync(path.join(cgroups[0], 'cgroup.kill'), '1');
    } catch {
      manager.kill('SIGKILL');
    }
    await exited(manager);
    await new Promise((r) => setTimeout(r, 200));
    removeCgroups();
  };
  try {
    await waitFor(
      'systemd --user',
      () => manager.exitCode === null && spawnSync('systemctl', ['--user', 'show-environment'], { env }).status === 0,
      10_000,
    );
  } catch {
    await stop();
    return `systemd --user did not come up: ${log.trim().split('\n').slice(-3).join(' / ')}`;
  }
  return { env, base, home, runtime, stop };
}

describe.skipIf(!linux)('under a real systemd user manager', () => {
  let um: UserManager | string = 'not started';
  let tcp: net.Server;
  let tcpPort = 0;
  beforeAll(async () => {
    um = await startUserManager();
    tcp = net.createServer((s) => s.end());
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', () => r()));
    tcpPort = (tcp.address() as net.AddressInfo).port;
  });
  afterAll(async () => {
    tcp?.close();
    if (typeof um !== 'string') await um.stop();
  });

  it('install starts the socket (0600 in a 0700 folder), the daemon starts on demand, status and uninstall work', async (ctx) => {
    if (typeof um === 'string') return ctx.skip(`no user manager: ${um}`);
    expect(fs.existsSync(DIST_ACTIVATION), `${DIST_ACTIVATION} is missing: run npx tsc -p tsconfig.json first`).toBe(true);
    const { env, home, runtime } = um;
    // PrivateTmp=yes hides /tmp from the service: a checkout under /tmp (a CI clone, say)
    // gives the service a copy of the stand-in daemon in a place it can see.
    let fixture = FIXTURE;
    if (ROOT.startsWith(`${os.tmpdir()}/`) || ROOT.startsWith('/tmp/')) {
      const pkg = path.join(path.dirname(home), 'pkg');
      fs.mkdirSync(path.join(pkg, 'test', 'fixtures'), { recursive: true });
      fs.mkdirSync(path.join(pkg, 'dist', 'daemon'), { recursive: true });
      fs.writeFileSync(path.join(pkg, 'package.json'), '{"type":"module"}\n');
      fs.copyFileSync(DIST_ACTIVATION, path.join(pkg, 'dist', 'daemon', 'socket-activation.js'));
      fixture = path.join(pkg, 'test', 'fixtures', 'activated-echo.mjs');
      fs.copyFileSync(FIXTURE, fixture);
    }
    const svc = async (...args: string[]) => {
      const { io, out } = captureIo(env, { platform: 'linux', tokendBin: fixture });
      return { code: await runService(args, io), ...out };
    };
    const systemctl = (...args: string[]) => spawnSync('systemctl', ['--user', ...args], { env, encoding: 'utf8' });

    const installed = await svc('install');
    expect(installed.code, installed.stderr).toBe(0);

    const socket = path.join(runtime, 'tokend', 'tokend.sock');
    expect(fs.statSync(socket).isSocket()).toBe(true);
    expect(fs.statSync(socket).mode & 0o777).toBe(0o600); // SocketMode=0600
    expect(fs.statSync(path.dirname(socket)).mode & 0o777).toBe(0o700); // DirectoryMode=0700

    // enable --now started the service too (it is WantedBy=default.target); stop it and
    // check that the first connection brings it back.
    const marker = path.join(home, '.local', 'share', 'tokend', 'activated-echo.json');
    await waitFor('the service to start', () => fs.existsSync(marker));
    expect(systemctl('stop', 'tokend.service').status).toBe(0);
    fs.rmSync(marker);
    expect(systemctl('is-active', 'tokend.socket').stdout.trim()).toBe('active');
    expect(systemctl('is-active', 'tokend.service').stdout.trim()).toBe('inactive');
    await new Promise((r) => setTimeout(r, 300));
    expect(fs.existsSync(marker)).toBe(false);

    const health = await request(socket, '/v1/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({
      status: 'ok',
      fd: 3,
      fd_is_socket: true,
      listen_env_left: [],
      umask: '0077',
      argv: ['daemon'],
      core_limit: '0',
    });
    expect(JSON.parse(fs.readFileSync(marker, 'utf8')).pid).toBe(health.body.pid);
    expect(systemctl('show', '-p', 'MainPID', '--value', 'tokend.service').stdout.trim()).toBe(String(health.body.pid));

    // The hardening leaves what tokend needs and takes away the rest.
    const probe = await request(socket, `/probe?port=${tcpPort}`);
    expect(probe.body).toMatchObject({
      write_data_dir: 'ok',
      write_config_dir: 'ok',
      write_home: 'EROFS', // ProtectSystem=strict: read-only outside ReadWritePaths=
      write_tmp: 'ok', // PrivateTmp=yes
      tcp_connect: 'ok',
    });
    expect(probe.body.dns_lookup).toMatch(/^(127\.0\.0\.1|::1)$/);

    const status = await svc('status', '--json');
    expect(JSON.parse(status.stdout)).toMatchObject({
      installed: true,
      up_to_date: true,
      running: true,
      units: { 'tokend.socket': { enabled: 'enabled', active: 'active' } },
    });

    const again = await svc('install');
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/already installed/);

    const removed = await svc('uninstall');
    expect(removed.code, removed.stderr).toBe(0);
    expect(fs.existsSync(socket)).toBe(false); // RemoveOnStop=yes
    expect(systemctl('is-active', 'tokend.socket').stdout.trim()).toBe('inactive');
    expect(fs.readdirSync(path.join(home, '.config', 'systemd', 'user')).filter((f) => f.startsWith('tokend'))).toEqual([]);
  });

  it('reads rendered paths with blanks, %, $ and quotes back unchanged', async (ctx) => {
    if (typeof um === 'string') return ctx.skip(`no user manager: ${um}`);
    const { env, base, home } = um;
    const odd = fs.mkdtempSync(path.join(base, 'odd-'));
    // The program path may not hold quotes or backslashes (systemd refuses), arguments
    // may (but node cannot load a module whose path has a backslash).
    const nodeDir = path.join(odd, 'a b %i $HOME');
    const weird = path.join(odd, `it's "q" %n $1`);
    fs.mkdirSync(nodeDir);
    fs.mkdirSync(weird);
    fs.symlinkSync(NODE, path.join(nodeDir, 'node'));
    // biome-ignore lint/suspicious/noTemplateCurlyInString: a literal ${HOME} in a file name, which no shell may expand
    const script = path.join(weird, 'argv ${HOME}.mjs');
    fs.writeFileSync(
      script,
      "import fs from 'node:fs'; import path from 'node:path';\n" +
        "fs.writeFileSync(path.join(path.dirname(process.argv[1]), 'argv.json'), JSON.stringify([process.argv0, ...process.argv.slice(1)]));\n",
    );
    const unit = renderTemplate(
      '[Service]\nType=oneshot\nExecStart=@NODE@ @TOKEND@ daemon\n',
      { NODE: path.join(nodeDir, 'node'), TOKEND: script },
      'systemd',
    );
    const unitDir = path.join(home, '.config', 'systemd', 'user');
    fs.mkdirSync(unitDir, { recursive: true });
    fs.writeFileSync(path.join(unitDir, 'odd-paths.service'), unit);
    const systemctl = (...args: string[]) => spawnSync('systemctl', ['--user', ...args], { env, encoding: 'utf8' });
    expect(systemctl('daemon-reload').status).toBe(0);
    const started = systemctl('start', 'odd-paths.service');
    expect(started.status, started.stderr).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(weird, 'argv.json'), 'utf8'))).toEqual([path.join(nodeDir, 'node'), script, 'daemon']);
    fs.rmSync(path.join(unitDir, 'odd-paths.service'));
    systemctl('daemon-reload');
  });
});
