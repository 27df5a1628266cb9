import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '@darkroom/runtime';

declare module 'node:http' {
  interface IncomingMessage {
    /** The request id: the caller's X-Request-Id when well formed, else a fresh UUID. */
    id: string;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;
const QUIET = new Set(['/healthz', '/readyz']);

/**
 * Request ids and one log line per finished request: errors at error, refusals at info,
 * successes at debug. Written here rather than with pino-http, which builds a child logger and
 * serialises the request for every request even when the line is below the level; this costs
 * nothing unless the line is written.
 */
export function requestLog(logger: Logger) {
  return (req: IncomingMessage, res: ServerResponse, next: () => void) => {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    req.id = id;
    res.setHeader('X-Request-Id', id);
    const start = performance.now();
    const url = req.url; // before Express's routers trim it
    const done = () => {
      res.off('close', done);
      res.off('finish', done);
      if (QUIET.has(url ?? '')) return;
      const status = res.statusCode;
      const aborted = !res.writableFinished;
      const level = status >= 500 ? 'error' : status >= 400 || aborted ? 'info' : 'debug';
      if (!logger.isLevelEnabled(level)) return;
      logger[level](
        {
          req: { id, method: req.method, url },
          res: { statusCode: status },
          responseTime: Math.round(performance.now() - start),
        },
        aborted ? 'request aborted' : 'request completed',
      );
    };
    res.once('finish', done);
    res.once('close', done);
    next();
  };
}
