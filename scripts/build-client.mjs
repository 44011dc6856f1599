// Builds `@tokend/client` (packages/client/dist) from the SDK's sources in src/sdk and the
// src/protocol modules they import: the package has no runtime dependency, so neither its
// JavaScript nor its declarations may name one.
// - JavaScript: tsc's output, less every module the SDK's runtime import graph does not reach
//   (protocol/api.ts and events.ts hold the zod schemas; the SDK imports only their types).
// - Declarations: tsc's, except for the protocol modules that import zod: their wire types
//   (`type TokenResponse = z.infer<typeof TokenResponse>`) are written out as the plain
//   object types the compiler resolves them to, so an app type-checks without zod installed.
// Then the declarations are type-checked on their own (skipLibCheck off), and the build
// fails on anything left that names a package.
import fs from 'node:fs';
import { builtinModules } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = path.join(root, 'packages', 'client');
const dist = path.join(pkg, 'dist');
const src = path.join(root, 'src');
const ENTRY = path.join(dist, 'sdk', 'index.js');

const fail = (message) => {
  process.stderr.write(`build-client: ${message}\n`);
  process.exit(1);
};
const report = (diagnostics) => {
  if (diagnostics.length === 0) return;
  const host = { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' };
  fail(`\n${ts.formatDiagnosticsWithColorAndContext(diagnostics, host)}`);
};

// 1. tsc, as packages/client/tsconfig.json says.
const parsed = ts.getParsedCommandLineOfConfigFile(
  path.join(pkg, 'tsconfig.json'),
  {},
  { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => report([d]) },
);
report(parsed.errors);
fs.rmSync(dist, { recursive: true, force: true });
const program = ts.createProgram(parsed.fileNames, parsed.options);
const emitted = program.emit();
report([...ts.getPreEmitDiagnostics(program), ...emitted.diagnostics]);
const checker = program.getTypeChecker();

const files = (dir) => fs.readdirSync(dir, { recursive: true }).map((f) => path.join(dir, f));
const SPECIFIER =
  /(?:^|[\s;])(?:import|export)\s[^'";]*?\bfrom\s*['"]([^'"]+)['"]|(?:^|[\s;])import\s*['"]([^'"]+)['"]|\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g;
const isPackage = (spec) => !spec.startsWith('.') && !spec.startsWith('node:') && !builtinModules.includes(spec);

// 2. Only what the SDK loads: drop the modules its runtime import graph does not reach.
const reached = new Set();
const visit = (file) => {
  if (reached.has(file)) return;
  reached.add(file);
  for (const m of fs.readFileSync(file, 'utf8').matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (isPackage(spec)) fail(`${path.relative(dist, file)} imports the package "${spec}": @tokend/client has no dependencies`);
    if (spec.startsWith('.')) visit(path.resolve(path.dirname(file), spec));
  }
};
visit(ENTRY);
for (const f of files(dist)) if (f.endsWith('.js') && !reached.has(f)) fs.rmSync(f);

// 3. Declarations that name zod: the wire types written out in full.
const FLAGS = ts.NodeBuilderFlags.NoTruncation | ts.NodeBuilderFlags.InTypeAlias | ts.NodeBuilderFlags.MultilineObjectLiterals;
const printer = ts.createPrinter({ newLine: ts.NewLineKind.LineFeed });

/** The `/** … *\/` comment above a declaration's statement, if any. */
function docComment(decl) {
  const statement = ts.isVariableDeclaration(decl) ? decl.parent.parent : decl;
  const sf = statement.getSourceFile();
  const ranges = ts.getLeadingCommentRanges(sf.text, statement.getFullStart()) ?? [];
  const doc = ranges.filter((r) => sf.text.startsWith('/**', r.pos)).at(-1);
  return doc ? `${sf.text.slice(doc.pos, doc.end)}\n` : '';
}

function plainTypes(sourceFile) {
  const out = [];
  for (const sym of checker.getExportsOfModule(checker.getSymbolAtLocation(sourceFile))) {
    const decl = sym.declarations?.find((d) => ts.isTypeAliasDeclaration(d) || ts.isInterfaceDeclaration(d));
    // Generic types (EventFields<T>) are the daemon's helpers, not wire types.
    if (!decl || decl.typeParameters?.length) continue;
    // An interface is written by hand, in plain types: as it is (the check below would show a name it leaves unresolved).
    if (ts.isInterfaceDeclaration(decl)) {
      out.push(`${docComment(decl)}${decl.getText(sourceFile)}\n`);
      continue;
    }
    const node = checker.typeToTypeNode(checker.getDeclaredTypeOfSymbol(sym), undefined, FLAGS);
    if (!node) fail(`cannot write out the type ${sym.name} of ${path.relative(root, sourceFile.fileName)}`);
    const doc = docComment(decl) || (sym.valueDeclaration ? docComment(sym.valueDeclaration) : '');
    out.push(`${doc}export type ${sym.name} = ${printer.printNode(ts.EmitHint.Unspecified, node, sourceFile)};\n`);
  }
  return out.join('\n');
}

for (const f of files(dist)) {
  if (!f.endsWith('.d.ts') || !/from ['"]zod['"]/.test(fs.readFileSync(f, 'utf8'))) continue;
  if (reached.has(f.replace(/\.d\.ts$/, '.js'))) fail(`${path.relative(dist, f)}: the SDK loads this module, which imports zod`);
  const source = program.getSourceFile(path.join(src, path.relative(dist, f)).replace(/\.d\.ts$/, '.ts'));
  if (!source) fail(`no source for ${path.relative(dist, f)}`);
  const header = `// The wire types of src/${path.relative(dist, f).replace(/\.d\.ts$/, '.ts')}, written out (scripts/build-client.mjs).\n`;
  fs.writeFileSync(f, header + plainTypes(source));
}

// 4. The declarations alone, as a strict app with skipLibCheck off sees them.
const declarations = files(dist).filter((f) => f.endsWith('.d.ts'));
for (const f of declarations) {
  for (const m of fs.readFileSync(f, 'utf8').matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (isPackage(spec)) fail(`${path.relative(dist, f)} names the package "${spec}"`);
  }
}
const check = ts.createProgram([path.join(dist, 'sdk', 'index.d.ts')], {
  strict: true,
  skipLibCheck: false,
  noEmit: true,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022,
  types: ['node'],
  typeRoots: [path.join(root, 'node_modules', '@types')],
});
report(ts.getPreEmitDiagnostics(check).filter((d) => d.file?.fileName.startsWith(dist) ?? true));
