// The structure check `npm run lint` runs (and so CI): the habits that keep the code a house
// the next engineer can live in, checked, since review alone let one class grow to 1 400 lines.
// Over src/**/*.ts it fails on:
//   - a source file over 800 lines (tests do not count: a test file grows with the behaviours
//     it pins down, and splits by subject when it must);
//   - an import cycle, type-only imports included (a cycle of types is still two files that
//     cannot be read, or split, one without the other);
//   - a comment that cites a bench row ("row 7", "bench/, rows 5 and 9"): rows are renumbered
//     as scenarios come and go, so a comment says why in words, or cites a rule or an RFC.
// Each finding is printed as file:line and a reason; the exit status is 1 when there is one.
//
//   node scripts/check-structure.mjs [ROOT]     ROOT: the repository (default: this one)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const MAX_LINES = 800;
const BENCH_ROW = /\brows?\s+\d+/i;

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const srcDir = path.join(root, 'src');

/** Every .ts file below `dir`, sorted, as absolute paths. */
function tsFiles(dir) {
  return fs
    .readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath ?? e.path, e.name))
    .sort();
}

const rel = (file) => path.relative(root, file);

/** Line count as wc -l gives it: a last line without a newline still counts. */
function lineCount(text) {
  if (text === '') return 0;
  const newlines = text.split('\n').length - 1;
  return text.endsWith('\n') ? newlines : newlines + 1;
}

/**
 * The module specifiers `sf` imports, each with its 1-based line: import and export-from
 * declarations (type-only ones too), `import x = require()`, `import()` calls and
 * `typeof import()` types.
 */
function importsOf(sf) {
  const found = [];
  const add = (lit) => {
    if (lit && ts.isStringLiteralLike(lit))
      found.push({ spec: lit.text, line: sf.getLineAndCharacterOfPosition(lit.getStart(sf)).line + 1 });
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) add(node.moduleReference.expression);
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) add(node.arguments[0]);
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) add(node.argument.literal);
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** The src/ file a relative specifier names (`./x.js` is `./x.ts` on disk), or undefined. */
function resolveImport(from, spec, known) {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(from), spec);
  const candidates = [base, base.replace(/\.(m|c)?js$/, '.$1ts'), `${base}.ts`, path.join(base, 'index.ts')];
  return candidates.find((c) => known.has(c));
}

/** Every comment of `sf` once: its text and where it starts. */
function commentsOf(sf) {
  const text = sf.getFullText();
  const seen = new Map();
  const collect = (ranges) => {
    for (const r of ranges ?? []) if (!seen.has(r.pos)) seen.set(r.pos, text.slice(r.pos, r.end));
  };
  const visit = (node) => {
    collect(ts.getLeadingCommentRanges(text, node.getFullStart()));
    collect(ts.getTrailingCommentRanges(text, node.getEnd()));
    for (const child of node.getChildren(sf)) visit(child);
  };
  visit(sf);
  return [...seen].map(([pos, body]) => ({ pos, body })).sort((x, y) => x.pos - y.pos);
}

/** The bench rows a comment cites, each with its line; a citation may break across lines. */
function benchRowsIn(sf, comment) {
  // Each line of the comment without its `//`, `/*` or ` * ` lead, joined by spaces: offsets
  // into the joined text map back to lines.
  const lines = comment.body.split('\n');
  const startLine = sf.getLineAndCharacterOfPosition(comment.pos).line + 1;
  let joined = '';
  const lineAt = [];
  lines.forEach((l, i) => {
    const bare = l.replace(/^\s*(\/\/+|\/\*+|\*+\/?)?/, '');
    for (let k = 0; k <= bare.length; k++) lineAt.push(startLine + i);
    joined += `${bare} `;
  });
  const hits = [];
  for (const m of joined.matchAll(new RegExp(BENCH_ROW.source, 'gi')))
    hits.push({ line: lineAt[m.index], cited: m[0].replace(/\s+/g, ' ') });
  return hits;
}

/** One import cycle through each strongly connected part of the graph (Tarjan), as a list of edges. */
function cycles(graph) {
  let index = 0;
  const idx = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const parts = [];
  const strong = (v) => {
    idx.set(v, index);
    low.set(v, index++);
    stack.push(v);
    onStack.add(v);
    for (const { to } of graph.get(v)) {
      if (!idx.has(to)) {
        strong(to);
        low.set(v, Math.min(low.get(v), low.get(to)));
      } else if (onStack.has(to)) low.set(v, Math.min(low.get(v), idx.get(to)));
    }
    if (low.get(v) === idx.get(v)) {
      const part = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        part.push(w);
      } while (w !== v);
      parts.push(part);
    }
  };
  for (const v of graph.keys()) if (!idx.has(v)) strong(v);

  const found = [];
  for (const part of parts) {
    const inPart = new Set(part);
    const start = [...part].sort()[0];
    const self = graph.get(start).find((e) => e.to === start);
    if (part.length === 1 && !self) continue;
    // Breadth-first from start back to start, inside the part: the shortest cycle through it.
    const prev = new Map();
    const queue = [start];
    let last;
    while (queue.length && !last) {
      const v = queue.shift();
      for (const e of graph.get(v)) {
        if (!inPart.has(e.to)) continue;
        if (e.to === start) {
          last = e;
          break;
        }
        if (!prev.has(e.to)) {
          prev.set(e.to, e);
          queue.push(e.to);
        }
      }
    }
    const edges = [last];
    for (let e = prev.get(last.from); e; e = prev.get(e.from)) edges.unshift(e);
    found.push(edges);
  }
  return found;
}

const findings = [];
const files = fs.existsSync(srcDir) ? tsFiles(srcDir) : [];
const known = new Set(files);
const graph = new Map();
for (const file of files) {
  const text = fs.readFileSync(file, 'utf8');
  const n = lineCount(text);
  if (n > MAX_LINES)
    findings.push(`${rel(file)}:${MAX_LINES + 1}: ${n} lines, over the ${MAX_LINES} a source file may have: split it by concern`);
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const edges = [];
  for (const { spec, line } of importsOf(sf)) {
    const to = resolveImport(file, spec, known);
    if (to) edges.push({ from: file, to, line });
  }
  graph.set(file, edges);
  for (const c of commentsOf(sf)) {
    for (const hit of benchRowsIn(sf, c)) {
      findings.push(
        `${rel(file)}:${hit.line}: a comment cites a bench row ("${hit.cited}"): rows are renumbered; say why in words, or cite a rule or an RFC`,
      );
    }
  }
}
for (const edges of cycles(graph)) {
  const first = edges[0];
  const chain = edges.map((e) => `${rel(e.from)}:${e.line}`).join(' → ');
  findings.push(`${rel(first.from)}:${first.line}: import cycle: ${chain} → ${rel(first.from)}`);
}

for (const f of findings) console.log(f);
if (findings.length) {
  console.log(`check-structure: ${findings.length} finding${findings.length === 1 ? '' : 's'} in ${files.length} source files`);
  process.exitCode = 1;
} else {
  console.log(
    `check-structure: ${files.length} source files, none over ${MAX_LINES} lines, no import cycle, no comment citing a bench row`,
  );
}
