/*
 * `pnpm api:doc`: writes the generated reference in docs/api.md (routes, schemas, headers, error
 * codes) from the OpenAPI document the api serves, so the page cannot drift from the route table
 * and the contracts. apps/api/test/unit-api-doc.test.ts fails when it is out of date.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { apiDocument, withApiReference } from '../apps/api/src/api-reference.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const page = path.join(root, 'docs', 'api.md');
fs.writeFileSync(page, withApiReference(fs.readFileSync(page, 'utf8'), apiDocument()));
process.stdout.write('wrote the generated reference in docs/api.md\n');
