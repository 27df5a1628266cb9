import {
  BackendUnavailableError,
  coerceError,
  DarkroomJobError,
  FAILURE_CODES,
  formatFailure,
  InvalidInputError,
  JobTimeoutError,
  parseFailure,
} from '@darkroom/contracts';
import { describe, expect, it } from 'vitest';

const GENERIC = { code: 'pipeline_error', message: 'the pipeline failed' };

describe('formatFailure / parseFailure', () => {
  it('prefixes the code in brackets', () => {
    expect(formatFailure('timeout', 'ran past its execution limit of 300 s')).toBe('[timeout] ran past its execution limit of 300 s');
  });

  it.each(FAILURE_CODES)('round-trips %s', (code) => {
    const message = `something about ${code}`;
    expect(parseFailure(formatFailure(code, message))).toEqual({ code, message });
  });

  it('keeps multi-line messages and brackets inside the message', () => {
    const message = 'line one\nline two [not a code] end';
    expect(parseFailure(formatFailure('invalid_input', message))).toEqual({ code: 'invalid_input', message });
  });

  it('keeps an empty message', () => {
    expect(parseFailure(formatFailure('expired', ''))).toEqual({ code: 'expired', message: '' });
  });

  it('reports a stalled job as worker_lost', () => {
    expect(parseFailure('job stalled more than allowable limit')).toEqual({
      code: 'worker_lost',
      message: 'the job was lost by its workers more times than allowed',
    });
    expect(parseFailure('Job STALLED')).toEqual({
      code: 'worker_lost',
      message: 'the job was lost by its workers more times than allowed',
    });
  });

  it('hides unknown text behind a generic pipeline_error', () => {
    const raw = "ENOENT: no such file or directory, open '/srv/darkroom/data/inputs/edit_abc'";
    const parsed = parseFailure(raw);
    expect(parsed).toEqual(GENERIC);
    expect(JSON.stringify(parsed)).not.toContain('/srv');
    expect(JSON.stringify(parsed)).not.toContain('ENOENT');
  });

  it('treats a missing or empty reason as a generic pipeline_error', () => {
    expect(parseFailure(undefined)).toEqual(GENERIC);
    expect(parseFailure('')).toEqual(GENERIC);
  });

  it('does not take a bracketed prefix that is not a failure code, nor leak its text', () => {
    const parsed = parseFailure('[redis_error] connection to 10.0.0.7:6379 lost at /srv/app/node_modules/ioredis');
    expect(parsed).toEqual(GENERIC);
    expect(JSON.stringify(parsed)).not.toContain('10.0.0.7');
  });

  it('needs the prefix at the very start, followed by a space', () => {
    expect(parseFailure(' [timeout] late')).toEqual(GENERIC);
    expect(parseFailure('[timeout]late')).toEqual(GENERIC);
    expect(parseFailure('Error: [timeout] late')).toEqual(GENERIC);
  });
});

describe('job errors', () => {
  it('carry their code and retry policy', () => {
    const cause = new Error('inner');
    const invalid = new InvalidInputError('bad pixels', { cause });
    const backend = new BackendUnavailableError('model server down');
    const timeout = new JobTimeoutError(300_000);
    expect([invalid.code, invalid.retryable, invalid.name, invalid.message, invalid.cause]).toEqual([
      'invalid_input',
      false,
      'InvalidInputError',
      'bad pixels',
      cause,
    ]);
    expect([backend.code, backend.retryable, backend.name]).toEqual(['backend_unavailable', true, 'BackendUnavailableError']);
    expect([timeout.code, timeout.retryable, timeout.name, timeout.message]).toEqual([
      'timeout',
      false,
      'JobTimeoutError',
      'ran past its execution limit of 300 s',
    ]);
    for (const e of [invalid, backend, timeout]) expect(e).toBeInstanceOf(DarkroomJobError);
  });

  it('rounds the timeout to whole seconds', () => {
    expect(new JobTimeoutError(1499).message).toBe('ran past its execution limit of 1 s');
    expect(new JobTimeoutError(1500).message).toBe('ran past its execution limit of 2 s');
  });
});

describe('coerceError', () => {
  it('passes errors through and wraps everything else', () => {
    const e = new TypeError('x');
    expect(coerceError(e)).toBe(e);
    expect(coerceError('plain text').message).toBe('plain text');
    expect(coerceError({ a: 1 }).message).toBe('{"a":1}');
    expect(coerceError(42)).toBeInstanceOf(Error);
    expect(coerceError(42).message).toBe('42');
  });
});
