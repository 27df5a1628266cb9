export * from './device.ts';
export * from './edit.ts';
export * from './onnx.ts';
export * from './onnx-graph.ts';
export * from './registry.ts';
export * from './synthetic.ts';
export * from './types.ts';
export * from './upscale.ts';
