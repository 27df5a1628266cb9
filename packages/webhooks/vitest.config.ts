import { defineProject } from 'vitest/config';
import { sharedResolve, sharedTestOptions } from '../../vitest.shared.ts';

export default defineProject({
  ...sharedResolve,
  test: { ...sharedTestOptions, name: 'webhooks' },
});
