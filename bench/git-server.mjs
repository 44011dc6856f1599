// A git smart-HTTP server for the ls-remote scenario: node http on 127.0.0.1 running
// `git http-backend` as a CGI behind HTTP Basic auth. A trimmed copy of
// test/support/git-server.ts (no push, no stats beyond counts).
import http from 'node:http';
import { once } from 'node:events';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { track } from './lib.mjs';

/** An environment for git that reads no user or system config. */
export function isolatedGitEnv(extra = {}) {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: extra.HOME ?? '/nonexistent',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    LANG: 'C',
    ...extra,
  };
}

function git(args, { input = '', env = {} } = {}) {
  const r = spawnSync('git', args, { input, env: isolatedGitEnv(env), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout.trim();
}

/** A bare repo `<root>/<name>.git` with one commit on main. */
export function createRepo(root, name) {
  const dir = path.join(root, `${name}.git`);
  git(['init', '--quiet', '--bare', '--initial-branch=main', dir]);
  const env = { GIT_DIR: dir, GIT_AUTHOR_NAME: 'B', GIT_AUTHOR_EMAIL: 'b@example.test', GIT_COMMITTER_NAME: 'B', GIT_COMMITTER_EMAIL: 'b@example.test' };
  const blob = git(['hash-object', '-w', '--stdin'], { input: `# ${name}\n`, env });
  const tree = git(['mktree'], { input: `100644 blob ${blob}\tREADME.md\n`, env });
  const commit = git(['commit-tree', tree, '-m', 'initial'], { env });
  git(['update-ref', 'refs/heads/main', commit], { env });
  return dir;
}

/** Start the server; `authorize(user, pass)` → boolean. */
export async function startGitServer(root, authorize) {
  const stats = { requests: 0, unauthorized: 0, authorized: 0 };
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    stats.requests++;
    const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(req.headers.authorization ?? '');
    const decoded = m ? Buffer.from(m[1], 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    if (colon < 0 || !authorize(decoded.slice(0, colon), decoded.slice(colon + 1))) {
      stats.unauthorized++;
      req.resume();
      res.writeHead(401, { 'www-authenticate': 'Basic realm="bench"', 'content-type': 'text/plain' });
      res.end('authentication required\n');
      return;
    }
    stats.authorized++;
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
      REMOTE_USER: decoded.slice(0, colon),
      REMOTE_ADDR: '127.0.0.1',
    });
    if (req.headers['content-length'] !== undefined) env.CONTENT_LENGTH = req.headers['content-length'];
    if (req.headers['content-encoding'] !== undefined) env.HTTP_CONTENT_ENCODING = req.headers['content-encoding'];
    if (typeof req.headers['git-protocol'] === 'string') env.GIT_PROTOCOL = req.headers['git-protocol'];
    const child = track(spawn('git', ['http-backend'], { env, stdio: ['pipe', 'pipe', 'ignore'] }));
    child.stdin.on('error', () => {});
    req.pipe(child.stdin);
    let pending = Buffer.alloc(0);
    let headersSent = false;
    child.stdout.on('data', (chunk) => {
      if (headersSent) return void res.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      const crlf = pending.indexOf('\r\n\r\n');
      const lf = pending.indexOf('\n\n');
      const end = crlf >= 0 && (lf < 0 || crlf < lf) ? [crlf, crlf + 4] : lf >= 0 ? [lf, lf + 2] : undefined;
      if (!end) return;
      let status = 200;
      for (const line of pending.subarray(0, end[0]).toString('latin1').split(/\r?\n/)) {
        const c = line.indexOf(':');
        if (c <= 0) continue;
        const name = line.slice(0, c).trim();
        const value = line.slice(c + 1).trim();
        if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10) || 500;
        else res.appendHeader(name, value);
      }
      res.statusCode = status;
      headersSent = true;
      const rest = pending.subarray(end[1]);
      if (rest.length) res.write(rest);
    });
    child.on('close', () => {
      if (!headersSent && !res.headersSent) res.writeHead(500).end('git http-backend failed\n');
      else res.end();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    port: server.address().port,
    stats,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  };
}
