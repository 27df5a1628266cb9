/** Options every package's test project shares (project configs do not inherit the root's). */
export const sharedTestOptions = {
  // End-to-end tests start Redis, the api and workers, and wait for jobs to run.
  testTimeout: 60_000,
  hookTimeout: 90_000,
  include: ['test/**/*.test.ts'],
};
