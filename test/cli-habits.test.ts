/**
 * The habits people expect of a command line, through the real CLI: shell completion run
 * by the real shell's completion machinery (bash here; zsh and fish parsed by their own
 * parser where installed), account names from a running daemon and quietly none without
 * one; the man page rendered by man/groff; `--json` on the commands that print data; and
 * `tokend login`'s device flow showing its QR code on a terminal stderr and offering to
 * open its page in $BROWSER, as gh does (a pseudo-terminal from script(1) plays the person).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, TOKEND_BIN, runCli, tempHome } from './support/daemon.js';
import { settled, spawnCli, startDaemon, waitFor } from './support/fake-as.js';
import { daemonForSuite, useDaemon, useIdp } from './support/fixtures.js';
import { run } from './support/run.js';

const BIN_DIR = path.join(ROOT, 'bin');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

describe('tokend completion', () => {
  const { d, t: h } = useDaemon();
  let idle: ReturnType<typeof tempHome>;
  /** tokend on PATH, as a shell finds it, with this daemon's home. */
  const shellEnv = (home: { env: NodeJS.ProcessEnv }): NodeJS.ProcessEnv => ({
    ...home.env,
    PATH: `${BIN_DIR}${path.delimiter}${process.env.PATH}`,
  });

  beforeAll(async () => {
    for (const name of ['work', 'play.2']) {
      const r = await d.cli(['add', name, '--issuer', 'https://idp.example.test', '--client-id', 'c', '--no-check']);
      expect(r.code, r.stderr).toBe(0);
    }
    idle = tempHome();
  });
  afterAll(() => idle?.cleanup());

  /** Run bash's completion for `line` (the cursor at its end) through the function `complete -p tokend` names. */
  async function bashComplete(line: string, env: NodeJS.ProcessEnv): Promise<{ words: string[]; stderr: string }> {
    const script = `
      source <(tokend completion bash) || exit 9
      spec=$(complete -p tokend) || exit 8
      fn=\${spec#*-F }; fn=\${fn%% *}
      COMP_LINE=$1; COMP_POINT=\${#COMP_LINE}
      read -r -a COMP_WORDS <<< "$COMP_LINE"
      [[ $COMP_LINE == *' ' ]] && COMP_WORDS+=('')
      COMP_CWORD=$(( \${#COMP_WORDS[@]} - 1 ))
      "$fn" tokend "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
      printf '%s\\n' "\${COMPREPLY[@]}"`;
    const r = await run('bash', ['-c', script, 'complete', line], { env });
    expect(r.code, r.stderr).toBe(0);
    return { words: r.stdout.split('\n').filter(Boolean), stderr: r.stderr };
  }

  it('bash: commands, the words after a command, options, option values, `help COMMAND`', async () => {
    const env = shellEnv(h);
    expect((await bashComplete('tokend lo', env)).words).toEqual(['login', 'logout']);
    expect((await bashComplete('tokend com', env)).words).toEqual(['completion']);
    expect((await bashComplete('tokend setup ', env)).words).toEqual(['git', 'cli']);
    expect((await bashComplete('tokend setup git --', env)).words).toEqual([
      '--dry-run',
      '--global',
      '--help',
      '--json',
      '--native',
      '--undo',
    ]);
    expect((await bashComplete('tokend service ', env)).words).toEqual(['install', 'uninstall', 'status']);
    expect((await bashComplete('tokend completion ', env)).words).toEqual(['bash', 'zsh', 'fish']);
    expect((await bashComplete('tokend git-credential ', env)).words).toEqual(['get', 'store', 'erase']);
    expect((await bashComplete('tokend login work --no', env)).words).toEqual(['--no-browser', '--no-wait']);
    expect((await bashComplete('tokend login work --flow ', env)).words).toEqual(['device', 'browser']);
    expect((await bashComplete('tokend add x --flow c', env)).words).toEqual(['client-credentials']);
    expect((await bashComplete('tokend logout work --', env)).words).toEqual(['--help', '--json']);
    expect((await bashComplete('tokend help se', env)).words).toEqual(['set', 'setup', 'service']);
  });

  it('bash: account names from the running daemon, only where a command takes one, and never for add', async () => {
    const env = shellEnv(h);
    expect((await bashComplete('tokend token ', env)).words).toEqual(['work', 'play.2']);
    expect((await bashComplete('tokend status p', env)).words).toEqual(['play.2']);
    expect((await bashComplete('tokend login --no-wait w', env)).words).toEqual(['work']);
    expect((await bashComplete('tokend add ', env)).words).toEqual([]);
    expect((await bashComplete('tokend list ', env)).words).toEqual([]);
    // Only the first argument is an account: after it, nothing.
    expect((await bashComplete('tokend exec work ', env)).words).toEqual([]);
  });

  it('bash: no daemon running: quietly no account names, and completing never starts one', async () => {
    const env = { ...shellEnv(idle) };
    delete env.TOKEND_NO_AUTOSTART; // as in a user's shell: completion itself must not start the daemon
    const r = await bashComplete('tokend token ', env);
    expect(r).toEqual({ words: [], stderr: '' });
    expect(fs.existsSync(path.join(idle.home, 'run', 'tokend.sock'))).toBe(false);
    expect(fs.existsSync(path.join(idle.home, 'data', 'tokend.log'))).toBe(false);
  });

  it('zsh: a #compdef script that registers itself and completes the same commands (parsed by zsh where installed)', async () => {
    const r = await runCli(['completion', 'zsh'], { env: h.env });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout.split('\n')[0]).toBe('#compdef tokend');
    expect(r.stdout).toContain('compdef _tokend tokend');
    expect(r.stdout).toMatch(/^ {4}'login:sign in at the provider \(device code or browser\)'$/m);
    expect(r.stdout).toMatch(/^ {4}'setup:make git ask tokend first'$/m);
    expect(r.stdout).toContain("subwords=('install' 'uninstall' 'status')");
    expect(r.stdout).toContain("compadd -- 'device' 'browser'");
    expect(r.stdout).toContain('TOKEND_NO_AUTOSTART=1 command tokend list --json 2>/dev/null');
    if (has('zsh')) {
      const file = path.join(h.home, '_tokend');
      fs.writeFileSync(file, r.stdout);
      expect(await run('zsh', ['-n', file], { env: h.env })).toMatchObject({ code: 0, stderr: '' });
    }
  });

  it('fish: complete -c lines for commands, options, words and accounts (parsed, and queried, by fish where installed)', async () => {
    const r = await runCli(['completion', 'fish'], { env: h.env });
    expect(r).toMatchObject({ code: 0, stderr: '' });
    expect(r.stdout).toContain("complete -c tokend -n 'not __fish_seen_subcommand_from");
    expect(r.stdout).toMatch(/-a 'login' -d 'sign in at the provider \(device code or browser\)'$/m);
    expect(r.stdout).toContain("complete -c tokend -n '__fish_seen_subcommand_from login' -l flow -x -a 'device browser'");
    expect(r.stdout).toContain(
      "complete -c tokend -n '__fish_seen_subcommand_from token; and __tokend_first_arg' -a '(__tokend_accounts)'",
    );
    if (has('fish')) {
      const file = path.join(h.home, 'tokend.fish');
      fs.writeFileSync(file, r.stdout);
      expect(await run('fish', ['-n', file], { env: h.env })).toMatchObject({ code: 0, stderr: '' });
      const q = await run('fish', ['--no-config', '-c', `source ${file}; complete -C'tokend token '`], { env: shellEnv(h) });
      expect(q.stdout.split('\n').filter(Boolean).sort()).toEqual(['play.2', 'work']);
    }
  });

  it('bad usage: no shell, or one it does not know: exit 2, one line', async () => {
    expect(await runCli(['completion'], { env: h.env })).toMatchObject({
      code: 2,
      stdout: '',
      stderr: 'tokend completion: say which shell: bash, zsh or fish (see `tokend completion --help`)\n',
    });
    expect(await runCli(['completion', 'tcsh'], { env: h.env })).toMatchObject({ code: 2, stdout: '' });
  });
});

describe('usage mistakes, one bounded line and exit 2: doctor and the credential helpers', () => {
  let home: ReturnType<typeof tempHome>;
  beforeAll(() => {
    home = tempHome();
  });
  afterAll(() => home?.cleanup());

  it("tokend doctor: an unknown option or an argument is one line naming it, never the value, exit 2 (not parseArgs' paragraph)", async () => {
    expect(await runCli(['doctor', '--bogus=s3cret-value'], { env: home.env })).toMatchObject({
      code: 2,
      stdout: '',
      stderr: 'tokend doctor: unknown option "--bogus" (see `tokend doctor --help`)\n',
    });
    expect(await runCli(['doctor', '--json=yes'], { env: home.env })).toMatchObject({
      code: 2,
      stderr: 'tokend doctor: --json takes no value (see `tokend doctor --help`)\n',
    });
    expect(await runCli(['doctor', 'extra'], { env: home.env })).toMatchObject({
      code: 2,
      stdout: '',
      stderr: 'tokend doctor: takes no arguments, only options (see `tokend doctor --help`)\n',
    });
  });

  it('docker and Bazel helpers: no action, or one no tool sends, is one line and exit 2, the word never echoed; git still ignores it', async () => {
    const docker = 'docker-credential-tokend: expects one action, get|store|erase|list|version (see `docker-credential-tokend --help`)\n';
    const bazel = 'bazel-credential-tokend: expects one action, get (see `bazel-credential-tokend --help`)\n';
    for (const args of [[], ['S3cret!word']]) {
      expect(await run(path.join(BIN_DIR, 'docker-credential-tokend'), args, { env: home.env }), `docker ${args}`).toEqual({
        code: 2,
        stdout: '',
        stderr: docker,
      });
      expect(await run(path.join(BIN_DIR, 'bazel-credential-tokend'), args, { env: home.env }), `bazel ${args}`).toEqual({
        code: 2,
        stdout: '',
        stderr: bazel,
      });
      expect(await runCli(['docker-credential', ...args], { env: home.env }), `tokend docker-credential ${args}`).toMatchObject({
        code: 2,
        stdout: '',
        stderr: docker,
      });
    }
    // gitcredentials(7), CUSTOM HELPERS: an action the helper does not know is silently ignored.
    expect(await run(path.join(BIN_DIR, 'git-credential-tokend'), ['S3cret!word'], { env: home.env })).toEqual({
      code: 0,
      stdout: '',
      stderr: '',
    });
  });
});

describe('the man page', () => {
  const page = path.join(ROOT, 'man', 'tokend.1');

  it('is built from the help texts, is what package.json installs, and renders without a warning', async () => {
    expect(JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).man).toEqual(['./man/tokend.1']);
    const roff = fs.readFileSync(page, 'utf8');
    expect(roff).toMatch(/^\.TH TOKEND 1 /);
    for (const s of ['NAME', 'SYNOPSIS', 'DESCRIPTION', 'COMMANDS', '"EXIT STATUS"', 'ENVIRONMENT', 'FILES', '"SEE ALSO"'])
      expect(roff).toContain(`\n.SH ${s}\n`);
    const overview = (await runCli(['--help'], { env: process.env })).stdout;
    const commands = [...overview.matchAll(/^ {2}([a-z][a-z0-9-]*)\b/gm)].map((m) => m[1]!);
    for (const c of new Set(commands)) expect(roff).toContain(`\n.SS "tokend ${c.replace(/-/g, '\\-')}"\n`);
    expect(roff).toContain('\n.SS "tokend setup git"\n');

    // groff, with every warning on: none.
    if (has('groff')) {
      const g = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-z', page], { encoding: 'utf8' });
      expect([g.status, g.stderr]).toEqual([0, '']);
    }
    // What a person reads (man -l, or groff), with each command's help as it prints: options with plain hyphens.
    const shown = has('man')
      ? spawnSync('man', ['-l', page], {
          encoding: 'utf8',
          env: { ...process.env, MANWIDTH: '100', MANPAGER: 'cat', PAGER: 'cat', MAN_KEEP_FORMATTING: '' },
        }).stdout
      : has('groff')
        ? spawnSync('groff', ['-man', '-Tascii', '-P-cbou', page], { encoding: 'utf8' }).stdout
        : '';
    if (shown) {
      const plain = shown.replace(/.\x08/g, '');
      expect(plain).toContain('tokend - keeps OAuth tokens fresh and hands them to local programs');
      const loginHelp = (await runCli(['login', '--help'], { env: process.env })).stdout;
      expect(plain).toContain(loginHelp.split('\n')[0]); // usage: tokend login NAME [--flow device|browser] …
      expect(plain).toContain('--no-browser');
      expect(plain).toContain('usage: tokend completion bash|zsh|fish');
    }
  });
});

describe('--json on the commands that print data', () => {
  const suite = daemonForSuite();

  it('logout and remove: one JSON object on stdout, the message still on stderr', async () => {
    const d = suite.daemon;
    for (const name of ['a', 'b'])
      expect((await d.cli(['add', name, '--issuer', 'https://idp.example.test', '--client-id', 'c', '--no-check'])).code).toBe(0);
    const out = await d.cli(['logout', 'a', '--json']);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout)).toEqual({ account: 'a', revoked: false });
    expect(out.stderr).toBe('tokend: logged out of "a"\n');
    const rm = await d.cli(['remove', 'b', '--json']);
    expect(JSON.parse(rm.stdout)).toEqual({ account: 'b', revoked: false });
    expect(rm.stderr).toBe('tokend: removed "b"\n');
    expect((await d.cli(['status', 'b'])).code).toBe(1);
    // Without --json, stdout stays empty.
    expect((await d.cli(['logout', 'a'])).stdout).toBe('');
  });

  it('version and listen-key', async () => {
    const d = suite.daemon;
    const version = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version;
    expect(JSON.parse((await d.cli(['version', '--json'])).stdout)).toEqual({ version });
    const rotated = await d.cli(['listen-key', '--rotate', '--json']);
    const key = JSON.parse(rotated.stdout);
    expect(key).toEqual({
      key: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      file: path.join(d.home, 'config', 'listen.key'),
      rotated: true,
    });
    expect(JSON.parse((await d.cli(['listen-key', '--json'])).stdout)).toEqual({ ...key, rotated: false });
  });
});

describe('tokend login, device flow: QR code and browser, for the person at the terminal', () => {
  const idp = useIdp();
  const { t } = useDaemon({ launch: startDaemon, account: { idp } });
  let urlFile: string;
  let browser: string;

  beforeAll(() => {
    urlFile = path.join(t.home, 'opened.txt');
    browser = path.join(t.home, 'fake-browser.sh');
    fs.writeFileSync(browser, `#!/bin/sh\nprintf '%s\\n' "$1" >> '${urlFile}'\n`, { mode: 0o755 });
  });

  /** `tokend ARGS`, its stdin, stdout and stderr on a pseudo-terminal (script(1)), `| cat` making stdout a pipe. */
  function onTerminal(args: string[], env: NodeJS.ProcessEnv) {
    const cmd = `${[TOKEND_BIN, ...args].map((a) => `'${a}'`).join(' ')} | cat`;
    const child = spawn('script', ['-qec', cmd, '/dev/null'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    const done = new Promise<number | null>((resolve) => child.on('close', resolve));
    return { child, output: () => out.replace(/\r\n/g, '\n'), done };
  }

  async function cancel(): Promise<void> {
    await t.d.cli(['login', 'work', '--cancel']);
  }
  const opened = () => (fs.existsSync(urlFile) ? fs.readFileSync(urlFile, 'utf8').split('\n').filter(Boolean) : []);

  it.skipIf(!has('script'))('on a terminal stderr (stdout a pipe: `tokend login work | cat`), the QR code of the page shows', async () => {
    const term = onTerminal(['login', 'work', '--flow', 'device', '--no-wait', '--no-browser'], t.env);
    expect(await term.done).toBe(0);
    const login = (await t.d.request('GET', '/v1/accounts/work')).json.login;
    expect(login.qr).toMatch(/[█▀▄]/);
    expect(term.output()).toContain(login.qr.split('\n')[1]);
    expect(term.output()).toContain(login.user_code);
    await cancel();
    // Not on a terminal: the page and code, no QR code.
    const piped = await t.d.cli(['login', 'work', '--flow', 'device', '--no-wait', '--no-browser']);
    const again = (await t.d.request('GET', '/v1/accounts/work')).json.login;
    expect(piped.stderr).toContain(again.user_code);
    expect(piped.stderr).not.toContain(again.qr.split('\n')[1]);
    await cancel();
  });

  it.skipIf(!has('script'))(
    'waiting on a terminal, it offers the page (code included) and opens $BROWSER on Enter, as gh does',
    async () => {
      fs.rmSync(urlFile, { force: true });
      const term = onTerminal(['login', 'work', '--flow', 'device'], { ...t.env, BROWSER: browser });
      await waitFor(() => term.output().includes('Press Enter to open'), 'the offer to open a browser');
      const login = (await t.d.request('GET', '/v1/accounts/work')).json.login;
      expect(term.output()).toContain(`Press Enter to open ${login.verification_uri_complete} in your browser.`);
      expect(opened()).toEqual([]); // not before the person asks
      term.child.stdin.write('\n');
      await waitFor(() => opened().length > 0, 'the browser to open');
      expect(opened()).toEqual([login.verification_uri_complete]);
      await idp.approveDevice(login.user_code);
      expect(await term.done).toBe(0);
      expect(term.output()).toContain('Signed in to "work"');
    },
  );

  it('without a terminal it opens the page at once; never with --no-browser, --no-wait --json, or without display or $BROWSER', async () => {
    fs.rmSync(urlFile, { force: true });
    const cli = spawnCli(['login', 'work', '--flow', 'device'], { ...t.env, BROWSER: browser });
    await waitFor(() => opened().length > 0, 'the browser to open');
    const login = (await t.d.request('GET', '/v1/accounts/work')).json.login;
    expect(opened()).toEqual([login.verification_uri_complete]);
    expect(cli.stderr()).toContain(`Opening ${login.verification_uri_complete} in your browser`);
    await idp.approveDevice(login.user_code);
    expect((await cli.done).code).toBe(0);
    expect((await settled(t.d, login.id)).status).toBe('active');

    fs.rmSync(urlFile, { force: true });
    for (const extra of [['--no-browser'], ['--json']]) {
      const r = await runCli(['login', 'work', '--flow', 'device', '--no-wait', ...extra], { env: { ...t.env, BROWSER: browser } });
      expect(r.code).toBe(0);
      if (extra.includes('--json')) expect(r.stderr).toBe('');
      await cancel();
    }
    // No $BROWSER and no display (startDaemon's environment has neither): nothing to open, nothing offered.
    const bare = await t.d.cli(['login', 'work', '--flow', 'device', '--no-wait']);
    expect(bare.stderr).not.toContain('browser');
    await cancel();
    expect(opened()).toEqual([]);
  });
});
