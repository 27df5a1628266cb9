/*
 * The bench lives outside the workspace packages, so it borrows their dependencies by path: the
 * exact copies (same files, so the same module instances) that @darkroom/jobs and
 * @darkroom/testing load. Nothing is installed for the bench.
 */

export type { QueueOptions } from '../../packages/jobs/node_modules/bullmq/dist/esm/index.js';
export { Job, Queue, QueueEvents, Worker } from '../../packages/jobs/node_modules/bullmq/dist/esm/index.js';
export { Redis } from '../../packages/testing/node_modules/ioredis/built/index.js';
export { default as sharp } from '../../packages/testing/node_modules/sharp/dist/index.mjs';
