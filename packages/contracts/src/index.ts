export * from './failures.ts';
export * from './jobs.ts';
export * from './openapi.ts';
export * from './pipelines.ts';
export * from './priority.ts';
export * from './problem.ts';
export * from './queue.ts';
export * from './webhook-signature.ts';
