import fs from 'node:fs';
import path from 'node:path';
import type { AccountView } from '../../protocol/api.js';
import { parseHostPattern } from '../../protocol/host-pattern.js';
import { gitConfigUrls } from '../../protocol/helpers/git.js';
import type { Check, DoctorContext } from './check.js';
import { binDir, onPath, shq } from './shell.js';

/**
 * Is git set up to ask tokend first, can it run the helper, and does a storage helper
 * after tokend keep copies of its tokens? (optional)
 */
export async function gitChecks(ctx: DoctorContext): Promise<Check[]> {
  const setup = await setupCheck(ctx);
  if (setup.status === 'info' && setup.message === GIT_MISSING) return [setup];
  return [setup, ...(await storageChecks(ctx))];
}

const GIT_MISSING = 'git is not installed';

/** Is git set up (globally) to ask tokend first, and can it run the helper? */
async function setupCheck(ctx: DoctorContext): Promise<Check> {
  const { env, run } = ctx;
  // --get-regexp covers credential.helper and every credential.<url>.helper.
  const res = await run('git', ['config', '--global', '--get-regexp', '^credential\\..*helper$']);
  if (res.code === 127) return { id: 'git', status: 'info', message: GIT_MISSING };
  if (res.code !== 0 && res.code !== 1) {
    return {
      id: 'git',
      status: 'warn',
      message: `git config --global failed (exit ${res.code}): ${res.stderr.trim().split('\n')[0] ?? ''}`,
    };
  }
  // gitcredentials(7): an empty value resets the list of helpers of that key.
  const byKey = new Map<string, string[]>();
  for (const line of res.stdout.split('\n')) {
    if (!line.trim()) continue;
    const sp = line.indexOf(' ');
    const key = sp < 0 ? line : line.slice(0, sp);
    const value = sp < 0 ? '' : line.slice(sp + 1);
    if (value === '') byKey.set(key, []);
    else byKey.set(key, [...(byKey.get(key) ?? []), value]);
  }
  const uses: { key: string; value: string }[] = [];
  for (const [key, values] of byKey) for (const value of values) if (/tokend/.test(value)) uses.push({ key, value });
  if (uses.length === 0) {
    return { id: 'git', status: 'info', message: 'git is not set up to use tokend (optional)', fix: 'tokend setup git --global' };
  }
  const shown = uses.map((u) => `${u.key}=${u.value}`).join(', ');
  // git asks the helpers in order and stops at the first that answers: one before
  // tokend (store, cache, a keychain) serves its own, possibly stale, credentials.
  const plain = byKey.get('credential.helper') ?? [];
  const at = plain.findIndex((v) => /tokend/.test(v));
  const before = at > 0 ? plain.slice(0, at) : [];
  for (const u of uses) {
    // A bare name runs git-credential-NAME from PATH; an absolute path must exist.
    const first = u.value.trim().split(/\s+/)[0];
    if (u.value.startsWith('!')) continue;
    if (path.isAbsolute(first)) {
      if (!fs.existsSync(first)) {
        return {
          id: 'git',
          status: 'warn',
          message: `git runs ${first} (${u.key}), which does not exist`,
          fix: `git config --global --replace-all ${u.key} '${shq(path.join(binDir(), 'git-credential-tokend'))}'`,
        };
      }
    } else if (!onPath(`git-credential-${first}`, env)) {
      return {
        id: 'git',
        status: 'warn',
        message: `git is set up to use tokend (${u.key}=${u.value}) but git-credential-${first} is not on PATH, so git cannot run it`,
        fix: `git config --global --replace-all ${u.key} '${shq(path.join(binDir(), 'git-credential-tokend'))}'   # or put ${binDir()} on PATH (npm link)`,
      };
    }
  }
  if (before.length) {
    return {
      id: 'git',
      status: 'warn',
      message: `git uses tokend (${shown}) but asks ${before.join(', ')} first, which may answer with other credentials`,
      fix: 'tokend setup git --global',
    };
  }
  return { id: 'git', status: 'ok', message: `git uses tokend: ${shown}` };
}

// ---------------------------------------------------------------- storage helpers after tokend

/**
 * Helpers that keep what git hands them on `store`. git sends `store` to every helper in
 * its list after a command that worked (gitcredentials(7)): one after tokend receives each
 * token tokend serves (a git before 2.46 as username and password, which they write to a
 * file, a cache or a keychain; a git ≥ 2.46 as an ephemeral credential they should not keep).
 */
const STORAGE_HELPERS = new Set(['store', 'cache', 'osxkeychain', 'libsecret', 'gnome-keyring', 'manager', 'manager-core', 'wincred']);

/** A helper's name as git runs it (`store`, `/usr/lib/git-core/git-credential-libsecret` → `libsecret`); undefined for a shell snippet. */
function helperName(value: string): string | undefined {
  if (value.startsWith('!')) return undefined;
  const first = value.trim().split(/\s+/)[0] ?? '';
  return path
    .basename(first)
    .replace(/^git-credential-/, '')
    .replace(/\.exe$/i, '');
}

function isTokend(value: string): boolean {
  return /tokend/.test(value);
}

interface HelperEntry {
  /** The `<url>` of `credential.<url>.helper`, or undefined for `credential.helper`. */
  url?: string;
  value: string;
}

/** `git config -z --get-regexp` output (`key\nvalue\0` each, in config order) as helper entries. */
function parseHelperEntries(stdout: string): HelperEntry[] {
  const out: HelperEntry[] = [];
  for (const item of stdout.split('\0')) {
    if (item === '') continue;
    const nl = item.indexOf('\n');
    const key = nl < 0 ? item : item.slice(0, nl);
    const value = nl < 0 ? '' : item.slice(nl + 1);
    if (key === 'credential.helper') out.push({ value });
    else if (key.startsWith('credential.') && key.endsWith('.helper'))
      out.push({ url: key.slice('credential.'.length, -'.helper'.length), value });
  }
  return out;
}

const DEFAULT_PORT: Record<string, string> = { https: '443', http: '80' };

/** The parts of a URL as git's urlmatch compares them; undefined when it is not one. */
function urlParts(url: string): { scheme?: string; user?: string; host: string; port?: string; path: string } | undefined {
  const m = /^(?:([A-Za-z][A-Za-z0-9+.-]*):\/\/)?(?:([^@/]*)@)?(\[[^\]]*\]|[^/:]*)(?::(\d+))?(\/.*)?$/.exec(url);
  if (!m?.[3]) return undefined;
  const scheme = m[1]?.toLowerCase();
  return {
    scheme,
    user: m[2],
    host: m[3].toLowerCase(),
    port: m[4] ?? (scheme ? DEFAULT_PORT[scheme] : undefined),
    path: (m[5] ?? '').replace(/\/+$/, ''),
  };
}

/**
 * Does the config key's `<url>` apply to `url` (git-config(1), `http.<url>.*`): same scheme,
 * host (`*` standing for one label), port (omitted = the scheme's default), a path prefix of
 * whole segments, and the user when the key names one. A key without a scheme is compared
 * on what it names (git's fallback for partial URLs).
 */
export function gitUrlApplies(configUrl: string, url: string): boolean {
  const c = urlParts(configUrl);
  const u = urlParts(url);
  if (!c || !u) return false;
  if (c.scheme !== undefined && c.scheme !== u.scheme) return false;
  const ch = c.host.split('.');
  const uh = u.host.split('.');
  if (ch.length !== uh.length || ch.some((label, i) => label !== '*' && label !== uh[i])) return false;
  if (c.scheme !== undefined ? c.port !== u.port : c.port !== undefined && c.port !== u.port) return false;
  if (c.path !== '' && u.path !== c.path && !u.path.startsWith(`${c.path}/`)) return false;
  if (c.user !== undefined && c.user !== u.user) return false;
  return true;
}

/** The helpers git asks for `url` (or, without one, those of plain `credential.helper`), in order; an empty value resets. */
function effectiveHelpers(entries: readonly HelperEntry[], url: string | undefined): string[] {
  let list: string[] = [];
  for (const e of entries) {
    if (e.url !== undefined && (url === undefined || !gitUrlApplies(e.url, url))) continue;
    list = e.value === '' ? [] : [...list, e.value];
  }
  return list;
}

/** The storage helpers after tokend in `list`; empty when tokend is not in it. */
function storageAfterTokend(list: readonly string[]): string[] {
  const at = list.findIndex(isTokend);
  if (at < 0) return [];
  return list.slice(at + 1).filter((h) => STORAGE_HELPERS.has(helperName(h) ?? ''));
}

/** The URLs the accounts serve, as git would ask for them (wildcard patterns have none to ask). */
function servedUrls(accounts: readonly AccountView[] | undefined): string[] {
  const urls: string[] = [];
  for (const a of accounts ?? []) {
    for (const raw of a.hosts) {
      const p = parseHostPattern(raw);
      if (!p || p.wildcard) continue;
      for (const u of gitConfigUrls(p)) if (!urls.includes(u)) urls.push(u);
    }
  }
  return urls;
}

/**
 * A storage helper after tokend in git's effective list (every config scope, as git reads
 * it here): for each URL an account serves, or for plain `credential.helper` when the
 * accounts are not known.
 */
async function storageChecks(ctx: DoctorContext): Promise<Check[]> {
  const res = await ctx.run('git', ['config', '-z', '--get-regexp', '^credential\\..*helper$']);
  if (res.code !== 0) return [];
  const entries = parseHelperEntries(res.stdout);
  const accounts = await ctx.accounts;
  const urls = servedUrls(accounts.list);
  const targets: (string | undefined)[] = urls.length > 0 ? urls : [undefined];
  const affected: { url: string | undefined; storage: string[] }[] = [];
  for (const url of targets) {
    const storage = storageAfterTokend(effectiveHelpers(entries, url));
    if (storage.length) affected.push({ url, storage });
  }
  if (affected.length === 0) return [];
  const names = [...new Set(affected.flatMap((a) => a.storage.map((h) => helperName(h) ?? h)))];
  const where = affected.some((a) => a.url === undefined) ? '' : ` for ${affected.map((a) => a.url).join(', ')}`;
  const helper = path.join(binDir(), 'git-credential-tokend');
  const fixFor = (url: string) =>
    `git config --global --add 'credential.${shq(url)}.helper' '' && git config --global --add 'credential.${shq(url)}.helper' '${shq(helper)}'`;
  const fix = affected.some((a) => a.url === undefined)
    ? `${fixFor('https://HOST')}   # for each host a tokend account serves: there git asks tokend alone`
    : affected.map((a) => fixFor(a.url!)).join('\n');
  return [
    {
      id: 'git:storage',
      status: 'warn',
      message:
        `git asks ${names.join(', ')} after tokend${where}, and hands it every token tokend serves there on \`store\` ` +
        '(git before 2.46 as a password it keeps; 2.46+ as an ephemeral credential it should not keep): ' +
        'those tokens then live on outside tokend, past a logout',
      fix,
    },
  ];
}
