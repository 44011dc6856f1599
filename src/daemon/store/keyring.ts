/**
 * The OS keyring as the master key's place (`settings.key_store: "keyring"`): the macOS
 * Keychain, or on Linux the Secret Service (gnome-keyring, KWallet, KeePassXC) over D-Bus,
 * through @napi-rs/keyring (prebuilt binaries, no compiler). Loaded only when a daemon uses
 * it. On Linux the entry is pinned to the Secret Service: the library would otherwise fall
 * back silently to the kernel keyring, which forgets everything at reboot, and a master key
 * lost that way loses every stored secret.
 */
import { MASTER_KEY_BYTES } from '../../protocol/paths.js';

/** The entry's service; its account is the data folder, so two homes never share an entry. */
export const KEYRING_SERVICE = 'tokend';
/** A keyring that waits on an unlock prompt nobody sees must not hang the daemon's start. */
const KEYRING_TIMEOUT_MS = 10_000;

export class KeyringError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringError';
  }
}

export interface KeyringEntry {
  /** How the user finds it: `the OS keyring (service "tokend", account "<dir>")`. */
  readonly where: string;
  read(): Promise<Buffer | undefined>;
  write(key: Buffer): Promise<void>;
  /** True when an entry was there to delete. */
  remove(): Promise<boolean>;
}

type KeyringModule = typeof import('@napi-rs/keyring');

/** What to do when no keyring answers, said once for every way that can happen. */
const NO_KEYRING_HINT =
  process.platform === 'darwin'
    ? 'the login Keychain must be unlocked in this session'
    : 'start a Secret Service in this session (gnome-keyring-daemon, KWallet or KeePassXC; DBUS_SESSION_BUS_ADDRESS must name its bus), or keep the key in a file (settings.key_store "file")';

/** The keyring entry of this data folder's master key; throws a KeyringError saying what is missing. */
export async function keyringEntry(dataDir: string): Promise<KeyringEntry> {
  let mod: KeyringModule;
  try {
    mod = await import('@napi-rs/keyring');
  } catch (err) {
    throw new KeyringError(
      `the OS keyring cannot be used here: @napi-rs/keyring has no working build for ${process.platform}-${process.arch} (${firstLine(err)}); keep the key in a file (settings.key_store "file")`,
    );
  }
  const where = `the OS keyring (service "${KEYRING_SERVICE}", account "${dataDir}")`;
  let entry: InstanceType<KeyringModule['AsyncEntry']>;
  try {
    entry = new mod.AsyncEntry(KEYRING_SERVICE, dataDir, { linux: { store: 'secret-service' } });
  } catch (err) {
    throw new KeyringError(`no OS keyring answers (${firstLine(err)}): ${NO_KEYRING_HINT}`);
  }
  const call = async <T>(what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> => {
    const signal = AbortSignal.timeout(KEYRING_TIMEOUT_MS);
    try {
      return await fn(signal);
    } catch (err) {
      if (signal.aborted) {
        throw new KeyringError(
          `the OS keyring did not answer within ${KEYRING_TIMEOUT_MS / 1000} s to ${what} (is it locked, waiting for a password nobody is asked for?): ${NO_KEYRING_HINT}`,
        );
      }
      throw new KeyringError(`cannot ${what} in ${where} (${firstLine(err)}): ${NO_KEYRING_HINT}`);
    }
  };
  return {
    where,
    async read() {
      const text = await call('read the master key', (signal) => entry.getPassword(signal));
      if (text === null || text === undefined) return undefined;
      const key = Buffer.from(text, 'base64');
      if (key.length !== MASTER_KEY_BYTES || key.toString('base64') !== text) {
        throw new KeyringError(
          `${where} holds something that is not a tokend key (not ${MASTER_KEY_BYTES} bytes in base64); put the original key back`,
        );
      }
      return key;
    },
    // The key as base64 text: every keyring stores a password, and `secret-tool lookup` shows it whole.
    write: (key) => call('store the master key', (signal) => entry.setPassword(key.toString('base64'), signal)),
    remove: () => call('remove the master key', (signal) => entry.deletePassword(signal)),
  };
}

/** The first line of an error, without a stack: the library's messages name the store and the cause. */
function firstLine(err: unknown): string {
  const msg = ((err as Error)?.message ?? String(err)).split('\n')[0]!;
  return msg.length > 200 ? `${msg.slice(0, 200)}…` : msg;
}
