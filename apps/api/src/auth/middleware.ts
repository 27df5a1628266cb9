import type { IncomingMessage } from 'node:http';
import type { NextFunction, Request, Response } from 'express';
import { HttpError } from '../http/problem.ts';
import type { Station, StationRegistry } from './stations.ts';

declare global {
  namespace Express {
    interface Request {
      station?: Station;
      isAdmin?: boolean;
    }
  }
}

/** The credential a request carries: `Authorization: Bearer`, HTTP Basic's password, or X-API-Key. */
export function credentialOf(req: IncomingMessage): { bearer?: string; basicPassword?: string; apiKey?: string } {
  const out: { bearer?: string; basicPassword?: string; apiKey?: string } = {};
  const auth = req.headers.authorization;
  if (auth) {
    const [scheme, value] = [auth.slice(0, auth.indexOf(' ')).toLowerCase(), auth.slice(auth.indexOf(' ') + 1).trim()];
    if (scheme === 'bearer' && value) out.bearer = value;
    if (scheme === 'basic' && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const idx = decoded.indexOf(':');
      if (idx >= 0) out.basicPassword = decoded.slice(idx + 1);
    }
  }
  const apiKey = req.headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey) out.apiKey = apiKey;
  return out;
}

const unauthorizedStation = () =>
  new HttpError('unauthorized', 'a valid station key is required (Authorization: Bearer <key> or X-API-Key)', {
    headers: { 'WWW-Authenticate': 'Bearer' },
  });

/** Who is calling a station route: a station, or (with `allowAdmin`) the admin; 401 otherwise. */
export function authenticate(
  registry: StationRegistry,
  req: IncomingMessage,
  opts: { allowAdmin?: boolean } = {},
): { station: Station } | { admin: true } {
  const c = credentialOf(req);
  if (opts.allowAdmin && registry.isAdmin(c.bearer ?? c.basicPassword)) return { admin: true };
  const station = registry.byKey(c.bearer ?? c.apiKey);
  if (!station) throw unauthorizedStation();
  return { station };
}

/** Station routes. With `allowAdmin`, the admin credential is accepted too (read-only views). */
export function requireStation(registry: StationRegistry, opts: { allowAdmin?: boolean } = {}) {
  return (req: Request, _res: Response, next: NextFunction) => {
    let who: ReturnType<typeof authenticate>;
    try {
      who = authenticate(registry, req, opts);
    } catch (err) {
      return next(err);
    }
    if ('admin' in who) req.isAdmin = true;
    else req.station = who.station;
    next();
  };
}

/**
 * Admin routes. `realm` set: the dashboard, answering Basic so a browser prompts. A valid station
 * key is 403 (known caller, wrong role), anything else 401.
 */
export function requireAdmin(registry: StationRegistry, opts: { realm?: string } = {}) {
  return (req: Request, _res: Response, next: NextFunction) => {
    const c = credentialOf(req);
    if (registry.isAdmin(c.bearer ?? c.basicPassword)) {
      req.isAdmin = true;
      return next();
    }
    const key = c.bearer ?? c.apiKey;
    if (key && !registry.open && registry.byKey(key)) {
      return next(new HttpError('forbidden', 'this route needs the admin credential, not a station key'));
    }
    const challenge = opts.realm ? `Basic realm="${opts.realm}", charset="UTF-8"` : 'Bearer';
    next(new HttpError('unauthorized', 'the admin credential is required', { headers: { 'WWW-Authenticate': challenge } }));
  };
}
