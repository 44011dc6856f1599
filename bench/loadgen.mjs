// A small HTTP/1.1 load generator for Unix sockets (wrk cannot speak them). It runs in its
// own process: bench/lib.mjs runLoad() writes a JSON spec on stdin and reads a JSON result
// from stdout. It writes pre-built request bytes on raw net sockets and parses only what it
// needs (status line, Content-Length or chunked end), so it costs far less CPU per request
// than node:http's client and the server, not the generator, is the bottleneck.
//
// spec: {
//   socket | port (TCP on 127.0.0.1), method = 'POST', path, bodies: string[] (cycled over requests), headers: {},
//   mode: 'duration' | 'burst',
//   connections,                         // duration: concurrent keep-alive connections; burst: requests
//   warmupMs = 500, durationMs = 2000,   // duration mode only
//   capture: 'access_token',             // optional: JSON string field whose distinct values are reported
//   contentType = 'application/json'
// }
import net from 'node:net';
import { performance } from 'node:perf_hooks';

const spec = JSON.parse(await readStdin());
const method = spec.method ?? 'POST';
const bodies = spec.bodies?.length ? spec.bodies : [''];
const requests = bodies.map((b) => {
  const body = Buffer.from(b, 'utf8');
  const head =
    `${method} ${spec.path} HTTP/1.1\r\nHost: tokend\r\nUser-Agent: tokend-bench\r\n` +
    Object.entries(spec.headers ?? {})
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('') +
    (body.length || method === 'POST'
      ? `Content-Type: ${spec.contentType ?? 'application/json'}\r\nContent-Length: ${body.length}\r\n`
      : '') +
    '\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
});
const captureRe = spec.capture ? new RegExp(`"${spec.capture}"\\s*:\\s*"([^"]*)"`) : undefined;

// ------------------------------------------------------------------------------------

function readStdin() {
  return new Promise((resolve) => {
    let s = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (c) => (s += c));
    process.stdin.on('end', () => resolve(s));
  });
}

/** One keep-alive connection: send(buf) → onResponse(status, body, startedAt). */
class Conn {
  constructor(sock, onResponse) {
    this.sock = sock;
    this.onResponse = onResponse;
    this.buf = Buffer.alloc(0);
    this.need = -1;
    this.bodyStart = 0;
    this.status = 0;
    this.startedAt = 0;
    sock.on('data', (chunk) => this.onData(chunk));
  }
  send(buf) {
    this.startedAt = performance.now();
    this.sock.write(buf);
  }
  onData(chunk) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    for (;;) {
      if (this.need < 0) {
        const he = this.buf.indexOf('\r\n\r\n');
        if (he < 0) return;
        const head = this.buf.toString('latin1', 0, he);
        this.status = Number.parseInt(head.slice(9, 12), 10);
        this.bodyStart = he + 4;
        const cl = /\r\ncontent-length:[ \t]*(\d+)/i.exec(head);
        if (cl) {
          this.need = this.bodyStart + Number(cl[1]);
        } else if (/\r\ntransfer-encoding:[ \t]*chunked/i.test(head)) {
          this.need = -2; // find the last chunk below
        } else {
          this.need = this.bodyStart; // no body (204/304)
        }
      }
      if (this.need === -2) {
        const rest = this.buf.subarray(this.bodyStart);
        const end =
          rest.subarray(0, 5).toString('latin1') === '0\r\n\r\n'
            ? 5
            : (() => {
                const i = rest.indexOf('\r\n0\r\n\r\n');
                return i < 0 ? -1 : i + 7;
              })();
        if (end < 0) return;
        this.need = this.bodyStart + end;
      }
      if (this.buf.length < this.need) return;
      const body = this.buf.subarray(this.bodyStart, this.need);
      this.buf = this.buf.subarray(this.need);
      this.need = -1;
      this.onResponse(this.status, body, this.startedAt);
    }
  }
}

function connect(socketPath) {
  return new Promise((resolve, reject) => {
    const s = spec.port ? net.connect(spec.port, '127.0.0.1') : net.connect(socketPath);
    s.setNoDelay(true);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function summarize(lat) {
  const s = Float64Array.from(lat).sort();
  const q = (p) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] : NaN);
  let sum = 0;
  for (const v of s) sum += v;
  return {
    n: s.length,
    p50: q(0.5),
    p90: q(0.9),
    p99: q(0.99),
    max: s.length ? s[s.length - 1] : NaN,
    mean: s.length ? sum / s.length : NaN,
  };
}

async function duration() {
  const n = spec.connections ?? 1;
  const warmupMs = spec.warmupMs ?? 500;
  const durationMs = spec.durationMs ?? 2000;
  const socks = await Promise.all(Array.from({ length: n }, () => connect(spec.socket)));
  const lat = [];
  const statuses = {};
  let errors = 0;
  let next = 0;
  let total = 0; // every answer, the warm-up's too: what a server's CPU time is divided by
  let active = n;
  const t0 = performance.now();
  const from = t0 + warmupMs;
  const to = from + durationMs;
  let done;
  const finished = new Promise((r) => (done = r));
  const conns = socks.map((sock) => {
    const c = new Conn(sock, (status, _body, startedAt) => {
      const now = performance.now();
      total++;
      if (now >= from && now <= to) {
        lat.push(now - startedAt);
        statuses[status] = (statuses[status] ?? 0) + 1;
      }
      if (now < to) c.send(requests[next++ % requests.length]);
      else if (--active === 0) done();
    });
    sock.on('error', () => {
      errors++;
      if (--active === 0) done();
    });
    return c;
  });
  for (const c of conns) c.send(requests[next++ % requests.length]);
  const guard = setTimeout(() => done(), warmupMs + durationMs + 10_000);
  await finished;
  clearTimeout(guard);
  for (const s of socks) s.destroy();
  const ok = statuses[200] ?? 0;
  return {
    mode: 'duration',
    connections: n,
    durationMs,
    requests: lat.length,
    total,
    ok,
    errors,
    statuses,
    rps: (lat.length / durationMs) * 1000,
    ...summarize(lat),
  };
}

async function burst() {
  const n = spec.connections ?? 1000;
  const socks = [];
  // Connect in batches so the accept queue never overflows, then let the server settle.
  for (let i = 0; i < n; i += 200) {
    socks.push(...(await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => connect(spec.socket)))));
  }
  await new Promise((r) => setTimeout(r, 200));
  const lat = [];
  const statuses = {};
  const captured = new Map();
  let errors = 0;
  let pending = n;
  let done;
  const finished = new Promise((r) => (done = r));
  const conns = socks.map((sock) => {
    sock.on('error', () => {
      errors++;
      if (--pending === 0) done();
    });
    return new Conn(sock, (status, body, startedAt) => {
      lat.push(performance.now() - startedAt);
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (captureRe) {
        const m = captureRe.exec(body.toString('utf8'));
        const v = m ? m[1] : '(none)';
        captured.set(v, (captured.get(v) ?? 0) + 1);
      }
      if (--pending === 0) done();
    });
  });
  const t0 = performance.now();
  for (let i = 0; i < n; i++) conns[i].send(requests[i % requests.length]);
  const sentMs = performance.now() - t0;
  const guard = setTimeout(() => done(), 30_000);
  await finished;
  clearTimeout(guard);
  const totalMs = performance.now() - t0;
  for (const s of socks) s.destroy();
  return {
    mode: 'burst',
    connections: n,
    sentMs,
    totalMs,
    errors,
    statuses,
    distinctCaptured: captured.size,
    ...summarize(lat),
  };
}

const result = spec.mode === 'burst' ? await burst() : await duration();
process.stdout.write(JSON.stringify(result));
process.exit(0);
