import { stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { OutputFormat } from '@darkroom/contracts';
import { createLogger } from '@darkroom/core';
import sharp from 'sharp';
import type { PipelineContext, PipelineInput } from '../src/types.ts';

export const FIXTURES = fileURLToPath(new URL('../../../../shared/fixtures/images/', import.meta.url));

export function fixture(name: string): string {
  return FIXTURES + name;
}

export interface TestCtx extends PipelineContext {
  controller: AbortController;
  progress: { percent: number; message?: string }[];
}

export function makeCtx(maxImagePixels = 268_402_689): TestCtx {
  const controller = new AbortController();
  const progress: TestCtx['progress'] = [];
  return {
    controller,
    progress,
    signal: controller.signal,
    reportProgress: async (percent, message) => {
      progress.push({ percent, message });
    },
    logger: createLogger({ name: 'test', level: 'silent' }),
    limits: { maxImagePixels },
  };
}

export async function makeInput(name: string): Promise<PipelineInput> {
  const path = fixture(name);
  const meta = await sharp(path).metadata();
  const format = (meta.format === 'heif' ? 'avif' : meta.format) as OutputFormat;
  return {
    path,
    ref: {
      key: 'x',
      bytes: (await stat(path)).size,
      sha256: '',
      format,
      contentType: `image/${format}`,
      width: meta.width,
      height: meta.height,
      pages: meta.pages,
    },
  };
}
