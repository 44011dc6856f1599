/**
 * One route table (src/protocol/routes.ts) for both sides: the daemon serves every pattern
 * in it and registers nothing else, and the client's URLs are built from the same entries.
 */
import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { composeApp } from '../src/daemon/http/compose.js';
import { splitProxyTarget } from '../src/daemon/proxy-path.js';
import { PROXY_PREFIX, ROUTE_PATTERNS, ROUTES, routePath } from '../src/protocol/routes.js';
import { daemonForSuite } from './support/fixtures.js';

/** The daemon's answer to one request: its status and body, without waiting for a stream to end. */
function firstAnswer(socket: string, method: string, urlPath: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { socketPath: socket, method, path: urlPath, headers: { host: 'tokend', 'content-type': 'application/json' }, agent: false },
      (res) => {
        if (res.headers['content-type']?.startsWith('text/event-stream')) {
          resolve({ status: res.statusCode ?? 0, body: '(event stream)' });
          req.destroy();
          return;
        }
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end(method === 'GET' || method === 'DELETE' ? undefined : '{}');
  });
}

const SAMPLE: Record<string, string> = { name: 'nobody', id: 'no-such-login', tool: 'git', action: 'get', '*': 'rest/of/path' };
/** A pattern's parameters, in order: `:name`, or `*` for a trailing wildcard. */
const params = (pattern: string) => [...pattern.matchAll(/:([A-Za-z]+)|\/(\*)$/g)].map((m) => m[1] ?? m[2]!);
const fill = (pattern: string) => pattern.replace(/:([A-Za-z]+)|\*$/g, (_, p: string | undefined) => SAMPLE[p ?? '*'] ?? 'x');

describe('the route table', () => {
  const suite = daemonForSuite();

  it.each(Object.entries(ROUTE_PATTERNS))('the daemon serves %s (%s)', async (_key, pattern) => {
    const answers = await Promise.all(['GET', 'POST', 'PUT', 'DELETE'].map((m) => firstAnswer(suite.daemon.socket, m, fill(pattern))));
    // Some method reaches a handler: anything but the router's own "no route" answer.
    expect(answers.some((a) => !a.body.includes('"no route '))).toBe(true);
  });

  it('the daemon registers no path that is not in the table', () => {
    const { app } = composeApp({} as never); // what the daemon serves, every route group mounted
    const patterns = new Set<string>(Object.values(ROUTE_PATTERNS));
    expect(app.routes.map((r) => r.path).filter((p) => !patterns.has(p))).toEqual([]);
  });

  it('the proxy lane (served before the router) takes the proxy route of the table apart', () => {
    expect(ROUTE_PATTERNS.proxy.startsWith(PROXY_PREFIX)).toBe(true);
    expect(splitProxyTarget(ROUTES.proxy('my api', 'v2/bookings?from=a%20b'))).toEqual({
      name: 'my api',
      rest: 'v2/bookings',
      query: '?from=a%20b',
    });
    expect(splitProxyTarget(ROUTES.token)).toBeUndefined();
  });

  it('a trailing wildcard takes the rest of a path as it is (a proxied API path with its query)', () => {
    expect(routePath('/v1/proxy/:name/*', 'my api', '/v2/bookings?from=a%20b')).toBe('/v1/proxy/my%20api/v2/bookings?from=a%20b');
    expect(routePath('/v1/proxy/:name/*', 'cal', 'v2/x')).toBe('/v1/proxy/cal/v2/x');
  });

  it('the client builds its URLs from the same patterns, each value encoded as one segment', () => {
    expect(ROUTES.health).toBe('/v1/health');
    expect(ROUTES.account('work')).toBe('/v1/accounts/work');
    expect(ROUTES.accountLogin('a b/c')).toBe('/v1/accounts/a%20b%2Fc/login');
    expect(ROUTES.helper('git', 'get')).toBe('/v1/helpers/git/get');
    for (const [key, pattern] of Object.entries(ROUTE_PATTERNS)) {
      const build = ROUTES[key as keyof typeof ROUTES] as string | ((...v: string[]) => string);
      const values = params(pattern).map((p) => SAMPLE[p] ?? 'x');
      expect(typeof build === 'string' ? build : build(...values)).toBe(fill(pattern));
    }
  });
});
