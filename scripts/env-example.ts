/*
 * `pnpm env:example`: writes .env.example and README's configuration table from the settings'
 * descriptions (packages/runtime/src/config-docs.ts), so neither can drift from the schema.
 * config-docs.test.ts fails when either is out of date.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderEnvExample, withConfigTable } from '../packages/runtime/src/config-docs.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
fs.writeFileSync(path.join(root, '.env.example'), renderEnvExample());
const readme = path.join(root, 'README.md');
fs.writeFileSync(readme, withConfigTable(fs.readFileSync(readme, 'utf8')));
process.stdout.write('wrote .env.example and the configuration table in README.md\n');
