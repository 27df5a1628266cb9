import fs from 'node:fs';
import path from 'node:path';
import { encodeOnnxModel, invertModel } from '@darkroom/pipelines';

/*
 * Model directories for onnx tests, with tiny models written by the pipelines' own ONNX writer
 * (no download, no converter): a colour inverter and a ×2 nearest-neighbour upscaler.
 */

export { encodeOnnxModel, invertModel };

/**
 * A ×2 nearest-neighbour upscaler in NHWC with input in [0, 255]: Transpose to NCHW, Resize
 * (nearest, scales 1,1,2,2), Transpose back. For testing layouts, ranges and scale factors.
 */
export function nearest2xNhwcModel(): Buffer {
  return encodeOnnxModel({
    name: 'nearest2x',
    inputs: [{ name: 'x', shape: ['n', 'h', 'w', 3] }],
    outputs: [{ name: 'y', shape: ['n', 'h2', 'w2', 3] }],
    initializers: [{ name: 'scales', dims: [4], values: [1, 1, 2, 2] }],
    nodes: [
      { op: 'Transpose', inputs: ['x'], outputs: ['nchw'], attributes: [{ name: 'perm', ints: [0, 3, 1, 2] }] },
      { op: 'Resize', inputs: ['nchw', '', 'scales'], outputs: ['up'], attributes: [] },
      { op: 'Transpose', inputs: ['up'], outputs: ['y'], attributes: [{ name: 'perm', ints: [0, 2, 3, 1] }] },
    ],
  });
}

export interface ModelDirEntry {
  name: string;
  model: Buffer;
  manifest: Record<string, unknown>;
}

/** Writes a model directory as the onnx pipeline reads it: `<dir>/<name>/model.onnx` + `manifest.json`. */
export function writeModelDir(dir: string, models: ModelDirEntry[]): string {
  fs.mkdirSync(dir, { recursive: true });
  for (const m of models) {
    const sub = path.join(dir, m.name);
    fs.mkdirSync(sub, { recursive: true });
    fs.writeFileSync(path.join(sub, 'model.onnx'), m.model);
    fs.writeFileSync(path.join(sub, 'manifest.json'), JSON.stringify(m.manifest, null, 2));
  }
  return dir;
}

/** The models the onnx tests use: `invert` (NCHW, [0,1]) and `nearest2x` (NHWC, [0,255], ×2). */
export function writeTestModels(dir: string): string {
  return writeModelDir(dir, [
    {
      name: 'invert',
      model: invertModel(),
      manifest: { description: 'Inverts colours (1x1 convolution).', input: 'image', output: 'inverted', layout: 'NCHW', range: [0, 1] },
    },
    {
      name: 'nearest2x',
      model: nearest2xNhwcModel(),
      manifest: { description: 'Nearest-neighbour x2.', input: 'x', output: 'y', layout: 'NHWC', range: [0, 255], scale: 2 },
    },
  ]);
}
