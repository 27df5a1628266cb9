/*
 * Builds the installable package: dist/index.js, one ESM bundle that inlines what it uses of the
 * workspace contracts (so it needs only Node ≥ 20), and dist/*.d.ts, the declarations of src/
 * with the contract types printed expanded (src/contract-types.ts), so they name no workspace
 * package and no zod either. Fails when either still points outside the package.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import ts from 'typescript';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'src');
const dist = path.join(root, 'dist');
fs.rmSync(dist, { recursive: true, force: true });

await build({
  entryPoints: [path.join(src, 'index.ts')],
  outfile: path.join(dist, 'index.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
});
const js = fs.readFileSync(path.join(dist, 'index.js'), 'utf8');
const foreign = [...js.matchAll(/(?:from|import)\s*\(?\s*["']([^"']+)["']/g)].map((m) => m[1]).filter((s) => !s?.startsWith('node:'));
if (foreign.length > 0) fail(`dist/index.js imports ${foreign.join(', ')}: only node: modules may stay external`);

// The package's own compiler options (tsconfig.json), emitting declarations only.
const config = ts.getParsedCommandLineOfConfigFile(
  path.join(root, 'tsconfig.json'),
  {},
  {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => fail(ts.flattenDiagnosticMessageText(d.messageText, '\n')),
  },
);
if (!config) fail('tsconfig.json: unreadable');
const options: ts.CompilerOptions = { ...config.options, noEmit: false, declaration: true, emitDeclarationOnly: true };
const program = ts.createProgram([path.join(src, 'index.ts')], options);
const errors = ts.getPreEmitDiagnostics(program);
if (errors.length > 0)
  fail(ts.formatDiagnostics(errors, { getCanonicalFileName: (f) => f, getCurrentDirectory: () => root, getNewLine: () => '\n' }));
const checker = program.getTypeChecker();
// A contract type, expanded: its own name stays only at the top.
const flags = ts.TypeFormatFlags.NoTruncation | ts.TypeFormatFlags.InTypeAlias;

// Workspace modules the bundle inlines whole, whose declarations ship beside the package's own.
const vendored = new Map([['@darkroom/contracts/webhook-signature', path.resolve(root, '../contracts/src/webhook-signature.ts')]]);
const vendoredName = (file: string) => [...vendored].find(([, f]) => f === file)?.[0];

fs.mkdirSync(dist, { recursive: true });
for (const file of program.getSourceFiles()) {
  const vendor = vendoredName(file.fileName);
  if (path.dirname(file.fileName) !== src && !vendor) continue;
  const name = path.basename(file.fileName, '.ts');
  let text = '';
  if (name === 'contract-types') {
    const symbol = checker.getSymbolAtLocation(file);
    if (!symbol) fail('src/contract-types.ts exports nothing');
    const lines = checker.getExportsOfModule(symbol).map((s) => {
      const docs = ts.displayPartsToString(s.getDocumentationComment(checker));
      const type = checker.typeToString(checker.getDeclaredTypeOfSymbol(s), undefined, flags);
      return `${docs ? `/** ${docs} */\n` : ''}export type ${s.name} = ${type};\n`;
    });
    text = lines.join('');
  } else {
    // A vendored file comes through node_modules, which a program never emits: it gets its own.
    const from = vendor ? ts.createProgram([file.fileName], options) : program;
    from.emit(
      from.getSourceFile(file.fileName),
      (_out, data) => {
        text = data;
      },
      undefined,
      true,
    );
  }
  // Relative imports name the emitted .js files (the declarations sit beside nothing else).
  text = text.replace(/(["'])(\.\.?\/[^"']+)\.ts\1/g, '$1$2.js$1');
  for (const [specifier, f] of vendored) text = text.replaceAll(`'${specifier}'`, `'./${path.basename(f, '.ts')}.js'`);
  const outside = [...text.matchAll(/(?:from|import\()\s*["']([^"'.][^"']*)["']/g)].map((m) => m[1]).filter((s) => !s?.startsWith('node:'));
  if (outside.length > 0) fail(`dist/${name}.d.ts names ${outside.join(', ')}: add the type to src/contract-types.ts`);
  fs.writeFileSync(path.join(dist, `${name}.d.ts`), text);
}
// The license travels with the package; the checkout keeps one copy, at its root.
const license = path.resolve(root, '../../LICENSE');
if (fs.existsSync(license)) fs.copyFileSync(license, path.join(root, 'LICENSE'));
else process.stderr.write('no LICENSE at the checkout root: the package ships without its text\n');
process.stdout.write(`built ${path.relative(process.cwd(), dist)}\n`);

function fail(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(1);
}
