// 10. The API proxy (ANY /v1/proxy/NAME/PATH): a proxied GET of 1 KiB of JSON at 16
// connections against the same request sent straight to the upstream with the token, and a
// large download and upload streamed through the daemon against the same transfer direct,
// with the daemon's RSS sampled all along (nothing may be buffered). 10b: the download again
// with curl, a client that reads as fast as it can. Every figure is a median over rounds in
// which the proxy and the direct path take turns. Beside the wall-clock rows, the CPU time
// the daemon spends per proxied request (and per MiB streamed), read from /proc: steadier
// than any throughput on a shared machine.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BENCH, cpuMsOf, freePort, mainThreadCpuMsOf, memoryOf, spawnTracked, stopChild, tempDir } from '../lib/processes.mjs';
import { median, nowMs } from '../lib/stats.mjs';
import { row, textRow } from '../lib/table.mjs';

/** Stream `bytes` down (GET) or up (PUT) through `target` ({socketPath} or {host, port}); resolves MB/s. */
function transfer(target, urlPath, direction, bytes, headers = {}) {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const req = http.request(
      {
        ...target,
        agent: false,
        method: direction === 'down' ? 'GET' : 'PUT',
        path: urlPath,
        headers: { ...headers, ...(direction === 'up' ? { 'content-length': bytes } : {}) },
      },
      (res) => {
        let got = 0;
        res.on('data', (c) => (got += c.length));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`${urlPath}: HTTP ${res.statusCode}`));
          if (direction === 'down' && got !== bytes) return reject(new Error(`${urlPath}: ${got} of ${bytes} bytes`));
          resolve(bytes / 1024 / 1024 / ((nowMs() - t0) / 1000));
        });
      },
    );
    req.on('error', reject);
    if (direction === 'down') return req.end();
    let left = bytes;
    const chunk = Buffer.alloc(64 * 1024, 0x62);
    new Readable({
      read() {
        if (left <= 0) return this.push(null);
        left -= chunk.length;
        this.push(chunk);
      },
    }).pipe(req);
  });
}

/** One download with curl (`args` say where from); resolves MB/s as curl measured it. */
function curlDownload(args, bytes) {
  const r = spawnSync('curl', ['-sS', '-o', '/dev/null', '-w', '%{http_code} %{size_download} %{speed_download}', ...args], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  const [code, size, speed] = (r.stdout ?? '').trim().split(' ').map(Number);
  if (r.status !== 0 || code !== 200 || size !== bytes)
    throw new Error(`curl: exit ${r.status}, HTTP ${code}, ${size} of ${bytes} bytes: ${r.stderr}`);
  return speed / 1024 / 1024;
}

const hasCurl = () => spawnSync('curl', ['--version'], { stdio: 'ignore' }).status === 0;

/** Run `fn` while sampling `pid`'s RSS every 20 ms; resolves [fn's result, the peak growth in MB]. */
async function sampled(pid, fn) {
  const start = memoryOf(pid).rssMb;
  let peak = start;
  const timer = setInterval(() => (peak = Math.max(peak, memoryOf(pid).rssMb)), 20);
  try {
    const out = await fn();
    return [out, Math.max(peak, memoryOf(pid).rssMb) - start];
  } finally {
    clearInterval(timer);
  }
}

/** `fn`'s result and the CPU time (ms) `pid` spent while it ran. */
async function withCpu(pid, fn) {
  const c0 = cpuMsOf(pid);
  const out = await fn();
  return [out, cpuMsOf(pid) - c0];
}

/** The upstream API (bench/api-server.mjs) on `port`, accepting `token`: {port, child}. */
async function startApi(port, token) {
  const child = spawnTracked(process.execPath, [path.join(BENCH, 'api-server.mjs'), String(port), token], {
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
  });
  await new Promise((resolve) => child.once('message', resolve));
  return { port, child };
}

/** Point the main daemon's `work` at `port`; resolves the token it will send (valid an hour: no refresh during the runs). */
async function aimAt(daemon, port) {
  // api_base is not part of the grant's identity: the account keeps its grant.
  const set = await daemon.request('PATCH', '/v1/accounts/work', { api_base: `http://127.0.0.1:${port}/api` });
  if (set.status !== 200) throw new Error(`PATCH api_base answered ${set.status}: ${set.text}`);
  return (await daemon.request('POST', '/v1/token', { account: 'work', min_ttl: 600 })).json;
}

const PROXIED = { method: 'GET', path: '/v1/proxy/work/item' };

/** The reference proxy (bench/proxy-floor.mjs) in front of `api`: {socket, child}. */
async function startFloor(api, token, nodeArgs = []) {
  const socket = path.join(tempDir('tkb-floor-'), 's.sock');
  const child = spawnTracked(process.execPath, [...nodeArgs, path.join(BENCH, 'proxy-floor.mjs'), socket, String(api.port)], {
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, BENCH_PROXY_TOKEN: token },
  });
  await new Promise((resolve) => child.once('message', resolve));
  return { socket, child };
}

/**
 * 10: the proxied GET at 16 connections against the same GET direct, and through the
 * reference proxy (node:http + undici, nothing of tokend), in rounds where each goes first
 * in turn; rows, the reference line and raw runs.
 */
async function proxiedGet(ctx, daemon, api, auth, token) {
  const { loadRounds, warmupMs, durationMs } = ctx.rounds;
  const floor = await startFloor(api, token);
  const runs = { tokend: [], direct: [], floor: [] };
  const order = ['tokend', 'direct', 'floor'];
  try {
    for (let r = 0; r < loadRounds; r++) {
      for (let i = 0; i < order.length; i++) {
        const who = order[(r + i) % order.length];
        const spec =
          who === 'direct'
            ? { port: api.port, method: 'GET', path: '/api/item', headers: auth }
            : { socket: who === 'tokend' ? daemon.socket : floor.socket, ...PROXIED };
        const proxyPid = who === 'floor' ? floor.child.pid : daemon.pid;
        const api0 = cpuMsOf(api.child.pid);
        const [main0, apiMain0] = [mainThreadCpuMsOf(proxyPid), mainThreadCpuMsOf(api.child.pid)];
        const [out, proxyMs] = await withCpu(proxyPid, () =>
          ctx.runLoad({ ...spec, mode: 'duration', connections: 16, warmupMs, durationMs }),
        );
        const perAnswer = (ms) => (ms * 1000) / out.total;
        const mainUs = {
          proxyMainUs: perAnswer(mainThreadCpuMsOf(proxyPid) - main0),
          apiMainUs: perAnswer(mainThreadCpuMsOf(api.child.pid) - apiMain0),
        };
        if (out.ok !== out.requests || out.errors)
          throw new Error(
            `${who}: ${out.requests - out.ok} non-200 answers, ${out.errors} socket errors (${JSON.stringify(out.statuses)})`,
          );
        // Per answer, the warm-up's included: the CPU time covers them too.
        runs[who].push({ ...out, proxyUs: perAnswer(proxyMs), apiUs: perAnswer(cpuMsOf(api.child.pid) - api0), ...mainUs });
      }
    }
  } finally {
    await stopChild(floor.child);
  }
  const m = (who, k) => median(runs[who].map((o) => o[k]));
  const scenario = '10. proxied GET, 1 KiB JSON, 16 conn';
  const rows = [
    row({
      scenario,
      measure: 'throughput',
      t: m('tokend', 'rps'),
      b: m('direct', 'rps'),
      unit: 'rps',
      kind: 'min',
      limit: 0.5,
      baselineLabel: 'straight to the API with the token',
    }),
    row({ scenario, measure: 'p99 latency', t: m('tokend', 'p99'), b: m('direct', 'p99'), unit: 'ms', kind: 'max', limit: 3 }),
    row({
      scenario,
      measure: 'CPU time per request (user + system, /proc)',
      t: m('tokend', 'proxyUs'),
      b: m('direct', 'apiUs'),
      unit: 'us',
      baselineLabel: 'the API answering it direct',
    }),
  ];
  const reference =
    `Proxied GET, 16 conn, through the reference proxy (bench/proxy-floor.mjs: node:http + undici dispatch, nothing of tokend): ` +
    `${Math.round(m('floor', 'rps')).toLocaleString('en-US')} req/s (${(m('floor', 'rps') / m('direct', 'rps')).toFixed(2)}× direct; tokend ${(m('tokend', 'rps') / m('floor', 'rps')).toFixed(2)}× it), ` +
    `p99 ${m('floor', 'p99').toFixed(2)} ms, CPU time ${Math.round(m('floor', 'proxyUs'))} µs a request (tokend's daemon ${Math.round(m('tokend', 'proxyUs'))} µs); ` +
    `main thread only: reference ${Math.round(m('floor', 'proxyMainUs'))} µs, tokend ${Math.round(m('tokend', 'proxyMainUs'))} µs, the API direct ${Math.round(m('direct', 'apiMainUs'))} µs.`;
  return { rows, reference, runs };
}

/** 10: the streamed download and upload, `streamRounds` interleaved rounds each; rows and CPU per MiB. */
async function streams(ctx, daemon, api, auth) {
  const { streamMb, streamRounds } = ctx.rounds;
  const bytes = streamMb * 1024 * 1024;
  const size = streamMb >= 1024 ? `${streamMb / 1024} GiB` : `${streamMb} MiB`;
  const rows = [];
  const cpu = {};
  for (const direction of ['down', 'up']) {
    const urlPath = direction === 'down' ? `/download?bytes=${bytes}` : '/upload';
    const runs = { tokend: [], direct: [], growth: [], cpuMsPerMb: [] };
    for (let r = 0; r < streamRounds; r++) {
      for (const who of r % 2 ? ['direct', 'tokend'] : ['tokend', 'direct']) {
        if (who === 'direct') {
          runs.direct.push(await transfer({ host: '127.0.0.1', port: api.port }, `/api${urlPath}`, direction, bytes, auth));
          continue;
        }
        const [[mbps, ms], growth] = await sampled(daemon.pid, () =>
          withCpu(daemon.pid, () => transfer({ socketPath: daemon.socket }, `/v1/proxy/work${urlPath}`, direction, bytes)),
        );
        runs.tokend.push(mbps);
        runs.growth.push(growth);
        runs.cpuMsPerMb.push(ms / streamMb);
      }
    }
    const s = `10. ${size} ${direction === 'down' ? 'download' : 'upload'} through the proxy`;
    rows.push(
      row({
        scenario: s,
        measure: `throughput, median of ${streamRounds}`,
        t: median(runs.tokend),
        b: median(runs.direct),
        unit: 'mbps',
        kind: 'min',
        limit: 0.8,
        baselineLabel: `the same ${direction === 'down' ? 'download' : 'upload'} direct`,
      }),
      row({
        scenario: s,
        measure: 'daemon RSS growth while streaming (max)',
        t: Math.max(...runs.growth),
        unit: 'mb',
        kind: 'abs',
        limit: 64,
      }),
    );
    cpu[direction] = median(runs.cpuMsPerMb);
  }
  return { rows, cpu };
}

/** 10b: 256 MiB down with curl, through the proxy and direct, interleaved. */
async function curlRows(ctx, daemon, api, token) {
  const scenario = '10b. 256 MiB download with curl through the proxy';
  if (!hasCurl()) return { rows: [textRow(scenario, 'throughput', 'not measured (no curl on PATH)')] };
  const bytes = 256 * 1024 * 1024;
  // The token goes in a header file, never in curl's argv.
  const header = path.join(tempDir('tkb-curl-'), 'auth');
  fs.writeFileSync(header, `Authorization: Bearer ${token}\n`, { mode: 0o600 });
  const direct = ['-H', `@${header}`, `http://127.0.0.1:${api.port}/api/download?bytes=${bytes}`];
  const proxied = ['--unix-socket', daemon.socket, `http://tokend/v1/proxy/work/download?bytes=${bytes}`];
  const runs = { tokend: [], direct: [], cpuMsPerMb: [] };
  for (let r = 0; r < ctx.rounds.streamRounds; r++) {
    for (const who of r % 2 ? ['direct', 'tokend'] : ['tokend', 'direct']) {
      if (who === 'direct') {
        runs.direct.push(curlDownload(direct, bytes));
        continue;
      }
      const [mbps, ms] = await withCpu(daemon.pid, () => curlDownload(proxied, bytes));
      runs.tokend.push(mbps);
      runs.cpuMsPerMb.push(ms / 256);
    }
  }
  const rows = [
    row({
      scenario,
      measure: `throughput, median of ${ctx.rounds.streamRounds}`,
      t: median(runs.tokend),
      b: median(runs.direct),
      unit: 'mbps',
      kind: 'min',
      limit: 0.8,
      baselineLabel: 'curl direct',
    }),
  ];
  return { rows, cpuMsPerMb: median(runs.cpuMsPerMb) };
}

export default {
  id: 10,
  title: 'API proxy',
  async run(ctx) {
    const { daemon } = await ctx.main();
    // The API takes only the token the daemon holds now (aimAt asks for one valid an hour).
    const port = await freePort();
    const token = await aimAt(daemon, port);
    const upstream = await startApi(port, token.access_token);
    try {
      const auth = { Authorization: `Bearer ${token.access_token}` };
      // BENCH_PROXY_PART=get (or =streams) runs one half of the row: the streams take minutes.
      const part = process.env.BENCH_PROXY_PART;
      const get = part === 'streams' ? undefined : await proxiedGet(ctx, daemon, upstream, auth, token.access_token);
      if (part === 'get') return { rows: get.rows, references: [get.reference], raw: { proxy: get.runs } };
      const streamed = await streams(ctx, daemon, upstream, auth);
      const curl = await curlRows(ctx, daemon, upstream, token.access_token);
      const perMb = (v) => `${v.toFixed(2)} ms`;
      const references = [
        ...(get ? [get.reference] : []),
        `Proxy, daemon CPU time (user + system) per MiB streamed, medians: download ${perMb(streamed.cpu.down)}, upload ${perMb(streamed.cpu.up)}` +
          (curl.cpuMsPerMb === undefined ? '.' : `, download read by curl ${perMb(curl.cpuMsPerMb)}.`),
      ];
      return { rows: [...(get?.rows ?? []), ...streamed.rows, ...curl.rows], references, raw: { proxy: get?.runs } };
    } finally {
      await stopChild(upstream.child);
    }
  },

  /** The daemon under 16-connection proxied load, under --cpu-prof. */
  async profile(ctx, profiler) {
    const main = await ctx.main();
    await main.daemon.stop(); // the profiled daemon takes over its home
    await profiler.run('proxy', 'daemon under proxied GET load (1 KiB JSON, 16 connections)', async (cpuArgs) => {
      const d = await ctx.startDaemon(main.home, { nodeArgs: cpuArgs(200) });
      const port = await freePort();
      const api = await startApi(port, (await aimAt(d, port)).access_token);
      try {
        await ctx.runLoad({ socket: d.socket, ...PROXIED, mode: 'duration', connections: 16, warmupMs: 300, durationMs: 3000 });
      } finally {
        await stopChild(api.child);
        await d.stop();
      }
    });
    // The reference proxy under the same load: what node and undici alone spend, frame by frame.
    await profiler.run('proxy-floor', 'reference proxy (bench/proxy-floor.mjs) under the same load', async (cpuArgs) => {
      const d = await ctx.startDaemon(main.home);
      const port = await freePort();
      const token = (await aimAt(d, port)).access_token;
      await d.stop();
      const api = await startApi(port, token);
      const floor = await startFloor(api, token, cpuArgs(200));
      try {
        await ctx.runLoad({ socket: floor.socket, ...PROXIED, mode: 'duration', connections: 16, warmupMs: 300, durationMs: 3000 });
      } finally {
        await stopChild(floor.child);
        await stopChild(api.child);
      }
    });
  },
};
