/**
 * A test certificate authority and a server certificate it signs (for `localhost` and
 * 127.0.0.1), made with the real `openssl` in a temporary folder: a private IdP's TLS,
 * trusted only by whoever is given the CA.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface TestCa {
  /** PEM of the CA certificate, and the file holding it. */
  ca: string;
  caFile: string;
  /** The server's key and certificate (PEM). */
  key: string;
  cert: string;
  cleanup(): void;
}

export function makeTestCa(): TestCa {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-ca-'));
  const f = (n: string) => path.join(dir, n);
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  ssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.pem'),
    '-days',
    '2',
    '-subj',
    '/CN=tokend test CA',
  );
  ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', '/CN=localhost');
  fs.writeFileSync(f('san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  ssl(
    'x509',
    '-req',
    '-in',
    f('server.csr'),
    '-CA',
    f('ca.pem'),
    '-CAkey',
    f('ca.key'),
    '-CAcreateserial',
    '-out',
    f('server.pem'),
    '-days',
    '2',
    '-extfile',
    f('san.cnf'),
  );
  const read = (n: string) => fs.readFileSync(f(n), 'utf8');
  return {
    ca: read('ca.pem'),
    caFile: f('ca.pem'),
    key: read('server.key'),
    cert: read('server.pem'),
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}
