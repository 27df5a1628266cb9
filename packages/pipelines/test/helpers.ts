import { stat } from 'node:fs/promises';
import nodePath from 'node:path';
import { fileURLToPath } from 'node:url';
import type { OutputFormat } from '@darkroom/contracts';
import { createLogger, type Logger } from '@darkroom/runtime';
import sharp, { type Sharp } from 'sharp';
import type { PipelineContext, PipelineInput } from '../src/types.ts';

export const FIXTURES = fileURLToPath(new URL('../../testing/fixtures/images/', import.meta.url));

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

/** `img` written as a PNG file in `dir`, handed over as the worker hands inputs to a pipeline. */
export async function pngInput(dir: string, name: string, img: Sharp): Promise<PipelineInput> {
  const file = nodePath.join(dir, name);
  await img.png().toFile(file);
  const meta = await sharp(file).metadata();
  return {
    path: file,
    ref: {
      key: name,
      bytes: (await stat(file)).size,
      sha256: '',
      format: 'png',
      contentType: 'image/png',
      width: meta.width,
      height: meta.height,
    },
  };
}

export interface LogRecord {
  level: string;
  obj: Record<string, unknown>;
  msg: string | undefined;
}

/** A logger that keeps what it was told, for tests that check warnings. */
export function captureLogger(): { logger: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const make = (bound: Record<string, unknown>): Logger => {
    const log =
      (level: string) =>
      (a?: unknown, b?: unknown): void => {
        const [obj, msg] = typeof a === 'string' ? [{}, a] : [(a ?? {}) as Record<string, unknown>, b as string | undefined];
        records.push({ level, obj: { ...bound, ...obj }, msg });
      };
    return {
      trace: log('trace'),
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      fatal: log('fatal'),
      child: (more: Record<string, unknown>) => make({ ...bound, ...more }),
    } as unknown as Logger;
  };
  return { logger: make({}), records };
}
