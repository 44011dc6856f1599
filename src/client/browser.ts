/**
 * Opening a URL in the person's browser for a login (the browser flow's authorization URL,
 * the device flow's verification page): `$BROWSER`, then the platform's opener. The URL is
 * an argument, never passed through a shell.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

/**
 * The commands that open `url`, in order: each entry of `$BROWSER` (separated like PATH, as
 * Python's webbrowser reads it; a command line where `%s` stands for the URL, else the URL
 * is the last argument, as gh does), then the platform's opener.
 */
export function browserCommands(url: string, env: Readonly<Record<string, string | undefined>>, platform: string): string[][] {
  const out: string[][] = [];
  for (const entry of (env.BROWSER ?? '').split(path.delimiter)) {
    const argv = splitCommand(entry);
    if (argv.length === 0) continue;
    const hasPlaceholder = argv.some((a) => a.includes('%s'));
    out.push(hasPlaceholder ? argv.map((a) => a.replace(/%(%|s)/g, (_, c: string) => (c === 's' ? url : '%'))) : [...argv, url]);
  }
  if (platform === 'darwin') out.push(['open', url]);
  else if (platform === 'win32') out.push(['rundll32', 'url.dll,FileProtocolHandler', url]);
  else {
    // WSL: the Windows browser, through wslu's opener (as gh does), before xdg-open.
    if (isWsl(env)) out.push(['wslview', url]);
    out.push(['xdg-open', url]);
  }
  return out;
}

/** Windows Subsystem for Linux: its init sets these in every session. */
function isWsl(env: Readonly<Record<string, string | undefined>>): boolean {
  return Boolean(env.WSL_DISTRO_NAME || env.WSL_INTEROP);
}

/**
 * Can a browser open where the person sits: `$BROWSER` is set, or the session has a
 * display (macOS, Windows, WSL, or X11 / Wayland). Otherwise (a console, SSH without X
 * forwarding) trying would only fail or start a text browser on our terminal.
 */
export function canOpenBrowser(env: Readonly<Record<string, string | undefined>>, platform: string): boolean {
  if (env.BROWSER) return true;
  if (platform === 'darwin' || platform === 'win32' || isWsl(env)) return true;
  return Boolean(env.DISPLAY || env.WAYLAND_DISPLAY);
}

/** Split a command line into words: blanks separate, '…' and "…" quote, \ escapes (outside '…'). No shell runs. */
export function splitCommand(line: string): string[] {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: "'" | '"' | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote) {
      if (ch === quote) quote = null;
      else if (ch === '\\' && quote === '"' && i + 1 < line.length) word += line[++i];
      else word += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inWord = true;
    } else if (ch === '\\' && i + 1 < line.length) {
      word += line[++i];
      inWord = true;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += ch;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  return words;
}

/** Try each browser command; true once one started and did not fail at once. The URL never passes through a shell. */
export async function openBrowser(url: string, env: NodeJS.ProcessEnv, platform: string): Promise<boolean> {
  for (const argv of browserCommands(url, env, platform)) {
    if (await launch(argv, env)) return true;
  }
  return false;
}

/** Start `argv` detached; it counts as opened unless it cannot start or exits non-zero within a second. */
function launch(argv: string[], env: NodeJS.ProcessEnv): Promise<boolean> {
  return new Promise((resolve) => {
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: 'ignore', env });
    } catch {
      resolve(false);
      return;
    }
    const timer = setTimeout(() => {
      child.unref();
      resolve(true);
    }, 1000);
    child.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      child.unref();
      resolve(code === 0);
    });
  });
}
