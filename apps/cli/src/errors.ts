import { DarkroomError, DarkroomNetworkError, DarkroomTimeoutError } from '@darkroom/client';
import { EXIT, UsageError } from './io.ts';
import { ACCEPTED_FORMATS } from './render.ts';

/*
 * What went wrong, said so that the next command works: the problem's detail, every field
 * error, and a hint where the answer alone does not say what to do (which formats the server
 * takes, how to pass a key, where the API is expected).
 */

export interface Failure {
  exitCode: number;
  /** Lines for stderr. */
  message: string[];
  /** What `--json` prints on stdout. */
  json: Record<string, unknown>;
}

export function describeFailure(err: unknown, ctx: { url: string; keyGiven: boolean }): Failure {
  if (err instanceof UsageError) {
    return { exitCode: EXIT.usage, message: [err.message], json: { error: 'usage', detail: err.message } };
  }
  if (err instanceof DarkroomError) {
    const message = [`${err.detail} (${err.status} ${err.code})`, ...err.errors.map((e) => `${e.path}: ${e.message}`)];
    if (err.status === 401) {
      message.push(
        ctx.keyGiven
          ? 'the API refused this key: check --key or DARKROOM_API_KEY'
          : 'no key was given: pass a station key with --key <key> or set DARKROOM_API_KEY',
      );
    } else if (err.code === 'unsupported_media_type') {
      const formats = Object.values(ACCEPTED_FORMATS).join(', ');
      if (!err.detail.includes(formats)) message.push(`accepted image formats: ${formats}`);
      message.push('the server judges an image by its bytes, not by its file name');
    } else if (err.retryAfterMs !== undefined && (err.status === 429 || err.status === 503)) {
      message.push(`try again in ${Math.ceil(err.retryAfterMs / 1000)} s`);
    }
    if (err.requestId) message.push(`request id ${err.requestId}`);
    return {
      exitCode: EXIT.api,
      message,
      json: { status: err.status, code: err.code, detail: err.detail, errors: err.errors, requestId: err.requestId ?? null },
    };
  }
  if (err instanceof DarkroomNetworkError) {
    const detail = `cannot reach the Darkroom API at ${ctx.url} (${err.reason}${err.attempts > 1 ? `, ${err.attempts} attempts` : ''})`;
    return {
      exitCode: EXIT.api,
      message: [detail, 'is it running? Pass its address with --url or DARKROOM_URL'],
      json: { error: 'network', code: err.code ?? null, detail },
    };
  }
  if (err instanceof DarkroomTimeoutError) {
    const detail = `${err.jobId} is still ${err.last?.status ?? 'running'} after ${err.timeoutMs / 1000} s; it goes on: darkroom status ${err.jobId}`;
    return { exitCode: EXIT.timeout, message: [detail], json: { error: 'timeout', id: err.jobId, detail } };
  }
  const e = err as NodeJS.ErrnoException;
  const detail =
    e?.code && e.path ? `${e.path}: ${e.code === 'ENOENT' ? 'no such file or directory' : e.message}` : String(e?.message ?? e);
  return { exitCode: EXIT.api, message: [detail], json: { error: 'io', code: e?.code ?? null, detail } };
}
