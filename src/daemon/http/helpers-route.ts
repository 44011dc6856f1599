import type { Hono } from 'hono';
import {
  CLI_TOKEN,
  HELPER_ACCOUNT_QUERY,
  HELPER_ENV_HEADER,
  helperHttpResponse,
  isHelperTool,
  parseHelperEnv,
  type HelperResult,
} from '../../protocol/helper-http.js';
import { EXIT } from '../../protocol/errors.js';
import { isAccountName } from '../../protocol/names.js';
import { CLIENT_HEADER, ROUTE_PATTERNS } from '../../protocol/routes.js';
import type { CallerIdentity } from '../caller/proc.js';
import { E, ApiError } from '../errors.js';
import { DEFAULT_GIT_USERNAME, handleHelper, type HelperDeps } from '../helper-handlers.js';
import { matchAccount, resolveTarget, type TargetRequest } from '../match.js';
import type { AppDeps } from './app.js';
import { callerOfContext, header, readBody } from './raw-request.js';

type Deps = Omit<AppDeps, 'resolveTarget' | 'extend'> & Required<Pick<AppDeps, 'access'>>;

/** One `POST /v1/helpers/TOOL/ACTION`, as the Hono route and the lane (helper-lane.ts) read it. */
export interface HelperCall {
  tool: string;
  action: string;
  /** The tool's stdin: the request body. */
  stdin: Buffer;
  /** The User-Agent the caller declared. */
  client: string | undefined;
  /** The verified caller (caller/connection.ts). */
  by: CallerIdentity | undefined;
  /** The helper's forwarded environment, as its header came (HELPER_ENV_HEADER). */
  envHeader: string | undefined;
  /** `?account=NAME`, as a byte pipe names the account. */
  account: string | undefined;
}

/** What the helper asks for (stdout, stderr, exit status); rejects with the wire error (an unknown tool). */
export type HelperHandler = (call: HelperCall) => Promise<HelperResult>;

/**
 * The helper protocols spoken by the daemon (docs/helpers.md) and the url/host → account
 * mapping over the configured accounts that `POST /v1/token` and `credential/reject` share.
 */
export function mountHelpers(deps: Deps): {
  resolveTarget: NonNullable<AppDeps['resolveTarget']>;
  extend: (app: Hono) => void;
  handle: HelperHandler;
} {
  const accounts = () => deps.config.listAccounts().map(([name, cfg]) => ({ name, hosts: cfg.hosts, username: cfg.username }));

  const resolve = (req: TargetRequest) => resolveTarget(accounts(), req);

  const helperDeps = (client: string | undefined, by: CallerIdentity | undefined): HelperDeps => ({
    findAccount: (target) => matchAccount(accounts(), target),
    async getToken(account, minTtl) {
      const cfg = deps.config.getAccount(account);
      if (!cfg) throw E.notFound(`no account named "${account}"`);
      const allowed = deps.access.check(account, by, client);
      if (allowed) await allowed;
      // RFC 9449 §7: a DPoP-bound token is refused without a proof per request, which git,
      // docker, kubectl and Bazel cannot send: serve them nothing rather than a useless token.
      if (cfg.dpop) {
        throw E.invalidRequest(
          `account "${account}" uses DPoP: its tokens need a proof signed by the daemon with every request, which a credential helper's tool cannot send (use the proxy, or turn DPoP off with tokend set ${account} --no-dpop --replace-grant)`,
          { account },
        );
      }
      const tok = await deps.broker.getToken({ account, min_ttl: minTtl });
      const written = deps.audit.record(account, client, 'token', by);
      if (written) await written; // its row first (audit.ts)
      // A preset's username (docs/helpers.md) is in cfg.username already (presets.ts).
      const username = cfg.username;
      return {
        access_token: tok.access_token,
        token_type: tok.token_type,
        expires_at: tok.expires_at,
        ...(username ? { username } : {}),
        ...(cfg.git_auth ? { gitAuth: cfg.git_auth } : {}),
      };
    },
    reject(account, accessToken) {
      deps.broker.reject(account, accessToken);
      deps.audit.record(account, client, 'reject', by);
    },
    listDockerServers() {
      const out: Record<string, string> = {};
      for (const [, cfg] of deps.config.listAccounts()) {
        for (const h of cfg.hosts) if (!h.includes('*')) out[h] = cfg.username ?? DEFAULT_GIT_USERNAME;
      }
      return out;
    },
  });

  /** `tokend token NAME` through build/tokend-fast: the name in, the token out, or the CLI's message and exit status. */
  async function cliToken(body: string, client: string | undefined, by: CallerIdentity | undefined): Promise<HelperResult> {
    const name = body.trim();
    if (!isAccountName(name))
      return { exitCode: EXIT.usage, stdout: Buffer.alloc(0), stderr: `tokend: "${name.slice(0, 80)}" is not a valid account name` };
    try {
      const allowed = deps.access.check(name, by, client);
      if (allowed) await allowed;
      const tok = await deps.broker.getToken({ account: name });
      const written = deps.audit.record(name, client, 'token', by);
      if (written) await written; // its row first (audit.ts)
      return { exitCode: 0, stdout: Buffer.from(`${tok.access_token}\n`) };
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const needsLogin = err.code === 'reauth_required' || err.code === 'login_pending';
      return { exitCode: needsLogin ? EXIT.reauth : EXIT.error, stdout: Buffer.alloc(0), stderr: `tokend: ${err.message}` };
    }
  }

  /** The route's one handler, for the Hono route below and the lane in front of it (entry.ts). */
  const handle: HelperHandler = async ({ tool, action, stdin, client, by, envHeader, account }) => {
    if (tool === CLI_TOKEN.tool && action === CLI_TOKEN.action) return cliToken(stdin.toString('utf8'), client, by);
    if (!isHelperTool(tool)) throw E.notFound(`no helper protocol "${tool.slice(0, 40)}"`);
    const env = parseHelperEnv(envHeader);
    if (account !== undefined && isAccountName(account)) env.TOKEND_ACCOUNT = account;
    return handleHelper(tool, action, { stdin, env }, helperDeps(client, by));
  };

  const extend = (app: Hono) => {
    app.post(ROUTE_PATTERNS.helper, async (c) => {
      const client = header(c, CLIENT_HEADER);
      const by = callerOfContext(c);
      const stdin = await readBody(c);
      const res = helperHttpResponse(
        await handle({
          tool: c.req.param('tool'),
          action: c.req.param('action'),
          stdin,
          client,
          by,
          envHeader: header(c, HELPER_ENV_HEADER),
          account: c.req.query(HELPER_ACCOUNT_QUERY),
        }),
      );
      return c.body(new Uint8Array(res.body), res.status as 200, res.headers);
    });
  };

  return { resolveTarget: resolve, extend, handle };
}
