/*
 * Bundles an app (`apps/<name>/src/main.ts`) into `apps/<name>/dist/main.js` for plain Node:
 * workspace packages (TypeScript sources) are inlined, npm dependencies stay external and are
 * installed as production dependencies where the bundle runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild';

const appDir = path.resolve(process.argv[2] ?? '.');
const pkg = JSON.parse(fs.readFileSync(path.join(appDir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
const external = new Set<string>();
const workspaceDirs = new Set<string>();
const collect = (deps: Record<string, string> | undefined, from: string) => {
  for (const [name, range] of Object.entries(deps ?? {})) {
    if (range.startsWith('workspace:')) {
      const dir = path.join(from, 'node_modules', name);
      workspaceDirs.add(fs.realpathSync(dir));
      collect(JSON.parse(fs.readFileSync(path.join(fs.realpathSync(dir), 'package.json'), 'utf8')).dependencies, fs.realpathSync(dir));
    } else external.add(name);
  }
};
collect(pkg.dependencies, appDir);
// The bundle resolves its externals from the app's own node_modules, so the app must declare them.
const undeclared = [...external].filter((n) => !pkg.dependencies?.[n]);
if (undeclared.length > 0) {
  process.stderr.write(`${path.basename(appDir)}: add to its package.json dependencies: ${undeclared.join(', ')}\n`);
  process.exit(1);
}

await build({
  entryPoints: [path.join(appDir, 'src/main.ts')],
  outfile: path.join(appDir, 'dist/main.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Workspace packages that also build for npm point `exports` at dist/; the bundle takes their sources.
  conditions: ['@darkroom/source'],
  sourcemap: true,
  external: [...external].flatMap((n) => [n, `${n}/*`]),
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
});
// Lua scripts are read at run time from ./lua beside the module that loads them: in the bundle,
// that is dist/lua.
for (const dir of workspaceDirs) {
  const lua = path.join(dir, 'src/lua');
  if (fs.existsSync(lua)) fs.cpSync(lua, path.join(appDir, 'dist/lua'), { recursive: true });
}
process.stdout.write(
  `built ${path.relative(process.cwd(), path.join(appDir, 'dist/main.js'))} (external: ${[...external].sort().join(', ')})\n`,
);
