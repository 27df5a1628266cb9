export * from './edit.ts';
export * from './registry.ts';
export * from './synthetic.ts';
export * from './types.ts';
