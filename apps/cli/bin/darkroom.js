#!/usr/bin/env node
// The `darkroom` command. Runs the bundle where the package was built (`pnpm --filter @darkroom/cli build`
// writes dist/main.js, which needs only Node ≥ 20 and the npm dependencies declared in package.json);
// in a workspace checkout without a build, it runs the TypeScript sources through tsx.
import { existsSync } from 'node:fs';

const bundle = new URL('../dist/main.js', import.meta.url);
if (existsSync(bundle)) {
  await import(bundle.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('../src/main.ts', import.meta.url).href);
}
