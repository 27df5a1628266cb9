export * from './comfyui-standin.ts';
export * from './fixtures.ts';
export * from './object-store.ts';
export * from './onnx-model.ts';
export * from './processes.ts';
export * from './redis.ts';
export * from './system.ts';
export * from './wait.ts';
