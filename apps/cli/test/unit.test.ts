import { PassThrough } from 'node:stream';
import { DarkroomError, type JobStatusBody } from '@darkroom/client';
import { PIPELINE_SPECS, paramsJsonSchema } from '@darkroom/contracts';
import { describe, expect, it } from 'vitest';
import { describeFailure } from '../src/errors.ts';
import { EXIT, type Output, UsageError } from '../src/io.ts';
import { buildParams, parseOp } from '../src/params.ts';
import { createProgress, describeState } from '../src/progress.ts';
import { pipelinesText, table } from '../src/render.ts';

/* The CLI's pieces with no server in them: flags to params, the progress views, messages. */

const job = (extra: Partial<JobStatusBody>): JobStatusBody => ({
  id: 'synthetic_0000000000000000000000aa',
  status: 'queued',
  pipeline: 'synthetic',
  priority: 'normal',
  attempts: 0,
  createdAt: '2026-11-22T10:00:00.000Z',
  links: { self: '', result: '', events: '' },
  ...extra,
});

function capture(isTTY: boolean): { out: Output; text: () => string } {
  const out = new PassThrough() as unknown as Output;
  out.isTTY = isTTY;
  out.columns = 60;
  let text = '';
  out.on('data', (d: Buffer) => {
    text += d;
  });
  return { out, text: () => text };
}

describe('params from flags', () => {
  it('builds edit operations from --op, numbers as numbers', () => {
    expect(parseOp('resize:width=512,fit=inside')).toEqual({ op: 'resize', width: 512, fit: 'inside' });
    expect(parseOp('flip')).toEqual({ op: 'flip' });
    expect(parseOp('rotate:angle=-90.5,background=#000')).toEqual({ op: 'rotate', angle: -90.5, background: '#000' });
    expect(() => parseOp('resize:width')).toThrow(UsageError);
    expect(() => parseOp(':width=1')).toThrow(UsageError);
  });

  it('merges --params, then --param (dotted keys nest), then --op', () => {
    const params = buildParams({
      params: '{"operations":[{"op":"flip"}],"x":{"y":1}}',
      param: ['x.z=true', 'steps=5', 'name=a=b'],
      op: ['format:type=webp'],
    });
    expect(params).toEqual({ operations: [{ op: 'flip' }, { op: 'format', type: 'webp' }], x: { y: 1, z: true }, steps: 5, name: 'a=b' });
    expect(buildParams({})).toBeUndefined();
    expect(() => buildParams({ params: '[1]' })).toThrow(/JSON object/);
    expect(() => buildParams({ params: '{' })).toThrow(/not valid JSON/);
    expect(() => buildParams({ params: '@/nonexistent.json' })).toThrow(/cannot read/);
  });
});

describe('progress', () => {
  const states = [
    job({ status: 'queued', position: 3, estimatedWaitSeconds: 12 }),
    job({ status: 'queued', position: 3, estimatedWaitSeconds: 12 }),
    job({ status: 'active', progress: { percent: 40, message: 'step 4/10' } }),
    job({ status: 'completed' }),
  ];

  it('prints plain lines off a terminal, one per change, never an escape code', () => {
    const { out, text } = capture(false);
    const view = createProgress(out, 'plain');
    for (const s of states) view.update(s);
    view.stop();
    expect(text()).toBe('queued position 3 about 12 s\nactive 40% step 4/10\ncompleted\n');
  });

  it('redraws one line in place on a terminal, and clears it at the end', () => {
    const { out, text } = capture(true);
    const view = createProgress(out, 'terminal');
    for (const s of states.slice(0, 3)) view.update(s);
    view.stop();
    const t = text();
    expect(t).not.toContain('\n');
    expect(t.endsWith('\r\x1b[2K')).toBe(true); // the line is cleared for what comes next
    expect(t).toMatch(/active █{10}░{14} {2}40% step 4\/10/);
    for (const frame of t.split('\r\x1b[2K')) expect([...frame].length).toBeLessThan(60);
  });

  it('says a failure with its code', () => {
    expect(describeState(job({ status: 'failed', error: { code: 'timeout', message: 'ran past 300 s' } }))).toBe(
      'failed timeout: ran past 300 s',
    );
  });
});

describe('messages', () => {
  const ctx = { url: 'http://127.0.0.1:8080', keyGiven: false };
  const problem = (status: number, code: string, detail: string, errors?: { path: string; message: string }[]) =>
    new DarkroomError({ status, code, detail, request: 'POST /v1/jobs', ...(errors ? { errors } : {}) });

  it('lists field errors, and says what to do for 401 and 415', () => {
    const f = describeFailure(
      problem(400, 'invalid_request', 'the request is invalid', [{ path: 'params.steps', message: 'Too small' }]),
      ctx,
    );
    expect(f).toMatchObject({ exitCode: EXIT.api, message: ['the request is invalid (400 invalid_request)', 'params.steps: Too small'] });
    expect(describeFailure(problem(401, 'unauthorized', 'a key is required'), ctx).message.join('\n')).toContain(
      '--key <key> or set DARKROOM_API_KEY',
    );
    expect(describeFailure(problem(415, 'unsupported_media_type', 'not an image'), ctx).message.join('\n')).toContain(
      'accepted image formats: JPEG, PNG, WebP, AVIF, GIF, TIFF',
    );
    expect(describeFailure(new UsageError('bad'), ctx).exitCode).toBe(EXIT.usage);
  });
});

describe('tables and pipelines', () => {
  it('pads columns and right-aligns numbers', () => {
    expect(
      table(
        ['NAME', 'N'],
        [
          ['a', 1],
          ['bbb', 100],
        ],
      ),
    ).toBe('NAME    N\na       1\nbbb   100\n');
  });

  it('writes each pipeline’s params as the flags of submit', () => {
    const text = pipelinesText(
      Object.values(PIPELINE_SPECS).map((s) => ({
        name: s.name,
        description: s.description,
        acceptsImage: s.acceptsImage,
        params: paramsJsonSchema(s) as Record<string, unknown>,
      })),
    );
    expect(text).toContain('  --op crop:left=<int 0–16384>,top=<int 0–16384>,width=<int 1–16384>,height=<int 1–16384>\n');
    expect(text).toContain('  --op flip\n');
    expect(text).toContain('  --param stepMs=<int 0–60000, default 100>\n');
  });
});
