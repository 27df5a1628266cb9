/**
 * Resolution every project shares (tests run as server code): a workspace package that also builds for npm (its `exports`
 * point at dist/) resolves to its TypeScript sources under this condition, so tests need no build.
 * The rest are Node's own (not "module": a package's bundler-only ESM build, such as the AWS SDK's
 * dist-es, would then be loaded by Node, which cannot resolve its extensionless imports).
 */
const conditions = ['@darkroom/source', 'node', 'development|production'];
export const sharedResolve = { ssr: { resolve: { conditions } } };

/** Options every package's test project shares (project configs do not inherit the root's). */
export const sharedTestOptions = {
  // End-to-end tests start Redis, the api and workers, and wait for jobs to run.
  testTimeout: 60_000,
  hookTimeout: 90_000,
  include: ['test/**/*.test.ts'],
};
