/**
 * The daemon's one-file bundle (scripts/bundle.mjs), which bin/tokend starts: what it leaves
 * out to start sooner, and that what it keeps still works.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';
import { useDaemon } from './support/fixtures.js';

// The ES module bundle and the CommonJS one bin/tokend starts through the code cache.
const BUNDLES = ['main.bundle.js', 'main.bundle.cjs'].map((f) => path.join(ROOT, 'dist', 'daemon', f));

describe('the daemon bundle', () => {
  const { d } = useDaemon();

  it.each(BUNDLES)("%s carries zod's English messages only, not its other locales", (bundle) => {
    const text = fs.readFileSync(bundle, 'utf8');
    // index.js is the stand-in that re-exports en.js (named in a comment of the bundle).
    const locales = [...new Set(text.match(/zod\/v4\/locales\/[\w-]+\.js/g) ?? [])].filter((l) => !l.endsWith('/index.js'));
    expect(locales).toEqual(['zod/v4/locales/en.js']);
  });

  it('still answers a request it cannot parse with the field and an English message', async () => {
    const r = await d.request('POST', '/v1/token', { account: 'work', min_ttl: 'soon' });
    expect(r.status).toBe(400);
    expect(r.json.error.code).toBe('invalid_request');
    expect(r.json.error.message).toMatch(/min_ttl/);
    expect(r.json.error.message).toMatch(/expected number/i);
  });
});
