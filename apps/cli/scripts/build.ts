/*
 * Builds the installable `darkroom` command: dist/darkroom.js, one ESM file with a shebang that
 * inlines the client and everything else it imports, so installing the package needs nothing
 * but Node ≥ 20. Fails when the bundle still imports anything beyond Node's own modules.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'dist/darkroom.js');
fs.rmSync(path.join(root, 'dist'), { recursive: true, force: true });

await build({
  entryPoints: [path.join(root, 'src/main.ts')],
  outfile: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Workspace packages from their TypeScript sources: no other package needs building first.
  conditions: ['@darkroom/source'],
  banner: { js: '#!/usr/bin/env node' },
  logLevel: 'warning',
});
const js = fs.readFileSync(out, 'utf8');
const foreign = [...js.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']|require\(["']([^"']+)["']\)/g)]
  .map((m) => m[1] ?? m[2])
  .filter((s) => !s?.startsWith('node:'));
if (foreign.length > 0) {
  process.stderr.write(`dist/darkroom.js imports ${foreign.join(', ')}: only node: modules may stay external\n`);
  process.exit(1);
}
fs.chmodSync(out, 0o755);
// The license travels with the package; the checkout keeps one copy, at its root.
const license = path.resolve(root, '../../LICENSE');
if (fs.existsSync(license)) fs.copyFileSync(license, path.join(root, 'LICENSE'));
else process.stderr.write('no LICENSE at the checkout root: the package ships without its text\n');
process.stdout.write(`built ${path.relative(process.cwd(), out)} (${Math.round(js.length / 1024)} KiB)\n`);
