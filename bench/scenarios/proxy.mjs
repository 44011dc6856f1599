// 10. The API proxy (ANY /v1/proxy/NAME/PATH): a proxied GET of 1 KiB of JSON at 16
// connections against the same request sent straight to the upstream with the token, and a
// large download and upload streamed through the daemon against the same transfer direct,
// with the daemon's RSS sampled all along (nothing may be buffered).
import http from 'node:http';
import path from 'node:path';
import { Readable } from 'node:stream';
import { BENCH, freePort, memoryOf, spawnTracked, stopChild } from '../lib/processes.mjs';
import { median, nowMs } from '../lib/stats.mjs';
import { row } from '../lib/table.mjs';

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

export default {
  id: 10,
  title: 'API proxy',
  async run(ctx) {
    const { daemon } = await ctx.main();
    const { loadRounds, warmupMs, durationMs, streamMb } = ctx.rounds;
    const port = await freePort();
    // api_base is not part of the grant's identity: the account keeps its grant.
    const set = await daemon.request('PATCH', '/v1/accounts/work', { api_base: `http://127.0.0.1:${port}/api` });
    if (set.status !== 200) throw new Error(`PATCH api_base answered ${set.status}: ${set.text}`);
    // The token the daemon will send now (valid an hour: no refresh during the runs).
    const token = (await daemon.request('POST', '/v1/token', { account: 'work', min_ttl: 600 })).json;
    const api = spawnTracked(process.execPath, [path.join(BENCH, 'api-server.mjs'), String(port), token.access_token], {
      stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    });
    await new Promise((resolve) => api.once('message', resolve));
    try {
      const auth = { Authorization: `Bearer ${token.access_token}` };
      const runs = { tokend: [], direct: [] };
      for (let r = 0; r < loadRounds; r++) {
        for (const who of r % 2 ? ['direct', 'tokend'] : ['tokend', 'direct']) {
          const spec =
            who === 'tokend'
              ? { socket: daemon.socket, method: 'GET', path: '/v1/proxy/work/item' }
              : { port, method: 'GET', path: '/api/item', headers: auth };
          const out = await ctx.runLoad({ ...spec, mode: 'duration', connections: 16, warmupMs, durationMs });
          if (out.ok !== out.requests || out.errors)
            throw new Error(
              `${who}: ${out.requests - out.ok} non-200 answers, ${out.errors} socket errors (${JSON.stringify(out.statuses)})`,
            );
          runs[who].push(out);
        }
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
        row({ scenario, measure: 'p99 latency', t: m('tokend', 'p99'), b: m('direct', 'p99'), unit: 'ms' }),
      ];
      const bytes = streamMb * 1024 * 1024;
      for (const direction of ['down', 'up']) {
        const urlPath = direction === 'down' ? `/download?bytes=${bytes}` : '/upload';
        const direct = await transfer({ host: '127.0.0.1', port }, `/api${urlPath}`, direction, bytes, auth);
        const [viaTokend, growth] = await sampled(daemon.pid, () =>
          transfer({ socketPath: daemon.socket }, `/v1/proxy/work${urlPath}`, direction, bytes),
        );
        const s = `10. ${streamMb >= 1024 ? `${streamMb / 1024} GiB` : `${streamMb} MiB`} streamed ${direction === 'down' ? 'download' : 'upload'} through the proxy`;
        rows.push(
          row({
            scenario: s,
            measure: 'throughput',
            t: viaTokend,
            b: direct,
            unit: 'mbps',
            kind: 'min',
            limit: 0.5,
            baselineLabel: 'the same transfer direct',
          }),
          row({ scenario: s, measure: 'daemon RSS growth while streaming', t: growth, unit: 'mb', kind: 'abs', limit: 64 }),
        );
      }
      return { rows, raw: { proxy: runs } };
    } finally {
      await stopChild(api);
    }
  },
};
