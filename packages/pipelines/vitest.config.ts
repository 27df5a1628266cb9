import { defineConfig } from 'vitest/config';

// Named so the root's `--project pipelines` finds this package when the root config lists packages/*.
export default defineConfig({
  test: { name: 'pipelines', include: ['test/**/*.test.ts'] },
});
