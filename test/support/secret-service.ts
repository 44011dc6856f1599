/**
 * A private Secret Service for the keyring tests: a D-Bus session bus of its own (no
 * service activation, so nothing starts behind the test's back) and gnome-keyring-daemon
 * on it with an unlocked login keyring, all in a temporary folder that close() removes.
 * Debian: apt-get install dbus gnome-keyring libsecret-tools.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface SecretService {
  /** DBUS_SESSION_BUS_ADDRESS for a process that should see this keyring. */
  env: { DBUS_SESSION_BUS_ADDRESS: string };
  /** The password stored under these attributes, as `secret-tool lookup` finds it; null when none. */
  lookup(attributes: Record<string, string>): string | null;
  close(): Promise<void>;
}

const MISSING = 'the keyring tests need D-Bus and gnome-keyring: apt-get install dbus gnome-keyring libsecret-tools';

/** A session bus alone (no Secret Service on it), or with gnome-keyring when `keyring` is true. */
export async function startSecretService(opts: { keyring?: boolean } = {}): Promise<SecretService> {
  for (const bin of ['dbus-daemon', 'gnome-keyring-daemon', 'secret-tool']) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) throw new Error(`${bin} is not installed: ${MISSING}`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-ss-'));
  const children: ChildProcess[] = [];
  const close = async () => {
    for (const c of children.reverse()) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
      c.kill('SIGKILL');
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const conf = path.join(dir, 'bus.conf');
    const socket = path.join(dir, 'bus');
    fs.writeFileSync(
      conf,
      `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`,
    );
    const bus = spawn('dbus-daemon', ['--config-file', conf, '--nofork', '--print-address=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(bus);
    const address = await new Promise<string>((resolve, reject) => {
      let out = '';
      let err = '';
      bus.stderr!.on('data', (c) => (err += c));
      bus.stdout!.on('data', (c) => {
        out += c;
        if (out.includes('\n')) resolve(out.split('\n')[0]!.trim());
      });
      bus.once('exit', (code) => reject(new Error(`dbus-daemon exited (${code}): ${err}`)));
    });
    const env = { DBUS_SESSION_BUS_ADDRESS: address };
    const home = path.join(dir, 'home');
    const runtime = path.join(dir, 'run');
    fs.mkdirSync(home, { mode: 0o700 });
    fs.mkdirSync(runtime, { mode: 0o700 });
    const toolEnv = { ...process.env, ...env, HOME: home, XDG_RUNTIME_DIR: runtime };
    if (opts.keyring !== false) {
      // --unlock reads the login keyring's password from stdin and creates that keyring,
      // the default collection, on first use; without one a store has nowhere to go.
      const keyring = spawn('gnome-keyring-daemon', ['--foreground', '--unlock', '--components=secrets'], {
        env: toolEnv,
        stdio: ['pipe', 'ignore', 'pipe'],
      });
      children.push(keyring);
      keyring.stdin!.end('a keyring password');
      const deadline = Date.now() + 10_000;
      while (!secretsOwned(toolEnv)) {
        if (keyring.exitCode !== null || Date.now() > deadline)
          throw new Error('gnome-keyring-daemon did not take org.freedesktop.secrets on the test bus');
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    return {
      env,
      lookup(attributes) {
        const r = spawnSync('secret-tool', ['lookup', ...Object.entries(attributes).flat()], { env: toolEnv, encoding: 'utf8' });
        return r.status === 0 ? r.stdout : null;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

/** Is the Secret Service's name taken on the bus yet? */
function secretsOwned(env: NodeJS.ProcessEnv): boolean {
  const r = spawnSync(
    'dbus-send',
    [
      '--session',
      '--print-reply',
      '--dest=org.freedesktop.DBus',
      '/org/freedesktop/DBus',
      'org.freedesktop.DBus.NameHasOwner',
      'string:org.freedesktop.secrets',
    ],
    { env, encoding: 'utf8' },
  );
  return r.status === 0 && /boolean true/.test(r.stdout);
}
