import type { ServerResponse } from 'node:http';
import type { NextFunction, Request, RequestHandler, Response } from 'express';

/**
 * The headers a middleware sets, recorded once at start. helmet's headers do not depend on the
 * request (no nonces here), so every request gets the recorded list instead of running helmet's
 * dozen middlewares again. Throws at start if the middleware turns out not to be static.
 */
export function recordHeaders(middleware: RequestHandler, extra: Record<string, string> = {}): [string, string][] {
  const headers = new Map<string, string>();
  const res = {
    setHeader: (k: string, v: unknown) => headers.set(k, String(v)),
    removeHeader: (k: string) => headers.delete(k),
    getHeader: () => undefined,
  };
  let done = false;
  middleware(
    { method: 'GET', url: '/', headers: {} } as Request,
    res as unknown as Response,
    ((err?: unknown) => {
      if (err) throw err;
      done = true;
    }) as NextFunction,
  );
  if (!done) throw new Error('the header middleware did not finish synchronously; it cannot be recorded');
  for (const [k, v] of Object.entries(extra)) headers.set(k, v);
  return [...headers];
}

export function setHeaders(res: ServerResponse, headers: [string, string][]): void {
  for (const [k, v] of headers) res.setHeader(k, v);
}
