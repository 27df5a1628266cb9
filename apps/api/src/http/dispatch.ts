import type { IncomingMessage, ServerResponse } from 'node:http';

/** A connect-style step: Express runs these as middleware, and so does `runSteps`. */
export type Step = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** A path segment in its plain spelling: nothing to decode, nothing Express would read otherwise. */
const PLAIN_SEGMENT = /^[A-Za-z0-9_-]{1,128}$/;

const NO_PARAMS: Record<string, string> = Object.freeze({});

interface Compiled<T> {
  value: T;
  /** Literal segments as strings, parameters as `{ name }`. */
  parts: (string | { name: string })[];
}

/**
 * Matches requests to routes by method and path template (`/v1/jobs/{id}`), in the plain
 * spellings only: the exact case, no trailing slash, parameters of letters, digits, `_` and `-`.
 * HEAD matches GET. Anything else is no match, and goes to Express, which reads every spelling.
 */
export class RouteMatcher<T> {
  readonly #exact = new Map<string, Map<string, T>>();
  readonly #templates = new Map<string, Compiled<T>[]>();

  add(method: string, template: string, value: T): void {
    if (!template.includes('{')) {
      const paths = this.#exact.get(method) ?? new Map<string, T>();
      paths.set(template, value);
      this.#exact.set(method, paths);
      return;
    }
    const parts = template.split('/').map((s) => (s.startsWith('{') && s.endsWith('}') ? { name: s.slice(1, -1) } : s));
    const list = this.#templates.get(method) ?? [];
    list.push({ value, parts });
    this.#templates.set(method, list);
  }

  match(method: string | undefined, path: string): { value: T; params: Record<string, string> } | undefined {
    const m = method === 'HEAD' ? 'GET' : (method ?? '');
    const exact = this.#exact.get(m)?.get(path);
    if (exact !== undefined) return { value: exact, params: NO_PARAMS };
    const list = this.#templates.get(m);
    if (!list) return undefined;
    const segments = path.split('/');
    next: for (const { value, parts } of list) {
      if (parts.length !== segments.length) continue;
      const params: Record<string, string> = {};
      for (let i = 0; i < parts.length; i++) {
        const part = parts[i]!;
        const seg = segments[i]!;
        if (typeof part === 'string') {
          if (part !== seg) continue next;
        } else {
          if (!PLAIN_SEGMENT.test(seg)) continue next;
          params[part.name] = seg;
        }
      }
      return { value, params };
    }
    return undefined;
  }
}

/** Runs steps in order as Express would: each calls `next()` to go on, or `next(err)` to stop with `fail(err)`. */
export function runSteps(steps: readonly Step[], req: IncomingMessage, res: ServerResponse, fail: (err: unknown) => void): void {
  let i = 0;
  const next = (err?: unknown): void => {
    if (err) {
      fail(err);
      return;
    }
    const step = steps[i++];
    if (!step) return;
    try {
      step(req, res, next);
    } catch (e) {
      fail(e);
    }
  };
  next();
}
