/**
 * Who else could touch tokend's folders and socket on this machine. The daemon refuses a
 * folder another user could replace (StrictModes, below), every client checks the socket
 * before it sends anything, and `tokend doctor` reports both. Node built-ins only: the
 * thin client and the SDK load this module.
 */
import fs from 'node:fs';
import path from 'node:path';

/** A folder on the way to one of tokend's own that another user could write. */
export interface UnsafeFolder {
  folder: string;
  /** One sentence naming the folder, what is wrong and what another user could do. */
  message: string;
  /** A command that is safe to run (it never closes a shared folder such as /tmp). */
  fix: string;
}

function pathAndAbove(p: string): string[] {
  const out: string[] = [];
  for (let cur = path.resolve(p); ; cur = path.dirname(cur)) {
    out.push(cur);
    if (path.dirname(cur) === cur) return out;
  }
}

const quote = (p: string) => `'${p.replace(/'/g, `'\\''`)}'`;
const octal = (mode: number) => (mode & 0o7777).toString(8).padStart(3, '0');

/**
 * OpenSSH's StrictModes for `dir` and every folder above it up to `/`, both as written
 * and after symbolic links: each must be owned by `uid` or root and not writable by group
 * or others unless it is sticky (`/tmp`). Otherwise that folder's owner or writers can
 * move tokend's folder aside and put their own (with their own socket) in its place.
 * Folders that do not exist yet are skipped. Undefined where uids do not exist (Windows).
 */
export function unsafeFolderOnTheWay(dir: string, uid = process.getuid?.()): UnsafeFolder | undefined {
  if (uid === undefined) return undefined;
  const folders = pathAndAbove(dir);
  try {
    for (const p of pathAndAbove(fs.realpathSync(dir))) if (!folders.includes(p)) folders.push(p);
  } catch {
    /* not there yet: the path as written is all there is */
  }
  const elsewhere = `keep tokend's folders in one of your own instead: export TOKEND_HOME="$HOME/.tokend" (or move TOKEND_CONFIG_DIR, TOKEND_DATA_DIR, TOKEND_SOCKET out of ${folders[0]})`;
  for (const folder of folders) {
    let st: fs.Stats;
    try {
      st = fs.statSync(folder);
    } catch {
      continue;
    }
    const above = folder === folders[0] ? '' : ` (on the way to ${folders[0]})`;
    if (st.uid !== uid && st.uid !== 0) {
      return {
        folder,
        message: `folder ${folder}${above} belongs to uid ${st.uid}, neither you (uid ${uid}) nor root: its owner could replace tokend's folders and socket below it`,
        fix: elsewhere,
      };
    }
    if (st.mode & 0o022 && !(st.mode & 0o1000)) {
      const ours = st.uid === uid && uid !== 0;
      return {
        folder,
        message: `folder ${folder}${above} can be written by ${st.mode & 0o002 ? 'others' : 'its group'} (mode ${octal(st.mode)}, not sticky): another user could move tokend's folders aside and put a socket of their own there`,
        // Only write permission goes: a folder of ours stays readable for whoever reads it now.
        fix: ours ? `chmod go-w ${quote(folder)}` : elsewhere,
      };
    }
  }
  return undefined;
}

/**
 * Before a client sends anything (a client secret, a refresh token) to the daemon: the
 * socket and its folder must be the user's, the folder not writable by anyone else, else
 * another user may be the one listening. Returns why not, or undefined when it looks right
 * or is not there (connecting then fails as "not running"). One lstat and one stat.
 */
export function untrustedSocket(socket: string, uid = process.getuid?.()): string | undefined {
  if (uid === undefined) return undefined;
  let st: fs.Stats;
  let dirSt: fs.Stats;
  let real = socket;
  try {
    st = fs.lstatSync(socket);
    if (st.isSymbolicLink()) {
      const why = untrustedFolder(path.dirname(socket), fs.statSync(path.dirname(socket)), uid);
      if (why) return why;
      real = fs.realpathSync(socket);
      st = fs.statSync(real);
    }
    dirSt = fs.statSync(path.dirname(real));
  } catch {
    return undefined;
  }
  const folderWhy = untrustedFolder(path.dirname(real), dirSt, uid);
  if (folderWhy) return folderWhy;
  if (st.uid !== uid)
    return `the socket ${real} belongs to uid ${st.uid}, not to you (uid ${uid}): another user is listening there; nothing was sent to it`;
  return undefined;
}

function untrustedFolder(dir: string, st: fs.Stats, uid: number): string | undefined {
  if (st.uid !== uid)
    return `the socket's folder ${dir} belongs to uid ${st.uid}, not to you (uid ${uid}): another user may be listening there; nothing was sent to it`;
  if (st.mode & 0o022) {
    return `the socket's folder ${dir} can be written by others (mode ${octal(st.mode)}): another user may be listening there; nothing was sent to it (fix: chmod 700 ${quote(dir)}, then restart tokend)`;
  }
  return undefined;
}

/** How the daemon's `/v1/health` warning about core dumps begins (`tokend doctor` files it apart). */
export const CORE_LIMIT_WARNING = 'core dumps are allowed';

/**
 * Throw {@link untrustedSocket}'s reason before connecting. Its error is not one of "nothing
 * listens", so `withAutostart` reports it as it is and starts no daemon elsewhere.
 */
export function checkSocketBeforeSending(socket: string): void {
  const why = untrustedSocket(socket);
  if (why) throw Object.assign(new Error(why), { code: 'EUNTRUSTED' });
}

/** How the daemon's `/v1/health` warning about a missing caller addon begins (`tokend doctor` files it apart). */
export const NO_CALLER_ADDON_WARNING = 'callers are not verified';
