/**
 * The code in docs/sdk.md compiles, under `strict`, against the SDK's built declarations
 * (packages/client/dist/sdk, what `@tokend/client` ships; dist/sdk for `tokend/client`): an app that copies an example gets no type error,
 * and an example cannot drift from the SDK it documents. Each ```ts block becomes one module
 * of a temporary project; what an example leaves to the app (its UI, its task runner, the
 * ids it works on) is declared once beside them, nothing of tokend's.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './support/daemon.js';

const run = promisify(execFile);
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const DOC = path.join(ROOT, 'docs', 'sdk.md');

/** What the examples take from the app around them. */
const APP = `import type { TokenResponse } from '@tokend/client';
declare global {
  const ui: { show(text: string): void; open(url: string): void };
  const shell: { openExternal(url: string): Promise<void> };
  const app: { on(event: 'open-url', listener: (event: unknown, url: string) => void): void };
  function notify(text: string): void;
  function runTask(token: TokenResponse): Promise<void>;
  const userId: string;
  const taskId: string;
}
export {};
`;

/** The ```ts blocks of a Markdown text, in order. */
function tsBlocks(markdown: string): string[] {
  return [...markdown.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1]!);
}

/** A block as a module: the SDK imported and a client declared where the block does not do it itself. */
function asModule(block: string): string {
  const head = [
    /from '(@tokend|tokend)\/client'/.test(block) ? '' : "import { Tokend, TokendError } from '@tokend/client';",
    /\bconst tokend\b/.test(block) ? '' : 'declare const tokend: Tokend;',
  ];
  return `${head.filter(Boolean).join('\n')}\n${block}\nexport {};\n`;
}

describe('docs/sdk.md', () => {
  let project: string;
  beforeAll(() => {
    for (const built of ['dist', path.join('packages', 'client', 'dist')])
      if (!fs.existsSync(path.join(ROOT, built, 'sdk', 'index.d.ts'))) throw new Error(`${built} is not built: run \`npm run build\``);
    project = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-docs-'));
  });
  afterAll(() => {
    if (project) fs.rmSync(project, { recursive: true, force: true });
  });

  it('has the vault example with one account per task, found and removed by its labels', () => {
    const vault = tsBlocks(fs.readFileSync(DOC, 'utf8')).find((b) => b.includes('authorizeTask'));
    expect(vault).toBeDefined();
    expect(vault).toContain('labels: { user: userId, task: taskId }');
    expect(vault).toContain('tokend.accounts({ labels:');
    expect(vault).toContain('tokend.removeAccounts({ labels:');
    // Never one account shared by every task: a later login would replace an earlier task's grant.
    expect(vault).not.toMatch(/tokend\.(login|token)\('/);
  });

  it('compiles every ```ts block under strict against the built SDK declarations', async () => {
    const blocks = tsBlocks(fs.readFileSync(DOC, 'utf8'));
    expect(blocks.length).toBeGreaterThanOrEqual(6);
    const files = blocks.map((b, i) => {
      const file = `block-${i + 1}.ts`;
      fs.writeFileSync(path.join(project, file), asModule(b));
      return file;
    });
    fs.writeFileSync(path.join(project, 'app.d.ts'), APP);
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'docs-sdk', private: true, type: 'module' }));
    fs.writeFileSync(
      path.join(project, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          // Both packages' SDK as they export it: the built declarations.
          paths: {
            '@tokend/client': [path.join(ROOT, 'packages', 'client', 'dist', 'sdk', 'index.d.ts')],
            'tokend/client': [path.join(ROOT, 'dist', 'sdk', 'index.d.ts')],
          },
          typeRoots: [path.join(ROOT, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['app.d.ts', ...files],
      }),
    );
    const tsc = await run(process.execPath, [TSC, '-p', project], { cwd: project }).catch((err: { stdout: string; stderr: string }) => err);
    const out = `${tsc.stdout}${tsc.stderr}`;
    // A failure names the block: block-N.ts is the N-th ```ts block of docs/sdk.md.
    expect(out).toBe('');
  }, 120_000);
});
