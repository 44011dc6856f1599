import type { AccountConfigInput } from '../protocol/api.js';
import { E } from './errors.js';

/**
 * Provider presets: defaults an account gets from `--preset`, written into its config
 * (so config.json shows what is in force); anything given explicitly wins. Endpoints
 * are each provider's documented ones; usernames are what each forge expects in front
 * of an OAuth token (PROTOCOLS.md §1.6).
 */
interface Preset {
  defaults: Partial<AccountConfigInput>;
  /** What the user must still give, and how to say it. */
  requires?: { field: keyof AccountConfigInput; hint: string };
}

export const PRESETS: Record<string, Preset> = {
  github: {
    defaults: {
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
    defaults: { issuer: 'https://gitlab.com', hosts: ['gitlab.com'], scopes: ['read_repository', 'write_repository'], username: 'oauth2' },
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
    // offline_access asks for an offline token (PROTOCOLS.md §7d): it outlives SSO sessions.
    defaults: { scopes: ['openid', 'offline_access'] },
    requires: { field: 'issuer', hint: '--issuer https://HOST/realms/REALM' },
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
  // An empty list is what the schema defaults an omitted --scope/--host to: not a choice.
  for (const [k, v] of Object.entries(cfg)) {
    if (v === undefined || (Array.isArray(v) && v.length === 0)) continue;
    (merged as Record<string, unknown>)[k] = v;
  }
  if (preset.requires && merged[preset.requires.field] === undefined) {
    throw E.invalidRequest(`${preset.requires.field}: preset "${cfg.preset}" needs it (${preset.requires.hint})`);
  }
  return merged;
}
