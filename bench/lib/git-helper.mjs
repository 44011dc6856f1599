// Rows 3 and 4 time bin/git-credential-tokend, which is only a byte pipe to the daemon's
// helper route: both are measured only when both are there.
import fs from 'node:fs';
import { GIT_HELPER_BIN } from './processes.mjs';

/** Why the git helper cannot be measured (a reason for the "not measured" row), or undefined when it can. */
export async function gitHelperMissing(daemon, input) {
  if (!fs.existsSync(GIT_HELPER_BIN)) return 'bin/git-credential-tokend is missing';
  const r = await daemon.request('POST', '/v1/helpers/git/get', input, { 'content-type': 'application/octet-stream' });
  if (r.status !== 200) return `POST /v1/helpers/git/get answered ${r.status}`;
  if (!r.text.includes('password=')) return 'POST /v1/helpers/git/get answered without a password';
  return undefined;
}
