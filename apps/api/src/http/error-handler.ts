import type { Logger } from '@darkroom/core';
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { HttpError, notFound, unavailable } from './problem.ts';
import { isRedisUnavailable } from './redis-errors.ts';

/** The one place errors become responses. Nothing but a problem body ever reaches the client. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const problem = toHttpError(err);
    if (problem.status >= 500) {
      const log = problem.code === 'unavailable' ? logger.warn.bind(logger) : logger.error.bind(logger);
      log({ err, reqId: req.id, method: req.method, url: req.originalUrl }, 'request failed');
    }
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.locals.problemCode = problem.code; // for the rejection metric
    for (const [k, v] of Object.entries(problem.headers)) res.setHeader(k, v);
    res.status(problem.status).type('application/problem+json').send(JSON.stringify(problem.body()));
  };
}

function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (isRedisUnavailable(err)) return unavailable();
  const e = err as { type?: string; status?: number; statusCode?: number };
  // body-parser's errors carry a `type`; map them without echoing their text.
  switch (e?.type) {
    case 'entity.too.large':
      return new HttpError(413, 'payload_too_large', 'the request body is larger than the limit');
    case 'entity.parse.failed':
      return new HttpError(400, 'invalid_request', 'the body is not valid JSON');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError(415, 'unsupported_media_type', 'unsupported body encoding or charset');
    case 'request.aborted':
      return new HttpError(400, 'invalid_request', 'the request was aborted');
  }
  const status = e?.status ?? e?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new HttpError(status, status === 404 ? 'not_found' : 'invalid_request', 'the request could not be processed');
  }
  return new HttpError(500, 'internal', 'an internal error occurred; it has been logged');
}

export const notFoundHandler: RequestHandler = (_req, _res, next) => next(notFound('no such route'));
