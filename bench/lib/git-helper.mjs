// Rows 3 and 4 time the git helper (GIT_HELPER_BIN: the native one when built, else the sh
// shim), only a byte pipe to the daemon's helper route: measured only when both are there.
import fs from 'node:fs';
import { GIT_HELPER_BIN } from './processes.mjs';

/** Why the git helper cannot be measured (a reason for the "not measured" row), or undefined when it can. */
export async function gitHelperMissing(daemon, input) {
  if (!fs.existsSync(GIT_HELPER_BIN)) return `${GIT_HELPER_BIN} is missing`;
  const r = await daemon.request('POST', '/v1/helpers/git/get', input, { 'content-type': 'application/octet-stream' });
  if (r.status !== 200) return `POST /v1/helpers/git/get answered ${r.status}`;
  if (!r.text.includes('password=')) return 'POST /v1/helpers/git/get answered without a password';
  return undefined;
}
