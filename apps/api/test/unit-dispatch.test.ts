import type { IncomingMessage, ServerResponse } from 'node:http';
import { describe, expect, it } from 'vitest';
import { RouteMatcher, runSteps, type Step } from '../src/http/dispatch.ts';
import { ROUTES } from '../src/routes/table.ts';

describe('RouteMatcher', () => {
  const m = new RouteMatcher<string>();
  for (const r of ROUTES) if (r.kind !== 'express') m.add(r.method, r.path, r.doc.operationId);

  it('matches the plain spelling of every dispatched route of the table, with its parameters', () => {
    for (const r of ROUTES) {
      if (r.kind === 'express') continue;
      const path = r.path.replace('{id}', 'edit_aaaaaaaaaaaaaaaaaaaaaaaa').replace('{name}', 'edit');
      const hit = m.match(r.method, path);
      expect(hit?.value, `${r.method} ${r.path}`).toBe(r.doc.operationId);
      if (r.path.includes('{id}')) expect(hit?.params).toEqual({ id: 'edit_aaaaaaaaaaaaaaaaaaaaaaaa' });
    }
  });

  it('answers HEAD with the GET route', () => {
    expect(m.match('HEAD', '/v1/jobs/edit_a')?.value).toBe('getJob');
    expect(m.match('HEAD', '/v1/jobs')?.value).toBe('getJobs');
  });

  it('leaves every other spelling to Express', () => {
    for (const [method, path] of [
      ['POST', '/v1/jobs/'],
      ['POST', '/V1/jobs'],
      ['GET', '/v1/jobs/edit%5Fa'],
      ['GET', '/v1/jobs/edit_a/'],
      ['GET', '/v1/jobs//result'],
      ['GET', '/v1/jobs/a/b'],
      ['PUT', '/v1/jobs'],
      ['OPTIONS', '/v1/jobs'],
      ['GET', '/docs'],
      ['GET', '/admin/queues'],
      ['GET', `/v1/jobs/${'a'.repeat(129)}`],
      ['GET', 'http://host/v1/jobs/edit_a'],
    ] as const) {
      expect(m.match(method, path), `${method} ${path}`).toBeUndefined();
    }
  });
});

describe('runSteps', () => {
  const req = {} as IncomingMessage;
  const res = {} as ServerResponse;

  it('runs the steps in order until one stops or fails', () => {
    const seen: string[] = [];
    const step =
      (name: string, fail?: Error): Step =>
      (_req, _res, next) => {
        seen.push(name);
        next(fail);
      };
    const errors: unknown[] = [];
    runSteps([step('a'), step('b'), step('c')], req, res, (e) => errors.push(e));
    expect(seen).toEqual(['a', 'b', 'c']);
    const boom = new Error('boom');
    runSteps([step('d', boom), step('e')], req, res, (e) => errors.push(e));
    const thrown = new Error('thrown');
    runSteps(
      [
        () => {
          throw thrown;
        },
      ],
      req,
      res,
      (e) => errors.push(e),
    );
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
    expect(errors).toEqual([boom, thrown]);
  });
});
