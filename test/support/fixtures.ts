import { spawn } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';
import { DaemonProcess, tempHome } from './daemon.js';

export interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** It ran past `timeoutMs` and was killed. */
  killed: boolean;
  ms: number;
}

/**
 * Run a program with `stdin`. Past `timeoutMs` it is killed together with its children
 * (it runs in its own process group: a shim's tokend-fast too), so a stall fails the test
 * instead of hanging it.
 */
export function runProcess(
  cmd: string,
  args: string[],
  opts: { env: NodeJS.ProcessEnv; stdin?: string | Buffer; timeoutMs?: number },
): Promise<ProcessResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = spawn(cmd, args, { env: opts.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      process.kill(-child.pid!, 'SIGKILL');
    }, opts.timeoutMs ?? 30_000);
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, killed, ms: Date.now() - started });
    });
    child.stdin.on('error', () => undefined); // a program that exits before reading all of stdin
    child.stdin.end(opts.stdin ?? '');
  });
}

/**
 * One daemon under a fresh TOKEND_HOME for the enclosing `describe`: started before its
 * tests, killed and its folder removed after them.
 */
export function daemonForSuite(): { readonly daemon: DaemonProcess; readonly env: NodeJS.ProcessEnv } {
  let home: ReturnType<typeof tempHome> | undefined;
  let daemon: DaemonProcess | undefined;
  beforeAll(async () => {
    home = tempHome();
    daemon = new DaemonProcess(home.home, home.env);
    await daemon.start();
  });
  afterAll(async () => {
    await daemon?.stop('SIGKILL');
    home?.cleanup();
  });
  return {
    get daemon() {
      return daemon!;
    },
    get env() {
      return home!.env;
    },
  };
}
