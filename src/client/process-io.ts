/**
 * The running process as an `Io`. Output to a reader that has gone away
 * (`tokend list | head -1`) is dropped quietly: the command finishes with its own exit
 * status, and no EPIPE stack trace reaches the terminal.
 */
import { UsageError, type Io } from './io.js';

/** Larger stdin is not a token or a secret; refuse it rather than buffer it. */
const MAX_STDIN_BYTES = 64 * 1024;

export function processIo(): Io {
  return {
    stdout: quietWhenClosed(process.stdout),
    stderr: quietWhenClosed(process.stderr),
    readStdin,
    env: process.env,
    stderrIsTTY: () => Boolean(process.stderr.isTTY),
    onEnter,
  };
}

/** Enter on a terminal's stdin (cooked mode: one chunk per line). Stops reading, and lets the process exit, when told. */
function onEnter(fn: () => void): (() => void) | undefined {
  if (!process.stdin.isTTY) return undefined;
  const onData = (chunk: Buffer) => {
    if (chunk.includes(0x0a) || chunk.includes(0x0d)) fn();
  };
  process.stdin.on('data', onData);
  process.stdin.resume();
  return () => {
    process.stdin.off('data', onData);
    process.stdin.pause();
  };
}

/** A writer that stops at the stream's first error (EPIPE: the reader closed its end). */
function quietWhenClosed(stream: NodeJS.WriteStream): (s: string) => void {
  let open = true;
  // Without a listener an 'error' event is an uncaught exception with a stack trace.
  stream.on('error', () => {
    open = false;
  });
  return (s) => {
    if (open) stream.write(s);
  };
}

function readStdin(): Promise<string> {
  return new Promise((resolve, reject) => {
    if (process.stdin.isTTY) process.stderr.write('(reading from stdin; end with Ctrl-D)\n');
    const chunks: Buffer[] = [];
    let size = 0;
    process.stdin.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_STDIN_BYTES) {
        reject(new UsageError(`stdin is larger than ${MAX_STDIN_BYTES / 1024} KiB`));
        process.stdin.destroy();
        return;
      }
      chunks.push(c);
    });
    process.stdin.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    process.stdin.on('error', reject);
  });
}
