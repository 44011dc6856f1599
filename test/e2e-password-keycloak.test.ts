/**
 * The password grant (RFC 6749 §4.3) and the keycloak preset against the real
 * oidc-provider (with the password grant registered in it): the password is stored
 * encrypted and used to obtain and to recover; a Keycloak-style account asks for an
 * offline token, keeps it alive, and revokes it at the realm's endpoint on logout.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { useDaemon, useIdp } from './support/fixtures.js';
import { TEST_PASSWORD } from './support/idp.js';

const idp = useIdp();
// Each test starts its daemon.
const { d, start } = useDaemon({ lifetime: 'manual', settings: { max_refreshes_per_minute: 1000 } });
let home: string;

async function daemon(): Promise<void> {
  home = (await start()).home;
}

describe('the password grant', () => {
  it('obtains with the stored password at add, refreshes, and recovers with it when the refresh token is refused', async () => {
    await daemon();
    const add = await d.cli(
      [
        'add',
        'pw',
        '--issuer',
        idp.issuer,
        '--client-id',
        'conf',
        '--client-secret-stdin',
        '--password-stdin',
        '--flow',
        'password',
        '--username',
        'test-user',
        '--scope',
        'openid offline_access api',
      ],
      `conf-secret\n${TEST_PASSWORD}\n`,
    );
    expect(add.code, add.stderr).toBe(0);
    expect(idp.stats.grants.password).toBe(1); // the check obtained the first grant
    const view = JSON.parse((await d.cli(['status', 'pw', '--json'])).stdout);
    expect(view).toMatchObject({ status: 'active', has_password: true, has_refresh_token: true, flow: 'password' });
    const tok = await d.cli(['token', 'pw']);
    expect((await idp.introspect(tok.stdout.trim())).active).toBe(true);
    expect(idp.stats.grants.password).toBe(1);

    idp.resetStats();
    expect((await d.cli(['refresh', 'pw'])).code).toBe(0);
    expect(idp.stats.refreshes).toBe(1);

    // The provider refuses the refresh token: the stored password gets a new grant.
    idp.setFault({ kind: 'invalid_grant', times: 1 });
    const r = await d.cli(['refresh', 'pw']);
    expect(r.code, r.stderr).toBe(0);
    expect(idp.stats.grants.password).toBe(1);
    expect((await idp.introspect((await d.cli(['token', 'pw'])).stdout.trim())).active).toBe(true);
    expect(d.logs).toContain('recovered the grant without the user');

    // The password is nowhere in clear.
    for (const f of [path.join(home, 'config', 'config.json'), path.join(home, 'data', 'tokend.db')]) {
      expect(fs.readFileSync(f).includes(TEST_PASSWORD)).toBe(false);
    }
    expect(d.logs).not.toContain(TEST_PASSWORD);
  });

  it('refuses a wrong password at add, naming the fix, and saves nothing', async () => {
    await daemon();
    const add = await d.cli(
      [
        'add',
        'pw',
        '--issuer',
        idp.issuer,
        '--client-id',
        'conf',
        '--client-secret-stdin',
        '--password-stdin',
        '--flow',
        'password',
        '--username',
        'test-user',
      ],
      'conf-secret\nwrong-password\n',
    );
    expect(add.code).toBe(1);
    expect(add.stderr).toContain('--username and the password');
    expect(add.stderr).not.toContain('wrong-password');
    expect((await d.cli(['status', 'pw'])).code).toBe(1);
  });
});

describe('the keycloak preset', () => {
  it('asks for an offline token, keeps it alive, and revokes it on logout', async () => {
    await daemon();
    const add = await d.cli(
      ['add', 'kc', '--preset', 'keycloak', '--issuer', idp.issuer, '--client-id', 'conf', '--client-secret-stdin', '--json'],
      'conf-secret\n',
    );
    expect(add.code, add.stderr).toBe(0);
    const cfg = JSON.parse(fs.readFileSync(path.join(home, 'config', 'config.json'), 'utf8')).accounts.kc;
    expect(cfg).toMatchObject({ scopes: ['openid', 'offline_access'], refresh_idle_days: 30 });
    const issued = await idp.issueRefreshToken('conf', 'openid offline_access');
    expect((await d.cli(['import', 'kc', '--refresh-token-stdin'], issued.refresh_token)).code).toBe(0);
    const rt = idp.issuedRefreshTokens().at(-1)!;
    expect((await idp.introspect(rt)).active).toBe(true);
    const out = await d.cli(['logout', 'kc']);
    expect(out.code).toBe(0);
    expect((await idp.introspect(rt)).active).toBe(false);
  });
});
