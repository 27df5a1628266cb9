import type { ServerResponse } from 'node:http';
import type { FieldError } from '@darkroom/contracts';
import type { JobsError } from '@darkroom/jobs';
import type { Logger } from '@darkroom/runtime';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { domainProblemKind, libraryProblemKind } from './error-table.ts';
import { openAiErrorOf, wantsOpenAiErrors } from './openai-error.ts';
import { HttpError, notFound, unavailable } from './problem.ts';
import { isRedisUnavailable } from './redis-errors.ts';

/** The one place errors become responses. Nothing but a problem body ever reaches the client. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    answerError(logger, err, req.id, req.method, req.originalUrl, res);
  };
}

/**
 * Answers `err` as problem+json (logging 5xx with the request id) and returns the problem; or,
 * when the answer has already started, cuts the connection and returns undefined.
 */
export function answerError(
  logger: Logger,
  err: unknown,
  reqId: string,
  method: string | undefined,
  url: string | undefined,
  res: ServerResponse,
): HttpError | undefined {
  const problem = toHttpError(err);
  if (problem.status >= 500) {
    const log = problem.code === 'unavailable' ? logger.warn.bind(logger) : logger.error.bind(logger);
    log({ err, reqId, method, url }, 'request failed');
  }
  if (res.headersSent) {
    res.destroy();
    return undefined;
  }
  const withLocals = res as ServerResponse & { locals?: Record<string, unknown> };
  withLocals.locals ??= {};
  withLocals.locals.problemCode = problem.code; // for the rejection metric
  for (const [k, v] of Object.entries(problem.headers)) res.setHeader(k, v);
  if (wantsOpenAiErrors(res)) {
    const { body, headers } = openAiErrorOf(problem);
    for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
    sendBody(res, problem.status, 'application/json; charset=utf-8', JSON.stringify(body));
    return problem;
  }
  sendBody(res, problem.status, 'application/problem+json; charset=utf-8', JSON.stringify(problem.body()));
  return problem;
}

/** A JSON answer, written the same way whichever layer (Express or the route dispatcher) answers. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  sendBody(res, status, 'application/json; charset=utf-8', JSON.stringify(body));
}

function sendBody(res: ServerResponse, status: number, type: string, text: string): void {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', Buffer.byteLength(text));
  res.end(text);
}

export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const kind = domainProblemKind(err);
  if (kind) {
    const e = err as JobsError & { errors?: FieldError[] };
    return new HttpError(kind, e.message, {
      ...(e.errors ? { errors: e.errors } : {}),
      ...(e.retryAfterSeconds !== undefined ? { headers: { 'Retry-After': String(e.retryAfterSeconds) } } : {}),
    });
  }
  if (isRedisUnavailable(err)) return unavailable();
  const e = err as { type?: string; status?: number; statusCode?: number };
  // body-parser's errors carry a `type`; map them without echoing their text.
  switch (e?.type) {
    case 'entity.too.large':
      return new HttpError('payload_too_large', 'the request body is larger than the limit');
    case 'entity.parse.failed':
      return new HttpError('invalid_request', 'the body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError('unsupported_media_type', 'unsupported body encoding or charset');
    case 'request.aborted':
      return new HttpError('invalid_request', 'the request was aborted');
  }
  const status = e?.status ?? e?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new HttpError(libraryProblemKind(status), 'the request could not be processed');
  }
  return new HttpError('internal', 'an internal error occurred; it has been logged');
}

export const notFoundHandler: RequestHandler = (_req, _res, next) => next(notFound('no such route'));
