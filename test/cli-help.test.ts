/**
 * Every command says what it does, its options and its exit status, through the real
 * bin/tokend run as a program (its sh part first, as a user's shell runs it), and every
 * mistake on the command line is one clean line and exit 2.
 */
import path from 'node:path';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, TOKEND_BIN, tempHome } from './support/daemon.js';
import { run } from './support/run.js';
import { startStandInDaemon, type StandInDaemon } from './support/stand-in-daemon.js';

const runBin = (bin: string, args: string[], env: NodeJS.ProcessEnv, stdin = '') => run(bin, args, { env, stdin });

const PACKAGE_VERSION = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).version as string;

/** Each command, and what its help must say beyond usage and exit status. */
const HELP: Array<{ cmd: string[]; says: RegExp[] }> = [
  {
    cmd: ['add'],
    says: [
      /--client-id ID/,
      /--client-secret-stdin/,
      /--replace-grant/,
      /--no-check/,
      /device \| browser \| client-credentials \| password\n/,
    ],
  },
  { cmd: ['set'], says: [/only the options given/, /tokend set NAME --client-secret-stdin/, /--replace-grant/, /--no-check/] },
  { cmd: ['login'], says: [/--flow F/, /--no-wait/, /tokend login NAME --cancel/, /Ctrl-C/, /130/] },
  { cmd: ['import'], says: [/--refresh-token-stdin/, /--tokens-stdin/, /accessTokenExpiresAt/, /never\s+from argv/] },
  { cmd: ['api'], says: [/-X, --method/, /-H, --header/, /@FILE/, /never sees it/, /3 the account needs a login/] },
  { cmd: ['listen-key'], says: [/--rotate/, /Authorization: Bearer KEY/, /0600/] },
  { cmd: ['key'], says: [/move --to keyring\|file/, /Secret Service/, /kernel keyring/, /settings\.key_store/, /--json/] },
  { cmd: ['token'], says: [/--min-ttl S/, /half its own lifetime/, /clamped/, /--url URL/, /3 the account needs a login/] },
  { cmd: ['list'], says: [/--json/, /login_pending/] },
  { cmd: ['status'], says: [/--json/, /the login in progress/, /3 account NAME cannot serve a token/, /no_grant/, /login_pending/] },
  { cmd: ['refresh'], says: [/--json/, /3 the provider refused the grant/] },
  { cmd: ['logout'], says: [/RFC 7009/, /configuration and client secret stay/, /--json/] },
  { cmd: ['remove'], says: [/deletes the account/, /--json/] },
  { cmd: ['audit'], says: [/--since T/, /--action A/, /never their values/, /audit_retention_days/, /--json/] },
  { cmd: ['exec'], says: [/--env VAR/, /-- COMMAND/, /never appears in argv/, /127/] },
  { cmd: ['setup'], says: [/setup git/] },
  {
    cmd: ['setup', 'git'],
    says: [
      /--global/,
      /--native/,
      /no fallback/,
      /--dry-run/,
      /--json/,
      /useHttpPath/,
      /\.git\/config/,
      /~\/\.gitconfig/,
      /not in a\s+repository/,
    ],
  },
  { cmd: ['service'], says: [/install\|uninstall\|status/, /--dry-run/, /systemd/, /launchd/] },
  { cmd: ['doctor'], says: [/--json/] },
  { cmd: ['daemon'], says: [/--socket PATH/, /SIGHUP/] },
  { cmd: ['version'], says: [/--version/, /-v/, /--json/] },
  { cmd: ['completion'], says: [/bash\|zsh\|fish/, /source <\(tokend completion bash\)/, /account names/] },
  { cmd: ['git-credential'], says: [/get\|store\|erase/, /git-credential-tokend/, /tokend setup git/] },
  { cmd: ['docker-credential'], says: [/get\|store\|erase\|list/, /credHelpers/, /credentials not found in native keychain/] },
  { cmd: ['kubectl-credential'], says: [/ExecCredential/, /KUBERNETES_EXEC_INFO/, /interactiveMode/] },
  { cmd: ['bazel-credential'], says: [/--account NAME/, /"uri"/, /credential_helper/] },
];

describe('tokend COMMAND --help', () => {
  let home: ReturnType<typeof tempHome>;
  beforeAll(() => {
    home = tempHome();
  });
  afterAll(() => home.cleanup());

  it('the overview lists every command, with the exit statuses', async () => {
    const r = await runBin(TOKEND_BIN, ['--help'], home.env);
    expect(r).toMatchObject({ code: 0, stderr: '' });
    for (const { cmd } of HELP) expect(r.stdout).toMatch(new RegExp(`^  ${cmd.join(' ')}\\b`, 'm'));
    expect(r.stdout).toContain('exit status: 0 ok, 1 error, 2 bad usage, 3 the account needs a login');
  });

  for (const { cmd, says } of HELP) {
    it(`tokend ${cmd.join(' ')} --help says what it does, its options and its exit status`, async () => {
      const r = await runBin(TOKEND_BIN, [...cmd, '--help'], home.env);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: (tokend ${cmd.join(' ')}|${cmd[0]}-tokend)\\b`));
      expect(r.stdout).toMatch(/^Exit status: \S/m);
      for (const re of says) expect(r.stdout).toMatch(re);
      // `tokend help CMD` and `-h` say the same.
      expect((await runBin(TOKEND_BIN, ['help', ...cmd.slice(0, 1)], home.env)).stdout).toBe(
        cmd.length === 1 ? r.stdout : (await runBin(TOKEND_BIN, [cmd[0], '--help'], home.env)).stdout,
      );
      if (cmd.length === 1) expect((await runBin(TOKEND_BIN, [...cmd, '-h'], home.env)).stdout).toBe(r.stdout);
    });
  }

  it('tokend version, --version and -v print the version', async () => {
    for (const args of [['version'], ['--version'], ['-v']]) {
      expect(await runBin(TOKEND_BIN, args, home.env)).toEqual({ code: 0, stdout: `${PACKAGE_VERSION}\n`, stderr: '' });
    }
  });
});

describe('mistakes on the command line', () => {
  let home: ReturnType<typeof tempHome>;
  beforeAll(() => {
    home = tempHome();
  });
  afterAll(() => home.cleanup());

  // The helpers' argv belongs to git, docker and Bazel; every other command refuses what it does not know.
  const STRICT: string[][] = [
    ['add', 'work'],
    ['set', 'work'],
    ['login', 'work'],
    ['import', 'work'],
    ['token', 'work'],
    ['list'],
    ['status'],
    ['refresh', 'work'],
    ['logout', 'work'],
    ['remove', 'work'],
    ['exec', 'work'],
    ['setup', 'git'],
    ['service', 'status'],
    ['daemon'],
    ['version'],
    ['kubectl-credential', 'work'],
    ['completion', 'bash'],
    ['doctor'],
  ];
  for (const cmd of STRICT) {
    const name = cmd[0] === 'setup' ? 'setup git' : cmd[0];
    it(`tokend ${cmd.join(' ')} --bogus: one line naming the option and the help, exit 2, the value never echoed`, async () => {
      const r = await runBin(TOKEND_BIN, [...cmd, '--bogus=s3cret-value'], home.env);
      expect(r).toEqual({ code: 2, stdout: '', stderr: `tokend ${name}: unknown option "--bogus" (see \`tokend ${name} --help\`)\n` });
    });
  }

  it('says which option lacks a value, or takes none', async () => {
    expect(await runBin(TOKEND_BIN, ['token', 'work', '--min-ttl'], home.env)).toEqual({
      code: 2,
      stdout: '',
      stderr: 'tokend token: --min-ttl needs a value (one that starts with "-" goes as --min-ttl=VALUE) (see `tokend token --help`)\n',
    });
    const r = await runBin(TOKEND_BIN, ['list', '--json=yes'], home.env);
    expect(r).toMatchObject({ code: 2, stderr: 'tokend list: --json takes no value (see `tokend list --help`)\n' });
    const d = await runBin(TOKEND_BIN, ['daemon', '--socket'], home.env);
    expect(d).toMatchObject({
      code: 2,
      stderr: 'tokend daemon: --socket needs a value (one that starts with "-" goes as --socket=VALUE) (see `tokend daemon --help`)\n',
    });
    // The daemon says its mistakes as the CLI does (one shared describeMistake, src/protocol/usage.ts).
    const ambiguous = await runBin(TOKEND_BIN, ['daemon', '--socket', '--listen=127.0.0.1:1'], home.env);
    expect(ambiguous).toEqual({
      code: 2,
      stdout: '',
      stderr: 'tokend daemon: --socket needs a value (one that starts with "-" goes as --socket=VALUE) (see `tokend daemon --help`)\n',
    });
    expect(await runBin(TOKEND_BIN, ['daemon', 'now'], home.env)).toEqual({
      code: 2,
      stdout: '',
      stderr: 'tokend daemon: takes no arguments, only options (see `tokend daemon --help`)\n',
    });
  });

  it('an unknown command or top-level option, a missing NAME, a bad --min-ttl: one line, exit 2', async () => {
    const cases: Array<[string[], string]> = [
      [['frobnicate'], 'tokend: unknown command "frobnicate" (see `tokend --help`)\n'],
      [['--bogus'], 'tokend: unknown option "--bogus" (see `tokend --help`)\n'],
      [['token'], 'tokend token: needs an account NAME (see `tokend token --help`)\n'],
      [['token', 'work', '--min-ttl', 'soon'], 'tokend token: --min-ttl takes whole seconds (see `tokend token --help`)\n'],
      [['status', 'a', 'b'], 'tokend status: too many arguments (at most 1, got 2) (see `tokend status --help`)\n'],
      [['setup'], 'tokend setup: say what to set up: git or cli (see `tokend setup --help`)\n'],
      [['set', 'work'], 'tokend set: name at least one setting to change (see `tokend set --help`)\n'],
      [
        ['login', 'work', '--cancel', '--no-wait'],
        'tokend login: --cancel takes no other options (got --no-wait) (see `tokend login --help`)\n',
      ],
    ];
    for (const [args, stderr] of cases)
      expect(await runBin(TOKEND_BIN, args, home.env), args.join(' ')).toEqual({ code: 2, stdout: '', stderr });
  });
});

describe('the helper programs answer a person, and still speak their protocol to the daemon', () => {
  let standIn: StandInDaemon;
  const shim = (tool: string) => path.join(ROOT, 'bin', `${tool}-credential-tokend`);
  beforeAll(async () => {
    standIn = await startStandInDaemon();
    // docker's miss, as the daemon answers it (body = stdout, exit 1).
    standIn.answer = () => ({ status: 422, body: 'credentials not found in native keychain\n', headers: { 'x-tokend-exit': '1' } });
  });
  afterAll(() => standIn.close());

  it('--help, -h and docker --version / -v / version are answered without asking the daemon', async () => {
    for (const [tool, args] of [
      ['git', ['--help']],
      ['docker', ['--help']],
      ['docker', ['-h']],
      ['bazel', ['--help']],
    ] as const) {
      const r = await runBin(shim(tool), [...args], standIn.env);
      expect(r.code, `${tool} ${args}`).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^usage: ${tool}-credential-tokend `));
      expect(r.stderr).toBe('');
    }
    for (const v of ['--version', '-v', 'version']) {
      expect(await runBin(shim('docker'), [v], standIn.env)).toEqual({
        code: 0,
        stdout: `docker-credential-tokend (tokend) ${PACKAGE_VERSION}\n`,
        stderr: '',
      });
    }
    expect(standIn.requests).toEqual([]);
  });

  it('a protocol call still goes to the daemon, and its answer comes back byte for byte', async () => {
    const r = await runBin(shim('docker'), ['get'], standIn.env, 'https://registry.example.com\n');
    expect(r).toEqual({ code: 1, stdout: 'credentials not found in native keychain\n', stderr: '' });
    expect(standIn.requests.map((q) => [q.method, q.path, q.body])).toEqual([
      ['POST', '/v1/helpers/docker/get', 'https://registry.example.com\n'],
    ]);
  });
});
