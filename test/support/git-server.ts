/**
 * A real git smart-HTTP server for tests: node `http` on 127.0.0.1 (random port) running
 * `git http-backend` as a CGI, behind HTTP Basic auth whose password an async callback
 * judges (tests ask the real IdP's introspection endpoint whether the token is active).
 *
 * ```ts
 * const git = await startGitServer({ authorize: async (user, pass) => pass === 'good' });
 * await git.createRepo('demo');                 // bare repo with one commit on main
 * // git clone `${git.url}/demo.git` …
 * expect(git.stats.unauthorized).toBe(1);
 * await git.close();
 * ```
 *
 * Pushing is enabled (`http.receivepack true` in each bare repo's config).
 */
import http from 'node:http';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { listenOnLoopback } from './loopback.js';

export interface GitServerOptions {
  /** Folder holding the bare repos; a temporary one (removed on close) when absent. */
  root?: string;
  /** Decides a Basic-auth username/password; true lets the request through. */
  authorize: (username: string, password: string) => Promise<boolean>;
}

export interface GitServerStats {
  /** Every HTTP request received. */
  requests: number;
  /** Requests answered 401 (no or bad credentials). */
  unauthorized: number;
  /** Requests let through to git http-backend. */
  authorized: number;
  /** The username of the last authorized request. */
  lastUsername?: string;
}

export interface GitServer {
  /** `http://127.0.0.1:PORT`; a repo `name` is at `${url}/${name}.git`. */
  url: string;
  port: number;
  /** Make a bare repo `<root>/<name>.git` (one commit on `main` unless `empty`); returns its path. */
  createRepo(name: string, opts?: { empty?: boolean }): Promise<string>;
  close(): Promise<void>;
  stats: GitServerStats;
}

/** An environment for git that reads no user or system config. */
export function isolatedGitEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    LANG: 'C',
    ...extra,
  };
}

/** Run git to completion; rejects with its stderr on a non-zero exit. */
function runGit(args: string[], opts: { cwd?: string; input?: string; env?: Record<string, string> } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('git', args, { cwd: opts.cwd, env: isolatedGitEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.stdin.on('error', () => {}); // a command that reads no stdin may exit first (EPIPE)
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8').trim());
      else reject(new Error(`git ${args.join(' ')} exited ${code}: ${Buffer.concat(err).toString('utf8').trim()}`));
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** `Authorization: Basic base64(user:pass)` (RFC 7617 §2); undefined when absent or malformed. */
function basicCredentials(header: string | undefined): { username: string; password: string } | undefined {
  const m = header ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** Split a CGI response head (RFC 3875 §6.2): header lines, `Status: 200 OK` as the status. */
function parseCgiHead(head: string): { status: number; headers: Array<[string, string]> } {
  let status = 200;
  const headers: Array<[string, string]> = [];
  for (const line of head.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
    else headers.push([name, value]);
  }
  return { status, headers };
}

/** Find the blank line ending the CGI head: returns [head length, body start]. */
function headEnd(buf: Buffer): [number, number] | undefined {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return [crlf, crlf + 4];
  if (lf >= 0) return [lf, lf + 2];
  return undefined;
}

/** Start the server; see the module comment. */
export async function startGitServer(opts: GitServerOptions): Promise<GitServer> {
  const ownRoot = opts.root === undefined;
  const root = opts.root ?? (await mkdtemp(path.join(tmpdir(), 'tokend-git-')));
  await mkdir(root, { recursive: true });
  const stats: GitServerStats = { requests: 0, unauthorized: 0, authorized: 0 };
  const children = new Set<ChildProcess>();

  const runCgi = (req: http.IncomingMessage, res: http.ServerResponse, username: string): void => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const env = isolatedGitEnv({
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      GATEWAY_INTERFACE: 'CGI/1.1',
      SERVER_PROTOCOL: `HTTP/${req.httpVersion}`,
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.replace(/^\?/, ''),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      REMOTE_USER: username,
      REMOTE_ADDR: req.socket.remoteAddress ?? '127.0.0.1',
    });
    if (req.headers['content-length'] !== undefined) env.CONTENT_LENGTH = req.headers['content-length'];
    // git gzips large request bodies; http-backend inflates when told (HTTP_CONTENT_ENCODING).
    if (req.headers['content-encoding'] !== undefined) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
    // Protocol v2 is negotiated through this header (gitprotocol-v2: "Git-Protocol").
    const gitProtocol = req.headers['git-protocol'];
    if (typeof gitProtocol === 'string') env.GIT_PROTOCOL = gitProtocol;

    const child = spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    child.on('close', () => children.delete(child));
    child.stdin.on('error', () => {}); // http-backend may exit before reading everything
    req.pipe(child.stdin);

    let pending: Buffer = Buffer.alloc(0);
    let headersSent = false;
    const errText: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => errText.push(c));
    child.stdout.on('data', (chunk: Buffer) => {
      if (headersSent) {
        res.write(chunk);
        return;
      }
      pending = Buffer.concat([pending, chunk]);
      const end = headEnd(pending);
      if (!end) return;
      const { status, headers } = parseCgiHead(pending.subarray(0, end[0]).toString('latin1'));
      res.statusCode = status;
      for (const [name, value] of headers) res.appendHeader(name, value);
      headersSent = true;
      const rest = pending.subarray(end[1]);
      if (rest.length > 0) res.write(rest);
    });
    child.on('error', () => {
      if (!res.headersSent) res.writeHead(500).end('cannot run git http-backend\n');
    });
    child.on('close', (code) => {
      if (!headersSent) {
        if (!res.headersSent) {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`git http-backend exited ${code}: ${Buffer.concat(errText).toString('utf8')}\n`);
        }
        return;
      }
      res.end();
    });
  };

  const server = http.createServer((req, res) => {
    stats.requests += 1;
    const creds = basicCredentials(req.headers.authorization);
    const deny = (): void => {
      stats.unauthorized += 1;
      req.resume();
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"', 'content-type': 'text/plain' });
      res.end('authentication required\n');
    };
    if (!creds) {
      deny();
      return;
    }
    opts.authorize(creds.username, creds.password).then(
      (ok) => {
        if (!ok) {
          deny();
          return;
        }
        stats.authorized += 1;
        stats.lastUsername = creds.username;
        try {
          runCgi(req, res, creds.username);
        } catch {
          if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' }).end('bad request\n');
        }
      },
      () => {
        req.resume();
        res.writeHead(503, { 'content-type': 'text/plain' }).end('authorization check failed\n');
      },
    );
  });
  const listener = await listenOnLoopback(server);

  return {
    url: listener.url,
    port: listener.port,
    stats,
    async createRepo(name, createOpts = {}) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new Error(`bad repo name: ${name}`);
      const dir = path.join(root, name.endsWith('.git') ? name : `${name}.git`);
      await runGit(['init', '--quiet', '--bare', '--initial-branch=main', dir]);
      await runGit(['config', '--file', path.join(dir, 'config'), 'http.receivepack', 'true']);
      if (!createOpts.empty) {
        // One commit on main, built with plumbing so no work tree is needed.
        const who = {
          GIT_AUTHOR_NAME: 'Test',
          GIT_AUTHOR_EMAIL: 'test@example.test',
          GIT_COMMITTER_NAME: 'Test',
          GIT_COMMITTER_EMAIL: 'test@example.test',
          GIT_DIR: dir,
        };
        const blob = await runGit(['hash-object', '-w', '--stdin'], { input: `# ${name}\n`, env: who });
        const tree = await runGit(['mktree'], { input: `100644 blob ${blob}\tREADME.md\n`, env: who });
        const commit = await runGit(['commit-tree', tree, '-m', 'initial'], { env: who });
        await runGit(['update-ref', 'refs/heads/main', commit], { env: who });
      }
      return dir;
    },
    async close() {
      for (const c of children) c.kill('SIGKILL');
      await listener.close();
      if (ownRoot) await rm(root, { recursive: true, force: true });
    },
  };
}
