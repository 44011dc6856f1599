// Writes dist/openapi.json: the socket API as OpenAPI 3.1, generated from the protocol's
// zod schemas (src/protocol/openapi.ts), the same document the daemon serves at
// GET /v1/openapi.json. Runs after tsc in `npm run build`.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { buildOpenApi } = await import(path.join(root, 'dist', 'protocol', 'openapi.js'));
const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
fs.writeFileSync(path.join(root, 'dist', 'openapi.json'), JSON.stringify(buildOpenApi(version), null, 2) + '\n');
