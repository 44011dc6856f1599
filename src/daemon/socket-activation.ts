/** sd_listen_fds(3): the first passed file descriptor is always 3. */
export const SD_LISTEN_FDS_START = 3;

const ACTIVATION_VARS = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

/**
 * The listening socket systemd passed us (socket activation), or undefined when we were
 * started without one. Follows sd_listen_fds(3) with unset_environment=1: LISTEN_PID,
 * LISTEN_FDS and LISTEN_FDNAMES are removed from `env` in every case, so a process we
 * start does not take our socket for its own. Throws when systemd passed more than one
 * socket (tokend listens on exactly one) or the variables are malformed.
 */
export function inheritedListenFd(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): number | undefined {
  const listenPid = env.LISTEN_PID;
  const listenFds = env.LISTEN_FDS;
  for (const name of ACTIVATION_VARS) delete env[name];

  if (listenPid === undefined || listenFds === undefined) return undefined;
  // sd_listen_fds(3): the variables are meant for the process whose pid LISTEN_PID
  // names; anyone else (a child that inherited them by mistake) must ignore them.
  if (parseCount('LISTEN_PID', listenPid) !== pid) return undefined;
  const count = parseCount('LISTEN_FDS', listenFds);
  if (count === 0) return undefined;
  if (count > 1) {
    throw new Error(
      `socket activation passed ${count} sockets (LISTEN_FDS=${count}); tokend listens on exactly one: ` +
        'give tokend.socket a single ListenStream=',
    );
  }
  return SD_LISTEN_FDS_START;
}

function parseCount(name: string, value: string): number {
  if (!/^[0-9]{1,10}$/.test(value)) {
    throw new Error(`socket activation: ${name} must be a decimal number, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}
