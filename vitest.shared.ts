/**
 * Resolution every project shares (tests run as server code): a workspace package that also builds for npm (its `exports`
 * point at dist/) resolves to its TypeScript sources under this condition, so tests need no build.
 * The rest are Vite's defaults for server code, which setting `conditions` replaces.
 */
const conditions = ['@darkroom/source', 'module', 'node', 'development|production'];
export const sharedResolve = { ssr: { resolve: { conditions } } };

/** Options every package's test project shares (project configs do not inherit the root's). */
export const sharedTestOptions = {
  // End-to-end tests start Redis, the api and workers, and wait for jobs to run.
  testTimeout: 60_000,
  hookTimeout: 90_000,
  include: ['test/**/*.test.ts'],
};
