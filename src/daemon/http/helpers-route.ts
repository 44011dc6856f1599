import type { Hono } from 'hono';
import type { AppDeps } from './app.js';

/** Helper protocols spoken by the daemon (`POST /v1/helpers/:tool/:action`); filled in by the helpers feature. */
export function mountHelpers(_deps: Omit<AppDeps, 'resolveTarget' | 'extend'>): {
  resolveTarget: AppDeps['resolveTarget'];
  extend: (app: Hono) => void;
} {
  return { resolveTarget: undefined, extend: () => {} };
}
