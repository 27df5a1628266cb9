import fs from 'node:fs';
import path from 'node:path';

/*
 * Tiny ONNX models written byte by byte, so tests need no model download and no converter: a
 * minimal protobuf writer and just enough of onnx.proto (ModelProto, GraphProto, NodeProto,
 * TensorProto, ValueInfoProto) to describe a float32 graph of standard operators.
 *
 * Field numbers from onnx/onnx.proto: ModelProto {ir_version 1, producer_name 2, graph 7,
 * opset_import 8}; OperatorSetIdProto {domain 1, version 2}; GraphProto {node 1, name 2,
 * initializer 5, input 11, output 12}; NodeProto {input 1, output 2, name 3, op_type 4,
 * attribute 5}; AttributeProto {name 1, f 2, i 3, ints 8, type 20}; TensorProto {dims 1,
 * data_type 2, name 8, raw_data 9}; ValueInfoProto {name 1, type 2}; TypeProto {tensor_type 1};
 * TypeProto.Tensor {elem_type 1, shape 2}; TensorShapeProto {dim 1}; Dimension {dim_value 1,
 * dim_param 2}.
 */

class ProtoWriter {
  readonly #parts: Buffer[] = [];

  #varint(n: bigint | number): void {
    let v = BigInt.asUintN(64, BigInt(n));
    const bytes: number[] = [];
    do {
      let b = Number(v & 0x7fn);
      v >>= 7n;
      if (v > 0n) b |= 0x80;
      bytes.push(b);
    } while (v > 0n);
    this.#parts.push(Buffer.from(bytes));
  }
  #key(field: number, wire: number): void {
    this.#varint((field << 3) | wire);
  }
  int(field: number, value: number | bigint): this {
    this.#key(field, 0);
    this.#varint(value);
    return this;
  }
  bytes(field: number, value: Uint8Array): this {
    this.#key(field, 2);
    this.#varint(value.length);
    this.#parts.push(Buffer.from(value));
    return this;
  }
  string(field: number, value: string): this {
    return this.bytes(field, Buffer.from(value, 'utf8'));
  }
  message(field: number, build: (w: ProtoWriter) => void): this {
    const w = new ProtoWriter();
    build(w);
    return this.bytes(field, w.finish());
  }
  float(field: number, value: number): this {
    this.#key(field, 5);
    const b = Buffer.alloc(4);
    b.writeFloatLE(value);
    this.#parts.push(b);
    return this;
  }
  finish(): Buffer {
    return Buffer.concat(this.#parts);
  }
}

export const ONNX_FLOAT = 1;

/** A dimension: a fixed size, or a symbolic name for a dynamic one. */
export type Dim = number | string;

export interface OnnxTensor {
  name: string;
  dims: number[];
  /** float32 values, row-major. */
  values: number[] | Float32Array;
}

export type OnnxAttribute = { name: string } & ({ i: number } | { f: number } | { ints: number[] });

export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  name?: string;
  attributes?: OnnxAttribute[];
}

export interface OnnxGraph {
  name?: string;
  inputs: { name: string; shape: Dim[] }[];
  outputs: { name: string; shape: Dim[] }[];
  nodes: OnnxNode[];
  initializers?: OnnxTensor[];
  /** Default opset 13. */
  opset?: number;
}

const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_INTS = 7;

function valueInfo(w: ProtoWriter, v: { name: string; shape: Dim[] }): void {
  w.string(1, v.name);
  w.message(2, (type) =>
    type.message(1, (tensor) => {
      tensor.int(1, ONNX_FLOAT);
      tensor.message(2, (shape) => {
        for (const d of v.shape) shape.message(1, (dim) => (typeof d === 'number' ? dim.int(1, d) : dim.string(2, d)));
      });
    }),
  );
}

/** Encodes a float32 graph as the bytes of an ONNX ModelProto (IR version 7, opset 13 by default). */
export function encodeOnnxModel(g: OnnxGraph): Buffer {
  const m = new ProtoWriter();
  m.int(1, 7);
  m.string(2, 'darkroom');
  m.message(7, (graph) => {
    for (const n of g.nodes) {
      graph.message(1, (node) => {
        for (const i of n.inputs) node.string(1, i);
        for (const o of n.outputs) node.string(2, o);
        if (n.name) node.string(3, n.name);
        node.string(4, n.op);
        for (const a of n.attributes ?? []) {
          node.message(5, (attr) => {
            attr.string(1, a.name);
            if ('f' in a) attr.float(2, a.f).int(20, ATTR_FLOAT);
            else if ('i' in a) attr.int(3, a.i).int(20, ATTR_INT);
            else {
              for (const v of a.ints) attr.int(8, v);
              attr.int(20, ATTR_INTS);
            }
          });
        }
      });
    }
    graph.string(2, g.name ?? 'graph');
    for (const t of g.initializers ?? []) {
      graph.message(5, (tensor) => {
        for (const d of t.dims) tensor.int(1, d);
        tensor.int(2, ONNX_FLOAT);
        tensor.string(8, t.name);
        const data = Float32Array.from(t.values);
        tensor.bytes(9, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      });
    }
    for (const i of g.inputs) graph.message(11, (w) => valueInfo(w, i));
    for (const o of g.outputs) graph.message(12, (w) => valueInfo(w, o));
  });
  m.message(8, (opset) => opset.string(1, '').int(2, g.opset ?? 13));
  return m.finish();
}

/**
 * A colour-inverting model: a 1×1 convolution with weights -1 on the diagonal and bias 1, so on
 * input in [0, 1] each channel becomes 1 − value. NCHW, 3 channels, any height and width.
 */
export function invertModel(opts: { input?: string; output?: string; size?: [number, number] } = {}): Buffer {
  const input = opts.input ?? 'image';
  const output = opts.output ?? 'inverted';
  const [w, h]: [Dim, Dim] = opts.size ?? ['width', 'height'];
  const weights = [-1, 0, 0, 0, -1, 0, 0, 0, -1];
  return encodeOnnxModel({
    name: 'invert',
    inputs: [{ name: input, shape: [1, 3, h, w] }],
    outputs: [{ name: output, shape: [1, 3, h, w] }],
    initializers: [
      { name: 'W', dims: [3, 3, 1, 1], values: weights },
      { name: 'B', dims: [3], values: [1, 1, 1] },
    ],
    nodes: [
      { op: 'Conv', inputs: [input, 'W', 'B'], outputs: [output], name: 'invert', attributes: [{ name: 'kernel_shape', ints: [1, 1] }] },
    ],
  });
}

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
