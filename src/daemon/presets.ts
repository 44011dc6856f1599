import type { AccountConfigInput } from '../protocol/api.js';
import { E } from './errors.js';

/**
 * Provider presets: defaults an account gets from `--preset`, written into its config
 * (so config.json shows what is in force); anything given explicitly wins. Endpoints
 * are each provider's documented ones; usernames are what each forge expects in front
 * of an OAuth token (docs/helpers.md).
 */
interface Preset {
  defaults: Partial<AccountConfigInput>;
  /**
   * Defaults computed from the merged config, for what hangs off `base_url` (a sandbox or
   * self-hosted instance moves every endpoint and the API at once); explicit options win.
   */
  derive?: (cfg: Partial<AccountConfigInput>) => Partial<AccountConfigInput>;
  /** What the user must still give, and how to say it. */
  requires?: Array<{ field: keyof AccountConfigInput; hint: string }>;
}

/** `base_url` without a trailing slash, to append paths to. */
const root = (cfg: Partial<AccountConfigInput>) => (cfg.base_url ?? '').replace(/\/+$/, '');

export const PRESETS: Record<string, Preset> = {
  github: {
    // git over https to GitHub takes an OAuth token as a Basic password; git-credential-oauth
    // sends Bearer only to forges known to take it (Bitbucket, Gitea, Codeberg, Gerrit).
    defaults: {
      git_auth: 'basic',
      authorization_endpoint: 'https://github.com/login/oauth/authorize',
      token_endpoint: 'https://github.com/login/oauth/access_token',
      device_authorization_endpoint: 'https://github.com/login/device/code',
      hosts: ['github.com'],
      scopes: ['repo'],
      flow: 'device',
    },
  },
  gitlab: {
    // GitLab long required the magic username `oauth2` (gitlab issue 349461); older
    // self-managed instances still do.
    defaults: {
      issuer: 'https://gitlab.com',
      hosts: ['gitlab.com'],
      scopes: ['read_repository', 'write_repository'],
      username: 'oauth2',
      git_auth: 'basic',
    },
  },
  bitbucket: {
    defaults: {
      authorization_endpoint: 'https://bitbucket.org/site/oauth2/authorize',
      token_endpoint: 'https://bitbucket.org/site/oauth2/access_token',
      hosts: ['bitbucket.org'],
      username: 'x-token-auth',
      flow: 'browser',
    },
  },
  google: {
    defaults: { issuer: 'https://accounts.google.com', scopes: ['openid', 'email'], flow: 'browser' },
  },
  microsoft: {
    // The multi-tenant `common` endpoints: discovery there names a `{tenantid}` issuer that
    // no client can match, so the endpoints are explicit. Give --issuer for one tenant.
    defaults: {
      authorization_endpoint: 'https://login.microsoftonline.com/common/oauth2/v2.0/authorize',
      token_endpoint: 'https://login.microsoftonline.com/common/oauth2/v2.0/token',
      device_authorization_endpoint: 'https://login.microsoftonline.com/common/oauth2/v2.0/devicecode',
      scopes: ['openid', 'offline_access'],
    },
  },
  keycloak: {
    // offline_access asks for an offline token: it outlives SSO sessions, but Keycloak
    // forgets one nobody used for Offline Session Idle (30 days by default), so a
    // keep-alive refresh runs before that.
    defaults: { scopes: ['openid', 'offline_access'], refresh_idle_days: 30 },
    requires: [{ field: 'issuer', hint: '--issuer https://HOST/realms/REALM' }],
  },
  'real-debrid': {
    // The "opensource apps" device workflow: a public client id that mints per-user credentials
    // (an app's own --client-id and secret use the mobile apps' workflow instead).
    defaults: { driver: 'real-debrid', client_id: 'X245A4XAIBGVM', base_url: 'https://api.real-debrid.com', flow: 'device' },
    derive: (c) => ({ api_base: `${root(c)}/rest/1.0` }),
  },
  'cal-com': {
    // Cal.com Platform managed users: tokens come from the platform (`tokend import`), the
    // OAuth client's secret refreshes them and force-refreshes them when refused.
    defaults: { driver: 'cal-com', base_url: 'https://api.cal.com' },
    derive: (c) => ({ api_base: `${root(c)}/v2` }),
    requires: [
      { field: 'client_id', hint: "--client-id CLIENT_ID (the platform OAuth client's id)" },
      { field: 'managed_user_id', hint: '--managed-user-id N' },
    ],
  },
  amp: {
    // Blockstream AMP: a username and password obtain a token (`Authorization: token …`);
    // the password flow makes the username part of the grant's identity.
    defaults: { driver: 'amp', base_url: 'https://amp.blockstream.com/api', flow: 'password' },
    derive: (c) => ({ api_base: root(c) }),
    requires: [{ field: 'username', hint: '--username U (and the password on stdin with --password-stdin)' }],
  },
};

/** The account's config with its preset's defaults under it; 400 for an unknown preset or a missing must-have. */
export function applyPreset<T extends Partial<AccountConfigInput>>(cfg: T): T {
  if (!cfg.preset) return cfg;
  const preset = Object.hasOwn(PRESETS, cfg.preset) ? PRESETS[cfg.preset] : undefined;
  if (!preset) {
    throw E.invalidRequest(`preset: unknown preset "${cfg.preset.slice(0, 40)}" (known: ${Object.keys(PRESETS).join(', ')})`);
  }
  const merged = { ...preset.defaults } as T;
  // An empty list is what the schema defaults an omitted --scope/--host to, and `oauth2` an
  // omitted driver: not a choice, so a preset's own driver (real-debrid, cal-com, amp) stands.
  const explicit = (k: string, v: unknown) =>
    !(v === undefined || (Array.isArray(v) && v.length === 0) || (k === 'driver' && v === 'oauth2'));
  for (const [k, v] of Object.entries(cfg)) if (explicit(k, v)) (merged as Record<string, unknown>)[k] = v;
  for (const [k, v] of Object.entries(preset.derive?.(merged) ?? {})) {
    if (!explicit(k, (cfg as Record<string, unknown>)[k])) (merged as Record<string, unknown>)[k] = v;
  }
  for (const r of preset.requires ?? []) {
    if (merged[r.field] === undefined) throw E.invalidRequest(`${r.field}: preset "${cfg.preset}" needs it (${r.hint})`);
  }
  return merged;
}

/**
 * A stored config with the values its preset derived taken out again (where they are still
 * what was derived), so a patch that moves `base_url` moves what hangs off it too.
 */
export function withoutDerived<T extends Partial<AccountConfigInput>>(cfg: T): T {
  const preset = cfg.preset && Object.hasOwn(PRESETS, cfg.preset) ? PRESETS[cfg.preset] : undefined;
  if (!preset?.derive) return cfg;
  const out = { ...cfg } as Record<string, unknown>;
  for (const [k, v] of Object.entries(preset.derive(cfg))) if (out[k] === v) delete out[k];
  return out as T;
}
