import fs from 'node:fs';
import path from 'node:path';
import { unsafeFolderOnTheWay } from '../../protocol/local-trust.js';
import type { Check, DoctorContext } from './check.js';
import { shq, uid } from './shell.js';

/** Like the daemon's own start-up check (fs-safety.ts), but naming every offender, not the first. */
export async function permissionChecks(ctx: DoctorContext): Promise<Check[]> {
  const daemonUp = (await ctx.probe).up;
  const paths = ctx.paths;
  const me = uid();
  const problems: Check[] = [];
  let dirs = 0;
  let files = 0;
  const bad = (p: string, message: string, fix?: string) =>
    problems.push({ id: `permissions:${p}`, status: 'fail', message, ...(fix ? { fix } : {}) });

  // StrictModes, as the daemon checks at start: no folder above its own that another user could write.
  const unsafeAbove = new Set<string>();
  for (const dir of new Set([paths.configDir, paths.dataDir, paths.stateDir, paths.socketDir, path.dirname(paths.keyFile)])) {
    const unsafe = unsafeFolderOnTheWay(dir, me);
    if (unsafe && !unsafeAbove.has(unsafe.folder)) {
      unsafeAbove.add(unsafe.folder);
      bad(unsafe.folder, `${unsafe.message}; the daemon will not start under it`, unsafe.fix);
    }
  }

  for (const dir of new Set([paths.configDir, paths.dataDir, paths.stateDir, paths.socketDir])) {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        if (daemonUp) {
          problems.push({
            id: `permissions:${dir}`,
            status: 'warn',
            message: `folder ${dir} does not exist although the daemon runs: it uses other folders than this shell (TOKEND_HOME, TOKEND_CONFIG_DIR, TOKEND_DATA_DIR?)`,
          });
        }
        continue;
      }
      bad(dir, `cannot inspect folder ${dir}: ${(err as Error).message}`);
      continue;
    }
    dirs++;
    if (!st.isDirectory()) {
      bad(dir, `${dir} is not a folder; tokend keeps its files there`);
      continue;
    }
    if (st.uid !== me) {
      const shared = (st.mode & 0o1000) !== 0;
      bad(
        dir,
        `folder ${dir} is owned by uid ${st.uid}, not by you (uid ${me}); tokend will not use it` +
          (shared ? ': it is a shared folder, so point TOKEND_SOCKET / TOKEND_HOME at a folder of your own' : ''),
        shared ? undefined : `sudo chown "$(id -u)" '${shq(dir)}'`,
      );
      continue;
    }
    const mode = st.mode & 0o777;
    if (mode & 0o077) {
      bad(
        dir,
        `folder ${dir} is open to group or others (mode ${mode.toString(8).padStart(3, '0')}); it must be 0700`,
        `chmod 700 '${shq(dir)}'`,
      );
    }
  }

  const wanted = [paths.configFile, paths.keyFile, paths.dbFile, `${paths.dbFile}-wal`, `${paths.dbFile}-shm`, paths.logFile];
  for (const file of wanted) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') bad(file, `cannot inspect ${file}: ${(err as Error).message}`);
      continue;
    }
    files++;
    if (st.isSymbolicLink()) {
      bad(file, `${file} is a symbolic link; tokend wants the file itself there (the daemon refuses a link)`);
      continue;
    }
    if (!st.isFile()) {
      bad(file, `${file} is not a regular file`);
      continue;
    }
    if (st.uid !== me) {
      bad(
        file,
        `file ${file} is owned by uid ${st.uid}, not by you (uid ${me}); tokend will not use it`,
        `sudo chown "$(id -u)" '${shq(file)}'`,
      );
      continue;
    }
    const mode = st.mode & 0o777;
    if (mode & 0o077) {
      bad(
        file,
        `file ${file} is readable or writable by group or others (mode ${mode.toString(8).padStart(3, '0')}); it must be 0600`,
        `chmod 600 '${shq(file)}'`,
      );
    }
  }

  // The socket: systemd makes it 0600 (SocketMode), the daemon chmods its own to 0600.
  try {
    const st = fs.lstatSync(paths.socket);
    if (!st.isSocket()) {
      problems.push({
        id: `permissions:${paths.socket}`,
        status: daemonUp ? 'warn' : 'fail',
        message: `${paths.socket} is not a socket; the daemon cannot listen there`,
        fix: `rm '${shq(paths.socket)}'`,
      });
    } else if (st.uid !== me || (st.mode & 0o077) !== 0) {
      bad(
        paths.socket,
        `the socket ${paths.socket} is ${st.uid !== me ? `owned by uid ${st.uid}` : `open to group or others (mode ${(st.mode & 0o777).toString(8)})`}`,
        st.uid === me ? `chmod 600 '${shq(paths.socket)}'` : undefined,
      );
    }
  } catch {
    /* no socket: the daemon check says so */
  }

  if (problems.length) return problems;
  return [
    {
      id: 'permissions',
      status: 'ok',
      message:
        dirs + files === 0
          ? 'no tokend folders yet (the daemon creates them, 0700, at first start)'
          : `${dirs} folder${dirs === 1 ? '' : 's'} 0700 and ${files} file${files === 1 ? '' : 's'} 0600, all yours`,
    },
  ];
}
