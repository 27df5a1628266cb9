export * from './types.ts';
export * from './edit.ts';
export * from './synthetic.ts';
export * from './registry.ts';
