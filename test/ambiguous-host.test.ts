/**
 * Two accounts tied on a URL, asked through each way a user can name a URL instead of an
 * account: all of them say the same thing, through a real daemon and the real CLI and shim.
 */
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';
import { daemonForSuite, runProcess } from './support/fixtures.js';

const GIT_HELPER = path.join(ROOT, 'bin', 'git-credential-tokend');
const TIE =
  'accounts "dup1" and "dup2" both match https://dup.example.com:8443; make one of their hosts patterns more specific, or configure a username';

describe('a URL two accounts serve equally', () => {
  const suite = daemonForSuite();
  beforeAll(async () => {
    for (const name of ['dup1', 'dup2']) {
      // check=false: sso.example.com does not exist, and a daemon that checks new accounts would refuse it.
      const r = await suite.daemon.request('PUT', `/v1/accounts/${name}?check=false`, {
        issuer: 'https://sso.example.com',
        client_id: 'c',
        hosts: ['dup.example.com'],
      });
      expect(r.status, r.text).toBe(201);
    }
  });

  it('tokend token --url and the git helper give one message naming scheme, host and port', async () => {
    const cli = await suite.daemon.cli(['token', '--url', 'https://dup.example.com:8443/org/repo.git']);
    expect(cli.code).toBe(1);
    expect(cli.stdout).toBe('');
    expect(cli.stderr).toContain(TIE);

    const git = await runProcess(GIT_HELPER, ['get'], {
      env: suite.env,
      stdin: 'protocol=https\nhost=dup.example.com:8443\npath=org/repo.git\n\n',
    });
    // git's rule: nothing on stdout, exit 0, so git asks its next helper; the reason on stderr.
    expect({ code: git.code, stdout: git.stdout, stderr: git.stderr }).toEqual({ code: 0, stdout: '', stderr: `tokend: ${TIE}\n` });
  });

  it('POST /v1/token with a url answers 400 with the same message', async () => {
    const r = await suite.daemon.request('POST', '/v1/token', { url: 'https://dup.example.com:8443/x' });
    expect(r.status).toBe(400);
    expect(r.json.error).toEqual({ code: 'invalid_request', message: TIE });
  });
});
