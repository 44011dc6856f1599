/**
 * What the test IdP counts as a replay (test/support/idp.ts), which the crash loop's claim
 * rests on: a used refresh token presented again is one replay and revokes its grant
 * (RFC 9700 §4.14.2); presented once more, it is not found, and no second replay is counted.
 * `replaysByGrant` and `grantOf` name the grant, so a test can count lost grants, not requests.
 */
import { expect, it } from 'vitest';
import { useIdp } from './support/fixtures.js';

const idp = useIdp();

async function refresh(refreshToken: string): Promise<{ status: number; body: Record<string, string> }> {
  const r = await fetch(`${idp.issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from('conf:conf-secret').toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
  });
  return { status: r.status, body: (await r.json()) as Record<string, string> };
}

it('a spent refresh token presented twice: one replay of its grant, then not found', async () => {
  const issued = await idp.issueRefreshToken('conf');
  const grant = idp.grantOf(issued.refresh_token);
  expect(grant).toMatch(/.+/);
  idp.resetStats();
  const rotated = await refresh(issued.refresh_token);
  expect(rotated.status).toBe(200);
  expect(idp.grantOf(rotated.body.refresh_token)).toBe(grant);

  expect((await refresh(issued.refresh_token)).body.error).toBe('invalid_grant');
  expect(idp.replaysByGrant()).toEqual(new Map([[grant, [issued.refresh_token]]]));
  // The grant is revoked: its newest refresh token died too.
  expect((await refresh(rotated.body.refresh_token)).body.error).toBe('invalid_grant');

  expect((await refresh(issued.refresh_token)).body.error).toBe('invalid_grant');
  expect(idp.stats.replays).toBe(1);
  expect(idp.stats.refreshErrors.map((e) => e.detail)).toEqual([
    'refresh token already used',
    'refresh token not found',
    'refresh token not found',
  ]);
  expect(idp.replaysByGrant().get(grant!)).toHaveLength(1);
  idp.resetStats();
  expect(idp.replaysByGrant().size).toBe(0);
});
