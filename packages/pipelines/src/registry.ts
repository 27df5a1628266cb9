import { editPipeline } from './edit.ts';
import { syntheticPipeline } from './synthetic.ts';
import type { Pipeline } from './types.ts';

// biome-ignore lint/suspicious/noExplicitAny: each pipeline has its own params type; the worker parses them with spec.params.
export const PIPELINES: Record<string, Pipeline<any>> = {
  edit: editPipeline,
  synthetic: syntheticPipeline,
};

export function getPipeline(name: string): Pipeline | undefined {
  return Object.hasOwn(PIPELINES, name) ? PIPELINES[name] : undefined;
}
