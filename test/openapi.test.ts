/**
 * The OpenAPI document of the socket API: generated at build time from the protocol's zod
 * schemas (dist/openapi.json), served by the daemon at GET /v1/openapi.json, and in step
 * with what the daemon really registers, so a client generated from it reaches every route.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { composeApp } from '../src/daemon/http/compose.js';
import { OPERATIONS, openApiPath } from '../src/protocol/openapi.js';
import { ROUTE_PATTERNS } from '../src/protocol/routes.js';
import { ROOT } from './support/daemon.js';
import { daemonForSuite } from './support/fixtures.js';

type Doc = {
  openapi: string;
  paths: Record<string, Record<string, { responses: Record<string, unknown> }>>;
  components: { schemas: Record<string, unknown> };
};
const built = (): Doc => JSON.parse(fs.readFileSync(path.join(ROOT, 'dist', 'openapi.json'), 'utf8'));

describe('OpenAPI', () => {
  const suite = daemonForSuite();

  it('the daemon serves the document the build wrote', async () => {
    const r = await suite.daemon.request('GET', '/v1/openapi.json');
    expect(r.status).toBe(200);
    expect(r.json).toEqual(built());
    expect(r.json.openapi).toBe('3.1.0');
  });

  it('documents every route the daemon registers, with its method, and nothing it does not', () => {
    const { app } = composeApp({} as never); // what the daemon serves, every route group mounted
    const registered = new Set(app.routes.map((r) => `${r.method.toLowerCase()} ${openApiPath(r.path)}`));
    // Served in front of the router by node:http lanes: the token route (also in the router) and the proxy.
    for (const m of ['get', 'post', 'put', 'patch', 'delete']) registered.add(`${m} ${openApiPath(ROUTE_PATTERNS.proxy)}`);
    const documented = new Set<string>();
    for (const [p, methods] of Object.entries(built().paths)) for (const m of Object.keys(methods)) documented.add(`${m} ${p}`);
    expect([...registered].filter((r) => !documented.has(r))).toEqual([]);
    expect([...documented].filter((d) => !registered.has(d))).toEqual([]);
    // And every route of the table has an operation.
    expect(new Set(OPERATIONS.map((o) => o.route))).toEqual(new Set(Object.keys(ROUTE_PATTERNS)));
  });

  it('describes requests and answers with the protocol schemas, and every reference resolves', () => {
    const doc = built();
    const token = doc.paths['/v1/token'].post as unknown as { requestBody: any; responses: any };
    expect(Object.keys(token.requestBody.content['application/json'].schema.properties)).toEqual(
      expect.arrayContaining(['account', 'url', 'min_ttl', 'scope', 'audience']),
    );
    expect(token.responses['200'].content['application/json'].schema.required).toEqual(
      expect.arrayContaining(['access_token', 'token_type']),
    );
    const text = JSON.stringify(doc);
    for (const [, ref] of text.matchAll(/"\$ref":"#\/components\/schemas\/([^"]+)"/g)) expect(doc.components.schemas[ref]).toBeDefined();
    for (const methods of Object.values(doc.paths)) for (const op of Object.values(methods)) expect(op.responses.default).toBeDefined();
  });
});
