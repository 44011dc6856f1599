import type { Hono } from 'hono';
import { isAccountName } from '../../protocol/names.js';
import { CLIENT_HEADER } from '../../protocol/routes.js';
import { E, TokendError } from '../errors.js';
import { handleHelper, helperHttpResponse, isHelperTool, type HelperDeps, type HelperResult } from '../helper-handlers.js';
import { matchAccount, targetFromUrl, type MatchTarget } from '../match.js';
import type { AppDeps } from './app.js';
import { header, readBody } from './raw-request.js';

type Deps = Omit<AppDeps, 'resolveTarget' | 'extend'>;

/** Only these environment variables of a helper process are forwarded to the daemon. */
const FORWARDED_ENV = ['KUBERNETES_EXEC_INFO', 'TOKEND_ACCOUNT'] as const;

function forwardedEnv(header: string | undefined): Record<string, string> | undefined {
  if (!header) return undefined;
  try {
    const raw = JSON.parse(header) as Record<string, unknown>;
    const env: Record<string, string> = {};
    for (const k of FORWARDED_ENV) if (typeof raw[k] === 'string') env[k] = raw[k] as string;
    return env;
  } catch {
    return undefined;
  }
}

/**
 * The helper protocols spoken by the daemon (DESIGN.md, Helper protocols) and the
 * url/host → account mapping that `POST /v1/token` and `credential/reject` share.
 */
export function mountHelpers(deps: Deps): { resolveTarget: NonNullable<AppDeps['resolveTarget']>; extend: (app: Hono) => void } {
  const accounts = () => deps.config.listAccounts().map(([name, cfg]) => ({ name, hosts: cfg.hosts, username: cfg.username }));

  const match = (target: MatchTarget) => {
    const m = matchAccount(accounts(), target);
    if (m.kind === 'ambiguous') {
      throw E.invalidRequest(
        `accounts "${m.accounts[0]}" and "${m.accounts[1]}" both match ${target.protocol}://${target.host}; make one of their hosts patterns more specific, or configure a username`,
      );
    }
    return m.kind === 'match' ? m.account.name : undefined;
  };

  const resolveTarget = (req: { url?: string; host?: string; username?: string }): string | undefined => {
    const url = req.url ?? (req.host ? `https://${req.host}` : undefined);
    const target = url ? targetFromUrl(url) : undefined;
    if (!target) throw E.invalidRequest(`url: "${(req.url ?? req.host ?? '').slice(0, 200)}" is not a URL tokend can match`);
    if (req.username !== undefined) target.username = req.username;
    return match(target);
  };

  const helperDeps = (client: string | undefined): HelperDeps => ({
    findAccount: (target) => matchAccount(accounts(), target),
    async getToken(account, minTtl) {
      const cfg = deps.config.getAccount(account);
      if (!cfg) throw E.notFound(`no account named "${account}"`);
      const tok = await deps.broker.getToken({ account, min_ttl: minTtl });
      deps.audit.record(account, client, 'token');
      // A preset's username (PROTOCOLS.md §1.6) is in cfg.username already (presets.ts).
      const username = cfg.username;
      return { access_token: tok.access_token, token_type: tok.token_type, expires_at: tok.expires_at, ...(username ? { username } : {}) };
    },
    reject(account, accessToken) {
      deps.broker.reject(account, accessToken);
      deps.audit.record(account, client, 'reject');
    },
    listDockerServers() {
      const out: Record<string, string> = {};
      for (const [name, cfg] of deps.config.listAccounts()) {
        for (const h of cfg.hosts) if (!h.includes('*')) out[h] = cfg.username ?? 'oauth2';
        void name;
      }
      return out;
    },
  });

  /** `tokend token NAME` through build/tokend-fast: the name in, the token out, or the CLI's message and exit status. */
  async function cliToken(body: string, client: string | undefined): Promise<HelperResult> {
    const name = body.trim();
    if (!isAccountName(name)) return { exitCode: 2, stdout: Buffer.alloc(0), stderr: `tokend: "${name.slice(0, 80)}" is not a valid account name` };
    try {
      const tok = await deps.broker.getToken({ account: name });
      deps.audit.record(name, client, 'token');
      return { exitCode: 0, stdout: Buffer.from(`${tok.access_token}\n`) };
    } catch (err) {
      if (!(err instanceof TokendError)) throw err;
      const needsLogin = err.code === 'reauth_required' || err.code === 'login_pending';
      return { exitCode: needsLogin ? 3 : 1, stdout: Buffer.alloc(0), stderr: `tokend: ${err.message}` };
    }
  }

  const extend = (app: Hono) => {
    app.post('/v1/helpers/:tool/:action', async (c) => {
      const tool = c.req.param('tool');
      const action = c.req.param('action');
      const client = header(c, CLIENT_HEADER);
      const stdin = await readBody(c);
      let result: HelperResult;
      if (tool === 'cli' && action === 'token') {
        result = await cliToken(stdin.toString('utf8'), client);
      } else if (isHelperTool(tool)) {
        const env = forwardedEnv(header(c, 'x-tokend-env')) ?? {};
        // `?account=NAME` names the account where a byte pipe cannot send headers (the
        // kubectl fast path in bin/tokend: `tokend kubectl-credential NAME`).
        const account = c.req.query('account');
        if (account !== undefined && isAccountName(account)) env.TOKEND_ACCOUNT = account;
        result = await handleHelper(tool, action, { stdin, env }, helperDeps(client));
      } else {
        throw E.notFound(`no helper protocol "${tool.slice(0, 40)}"`);
      }
      const res = helperHttpResponse(result);
      // The CLI's own statuses (2 usage, 3 reauth) pass through; helpers use 0/1.
      res.headers['x-tokend-exit'] = String(result.exitCode);
      return c.body(new Uint8Array(res.body), res.status, res.headers);
    });
  };

  return { resolveTarget, extend };
}
