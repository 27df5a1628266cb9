#!/usr/bin/env node
// The `darkroom` command in a checkout. Runs the bundle once built (`pnpm --filter @darkroom/cli
// build` writes dist/darkroom.js, the file the npm package ships as its bin); without one, it
// runs the TypeScript sources through tsx, resolving the workspace packages to their sources
// (the `@darkroom/source` export condition).
import { existsSync } from 'node:fs';
import { register } from 'node:module';

const bundle = new URL('../dist/darkroom.js', import.meta.url);
if (existsSync(bundle)) {
  await import(bundle.href);
} else {
  const hook = `export function resolve(specifier, context, next) {
    return next(specifier, { ...context, conditions: [...context.conditions, '@darkroom/source'] });
  }`;
  register(`data:text/javascript,${encodeURIComponent(hook)}`);
  const { register: tsx } = await import('tsx/esm/api');
  tsx();
  await import(new URL('../src/main.ts', import.meta.url).href);
}
