export * from './jobs.ts';
export * from './openapi.ts';
export * from './pipelines.ts';
export * from './priority.ts';
export * from './problem.ts';
export * from './queue.ts';
