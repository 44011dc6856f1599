import { describe, expect, it } from 'vitest';
import { applyPreset, PRESETS } from '../src/daemon/presets.js';
import { useDaemon } from './support/fixtures.js';

describe('presets', () => {
  it('fill defaults under what the user gave', () => {
    const cfg = applyPreset({ preset: 'gitlab', client_id: 'x', hosts: ['git.example.com'] });
    expect(cfg).toMatchObject({ issuer: 'https://gitlab.com', username: 'oauth2', hosts: ['git.example.com'], client_id: 'x' });
    expect(applyPreset({ client_id: 'x' })).toEqual({ client_id: 'x' });
  });

  it('refuse an unknown preset, naming the known ones, and a missing must-have', () => {
    expect(() => applyPreset({ preset: 'nope', client_id: 'x' })).toThrow(/known: github, gitlab/);
    expect(() => applyPreset({ preset: 'keycloak', client_id: 'x' })).toThrow(/realms\/REALM/);
  });

  it('only name https endpoints', () => {
    for (const [name, p] of Object.entries(PRESETS)) {
      for (const [k, v] of Object.entries(p.defaults)) {
        if (k === 'issuer' || k.endsWith('_endpoint')) expect([name, k, String(v).startsWith('https://')]).toEqual([name, k, true]);
      }
    }
  });
});

describe('tokend add --preset, through the daemon', () => {
  const { d } = useDaemon();

  it('stores the preset defaults in the account, explicit options winning', async () => {
    const r = await d.cli(['add', 'gh', '--preset', 'github', '--client-id', 'Iv1.abc', '--scope', 'read:user', '--json']);
    expect(r.code).toBe(0);
    const view = JSON.parse(r.stdout);
    expect(view).toMatchObject({ preset: 'github', hosts: ['github.com'], scopes: ['read:user'], flow: 'device' });
  });

  it('says what a preset still needs', async () => {
    const r = await d.cli(['add', 'kc', '--preset', 'keycloak', '--client-id', 'cli']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--issuer https://HOST/realms/REALM');
    const unknown = await d.cli(['add', 'x', '--preset', 'nope', '--client-id', 'cli']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('known: github');
  });
});
