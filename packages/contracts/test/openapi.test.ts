import {
  buildOpenApiDocument,
  buildPaths,
  type DocumentedRoute,
  JobIdPath,
  JobStatusBody,
  jsonContent,
  PROBLEM_RESPONSES,
  parameter,
  schemaRef,
} from '@darkroom/contracts';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';

/*
 * The generator of the document. The api's own document (from its route table) is checked in
 * apps/api/test/unit-openapi.test.ts.
 */

type Json = Record<string, unknown>;

const route = (over: Partial<DocumentedRoute> = {}): DocumentedRoute => ({
  method: 'GET',
  path: '/v1/jobs/{id}',
  auth: 'station-or-admin',
  redis: true,
  rateLimited: true,
  doc: {
    operationId: 'getJob',
    tags: ['jobs'],
    summary: 'A job',
    parameters: [parameter('path', 'id', JobIdPath)],
    responses: { '200': { description: 'The job.', content: jsonContent(JobStatusBody) }, '404': PROBLEM_RESPONSES.noSuchJob },
  },
  ...over,
});

describe('the document generator', () => {
  it('builds valid OpenAPI 3.1 from routes', async () => {
    const doc = buildOpenApiDocument({ routes: [route(), route({ method: 'DELETE', doc: { ...route().doc, operationId: 'cancelJob' } })] });
    const result = await new Validator().validate(structuredClone(doc) as never);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(Object.keys(doc.paths['/v1/jobs/{id}']!).sort()).toEqual(['delete', 'get']);
  });

  it('documents what the credential, the rate limit and the Redis check answer, in status order', () => {
    const op = buildPaths([route()])['/v1/jobs/{id}']!.get as { responses: Record<string, Json>; security: Json[] };
    expect(Object.keys(op.responses)).toEqual(['200', '401', '404', '429', '503']);
    expect(op.security).toEqual([{ stationBearer: [] }, { stationApiKey: [] }, { adminBearer: [] }, { adminBasic: [] }]);
    const admin = buildPaths([route({ auth: 'admin', redis: false, rateLimited: false })])['/v1/jobs/{id}']!.get as {
      responses: Json;
      security: Json[];
    };
    expect(Object.keys(admin.responses)).toEqual(['200', '401', '403', '404']);
    expect(admin.security).toEqual([{ adminBearer: [] }, { adminBasic: [] }]);
    const open = buildPaths([
      route({ path: '/healthz', auth: 'none', redis: false, rateLimited: false, doc: { ...route().doc, parameters: [] } }),
    ]);
    expect((open['/healthz']!.get as Json).security).toEqual([]);
  });

  it('lets a route describe an implied status its own way', () => {
    const own = { description: 'Mine.', content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } } };
    const r = route();
    const op = buildPaths([{ ...r, doc: { ...r.doc, responses: { ...r.doc.responses, '429': own } } }])['/v1/jobs/{id}']!.get as {
      responses: Json;
    };
    // The route's own answer, with the header every answer carries added.
    expect(op.responses['429']).toEqual({ ...own, headers: { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } } });
  });

  it('puts X-Request-Id on every answer and the RateLimit pair on the successes of a rate-limited route', () => {
    const op = buildPaths([route({ rateLimited: true })])['/v1/jobs/{id}']!.get as { responses: Record<string, { headers: Json }> };
    for (const [status, r] of Object.entries(op.responses)) {
      expect(Object.keys(r.headers), status).toContain('X-Request-Id');
      expect(Object.keys(r.headers).includes('RateLimit'), status).toBe(status.startsWith('2'));
    }
    expect(Object.keys(op.responses)).toContain('429');
  });

  it('refuses a route listed twice, an undescribed path parameter, and a schema that is not a component', () => {
    expect(() => buildPaths([route(), route()])).toThrow(/listed twice/);
    expect(() => buildPaths([route({ doc: { ...route().doc, parameters: [] } })])).toThrow(/\{id\} is not described/);
    expect(() => buildPaths([route({ path: '/v1/jobs' })])).toThrow(/not in the path/);
    expect(() => schemaRef(z.object({ x: z.string() }))).toThrow(/not a component/);
  });
});
