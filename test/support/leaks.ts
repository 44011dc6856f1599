/**
 * Where a secret must never be: any file under a TOKEND_HOME (the database and its WAL,
 * config.json, the key folder) and the daemon's log. Returns each secret found, and where.
 */
import fs from 'node:fs';
import path from 'node:path';

export function leaks(home: string, log: string, secrets: readonly string[]): Array<{ where: string; secret: string }> {
  const files = fs
    .readdirSync(home, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => path.join(e.parentPath, e.name));
  const haystacks: Array<[string, string]> = [
    ...files.map((f): [string, string] => [path.relative(home, f), fs.readFileSync(f).toString('latin1')]),
    ['daemon log', log],
  ];
  const found: Array<{ where: string; secret: string }> = [];
  for (const [where, text] of haystacks) for (const secret of secrets) if (text.includes(secret)) found.push({ where, secret });
  return found;
}
