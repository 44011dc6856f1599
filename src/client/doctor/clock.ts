import type { AccountView } from '../../protocol/api.js';
import { inSeconds, type Check, type DoctorContext } from './check.js';
import type { ConfigRead } from './config-read.js';
import { shq } from './shell.js';

/** How long each provider gets to answer the clock probe. */
const PROVIDER_TIMEOUT_MS = 3000;
/** Clock skew thresholds. */
const SKEW_WARN_MS = 30_000;
const SKEW_FAIL_MS = 5 * 60_000;

/** Each provider's clock against ours, from the Date header of its public discovery document (never a secret sent). */
export async function clockChecks(ctx: DoctorContext): Promise<Check[]> {
  const [accounts, config] = await Promise.all([ctx.accounts, ctx.config]);
  return probeClocks(clockTargets(accounts.list, config), ctx.fetch, ctx.platform);
}

interface ClockTarget {
  origin: string;
  url: string;
  accounts: string[];
}

/** One probe per provider origin: its discovery document (public), else its token endpoint. */
function clockTargets(accounts: AccountView[] | undefined, config: ConfigRead): ClockTarget[] {
  const byOrigin = new Map<string, ClockTarget>();
  const add = (name: string, issuer: string | undefined, tokenEndpoint: string | undefined) => {
    let url: string | undefined;
    if (issuer && URL.canParse(issuer)) url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    else if (tokenEndpoint && URL.canParse(tokenEndpoint)) url = tokenEndpoint;
    if (!url) return;
    const u = new URL(url);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return;
    const t = byOrigin.get(u.origin) ?? { origin: u.origin, url, accounts: [] };
    if (!t.accounts.includes(name)) t.accounts.push(name);
    byOrigin.set(u.origin, t);
  };
  const names = new Set<string>([...(accounts ?? []).map((a) => a.name), ...config.accounts.keys()]);
  for (const name of names) {
    const view = accounts?.find((a) => a.name === name);
    const cfg = config.accounts.get(name);
    add(name, view?.issuer ?? cfg?.issuer, cfg?.token_endpoint);
  }
  return [...byOrigin.values()];
}

async function probeClocks(targets: ClockTarget[], fetchFn: typeof fetch, platform: NodeJS.Platform): Promise<Check[]> {
  const sync =
    platform === 'darwin'
      ? 'sudo sntp -sS time.apple.com'
      : 'timedatectl status   # "System clock synchronized: no"? then: sudo timedatectl set-ntp true';
  return Promise.all(
    targets.map(async (t): Promise<Check> => {
      const id = `clock:${t.origin}`;
      const who = `(account${t.accounts.length === 1 ? '' : 's'} ${t.accounts.join(', ')})`;
      const t0 = Date.now();
      let date: string | null;
      try {
        const res = await fetchFn(t.url, {
          method: 'GET',
          redirect: 'manual',
          headers: { accept: 'application/json', 'user-agent': 'tokend-doctor' },
          signal: AbortSignal.timeout(PROVIDER_TIMEOUT_MS),
        });
        date = res.headers.get('date');
        await res.body?.cancel().catch(() => undefined);
      } catch (err) {
        const e = err as Error & { cause?: { code?: string; message?: string } };
        const why =
          e.name === 'TimeoutError' || e.name === 'AbortError'
            ? `no answer within ${PROVIDER_TIMEOUT_MS / 1000} s`
            : (e.cause?.code ?? e.cause?.message ?? e.message);
        return { id, status: 'warn', message: `cannot reach ${t.url} ${who} to compare clocks: ${why}`, fix: `curl -sSI '${shq(t.url)}'` };
      }
      const t1 = Date.now();
      const theirs = date ? Date.parse(date) : NaN;
      if (Number.isNaN(theirs)) return { id, status: 'info', message: `${t.origin} ${who} sent no usable Date header; clock not compared` };
      // Date has whole seconds: their clock is in [theirs, theirs + 1 s); ours is the middle of the round trip.
      const skew = theirs + 500 - (t0 + t1) / 2;
      const abs = Math.abs(skew);
      const sense = `${inSeconds(abs)} ${skew > 0 ? 'ahead of' : 'behind'} ours`;
      if (abs > SKEW_FAIL_MS || abs > SKEW_WARN_MS) {
        return {
          id,
          status: abs > SKEW_FAIL_MS ? 'fail' : 'warn',
          message: `the clock of ${t.origin} ${who} is ${sense} (skew ${Math.round(skew / 1000)} s): expiry times and token validation go wrong; if our clock is right, the provider's is off`,
          fix: sync,
        };
      }
      return {
        id,
        status: 'ok',
        message: `the clock of ${t.origin} ${who} agrees with ours (within ${Math.max(1, Math.round(abs / 1000))} s)`,
      };
    }),
  );
}
