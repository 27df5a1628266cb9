import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { JobData } from '@darkroom/contracts';
import type { QueueRegistry } from '@darkroom/jobs';
import type { Router } from 'express';
import { PROBLEMS } from '../http/error-table.ts';

export const DASHBOARD_PATH = '/admin/queues';

/** Job data as operators see it: blob references keep their facts but not their storage keys. */
export function redactJobData(data: JobData | undefined): unknown {
  if (!data || typeof data !== 'object') return data;
  const { input, ...rest } = data;
  if (!input) return rest;
  const { key: _key, ...facts } = input;
  return { ...rest, input: { ...facts, key: '[redacted]' } };
}

function redactResult(value: unknown): unknown {
  if (!value || typeof value !== 'object') return value;
  const { key: _key, ...facts } = value as Record<string, unknown>;
  return { ...facts, key: '[redacted]' };
}

export function dashboardRouter(queues: QueueRegistry): Router {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(DASHBOARD_PATH);
  createBullBoard({
    queues: queues.all().map((q) => {
      const adapter = new BullMQAdapter(q, { allowRetries: true, description: `pipeline ${q.name}` });
      adapter.setFormatter('data', (d) => redactJobData(d as JobData));
      adapter.setFormatter('returnValue', redactResult);
      return adapter;
    }),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'Darkroom' } },
  });
  // Bull Board's own handler answers 500 with the error's message (and stack in development) for
  // query strings it cannot decode; those are the client's mistake, and no internals go out.
  serverAdapter.setErrorHandler((error: Error) =>
    error instanceof URIError || error instanceof SyntaxError
      ? { status: PROBLEMS.invalid_request[0], body: { error: 'invalid request', message: 'the query string could not be read' } }
      : { status: PROBLEMS.internal[0], body: { error: 'internal error', message: 'an internal error occurred; it has been logged' } },
  );
  return serverAdapter.getRouter() as Router;
}
