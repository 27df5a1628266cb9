import {
  buildOpenApiDocument,
  EditParams,
  JobStatusBody,
  PIPELINE_SPECS,
  PROBLEM_CODES,
  paramsComponentName,
  paramsJsonSchema,
  SubmitJsonBody,
} from '@darkroom/contracts';
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, it } from 'vitest';
import { ROUTES } from '../src/routes/table.ts';

type Json = Record<string, unknown>;
const doc = buildOpenApiDocument({ routes: ROUTES });
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

/** Every route of the station contract (docs/contract.md), with its methods and status codes. */
const EXPECTED: Record<string, Record<string, string[]>> = {
  '/v1/jobs': {
    post: ['200', '202', '400', '401', '403', '404', '409', '413', '415', '422', '429', '503'],
    get: ['200', '400', '401', '403', '429', '503'],
  },
  '/v1/jobs/{id}/retry': { post: ['202', '401', '403', '404', '409', '410', '429', '503'] },
  '/v1/jobs/{id}': {
    get: ['200', '401', '404', '410', '429', '503'],
    delete: ['200', '202', '401', '404', '409', '410', '429', '503'],
  },
  '/v1/jobs/{id}/result': { get: ['200', '304', '401', '404', '409', '410', '429', '503'] },
  '/v1/jobs/{id}/events': { get: ['200', '401', '404', '410', '429', '503'] },
  '/v1/pipelines': { get: ['200', '401'] },
  '/v1/queue': { get: ['200', '401', '503'] },
  '/v1/usage': { get: ['200', '400', '401', '429', '503'] },
  '/v1/admin/pipelines/{name}/purge': { post: ['200', '401', '403', '404', '503'] },
  '/v1/admin/pipelines/{name}/pause': { post: ['200', '401', '403', '404', '503'] },
  '/v1/admin/pipelines/{name}/resume': { post: ['200', '401', '403', '404', '503'] },
  '/v1/images/generations': { post: ['200', '400', '401', '404', '409', '429', '500', '503'] },
  '/v1/images/edits': { post: ['200', '400', '401', '404', '409', '413', '415', '422', '429', '500', '503'] },
  '/v1/images/variations': { post: ['200', '400', '401', '404', '409', '413', '415', '422', '429', '500', '503'] },
  '/admin/queues': { get: ['200', '401', '403'] },
  '/healthz': { get: ['200'] },
  '/readyz': { get: ['200', '503'] },
  '/metrics': { get: ['200', '401'] },
  '/openapi.json': { get: ['200'] },
  '/docs': { get: ['200'] },
};

function operations(d: Json = doc) {
  const out: { path: string; method: string; op: Json }[] = [];
  for (const [path, item] of Object.entries(d.paths as Record<string, Json>)) {
    for (const method of METHODS) if (item[method]) out.push({ path, method, op: item[method] as Json });
  }
  return out;
}

/** Follows a local `$ref` (`#/a/b`) through the document. */
function resolve(pointer: string, d: Json = doc): unknown {
  expect(pointer.startsWith('#/'), pointer).toBe(true);
  return pointer
    .slice(2)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .reduce<unknown>((node, key) => (node as Json | undefined)?.[key], d);
}

function refsIn(node: unknown, out: string[] = []): string[] {
  if (Array.isArray(node)) for (const n of node) refsIn(n, out);
  else if (node && typeof node === 'object') {
    for (const [k, v] of Object.entries(node)) {
      if (k === '$ref' && typeof v === 'string') out.push(v);
      else refsIn(v, out);
    }
  }
  return out;
}

describe('the OpenAPI document', () => {
  it('has one operation per entry of the route table, and no other', () => {
    const listed = operations().map((o) => `${o.method.toUpperCase()} ${o.path} ${String(o.op.operationId)}`);
    expect(listed.sort()).toEqual(ROUTES.map((r) => `${r.method} ${r.path} ${r.doc.operationId}`).sort());
  });

  it('is valid OpenAPI 3.1 by the official schema', async () => {
    const validator = new Validator();
    const result = await validator.validate(structuredClone(doc) as never);
    expect(result.errors).toBeUndefined();
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
  });

  it('is judged by a validator that does catch mistakes', async () => {
    const broken = structuredClone(doc) as Json;
    // A response without its required description, and a parameter in a place that does not exist.
    const paths = broken.paths as Record<string, Record<string, Json>>;
    delete (paths['/v1/queue']!.get!.responses as Record<string, Json>)['200']!.description;
    ((paths['/v1/jobs']!.get!.parameters as Json[])[0] as Json).in = 'body';
    const result = await new Validator().validate(broken as never);
    expect(result.valid).toBe(false);
  });

  it('is plain JSON, and building it twice gives the same document', () => {
    expect(JSON.parse(JSON.stringify(doc))).toEqual(doc);
    expect(buildOpenApiDocument({ routes: ROUTES })).toEqual(doc);
  });

  it('lists every route of the contract with its methods and status codes, and nothing else', () => {
    const listed = Object.fromEntries(Object.entries(doc.paths).map(([p, item]) => [p, METHODS.filter((m) => item[m]).sort()]));
    expect(listed).toEqual(Object.fromEntries(Object.entries(EXPECTED).map(([p, ms]) => [p, Object.keys(ms).sort()])));
    for (const [path, methods] of Object.entries(EXPECTED)) {
      for (const [method, statuses] of Object.entries(methods)) {
        const responses = Object.keys((doc.paths[path]![method] as Json).responses as Json);
        expect(responses, `${method} ${path}`).toEqual(expect.arrayContaining(statuses));
      }
    }
  });

  it('gives every operation a unique operationId', () => {
    const ids = operations().map((o) => o.op.operationId);
    expect(ids.every((id) => typeof id === 'string')).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('answers every 4xx/5xx with application/problem+json and the Problem schema', () => {
    let count = 0;
    for (const { path, method, op } of operations()) {
      if (path.startsWith('/v1/images/')) continue; // OpenAI's shape: the next test
      for (const [status, response] of Object.entries(op.responses as Record<string, Json>)) {
        if (!/^[45]/.test(status) && status !== 'default') continue;
        count++;
        const content = response.content as Record<string, Json>;
        expect(Object.keys(content), `${method} ${path} ${status}`).toEqual(['application/problem+json']);
        const media = content['application/problem+json']!;
        expect(media.schema, `${method} ${path} ${status}`).toEqual({ $ref: '#/components/schemas/Problem' });
        // The examples are problem bodies of that status with a known code.
        const examples = media.example ? [media.example] : Object.values(media.examples as Record<string, Json>).map((e) => e.value);
        for (const ex of examples as Json[]) {
          expect(ex.status).toBe(Number(status));
          expect(PROBLEM_CODES).toContain(ex.code);
          expect(ex.type).toBe(`https://darkroom.dev/problems/${String(ex.code).replace(/_/g, '-')}`);
        }
      }
    }
    expect(count).toBeGreaterThan(40);
    const problem = doc.components.schemas.Problem as { properties: Json; required: string[] };
    expect(Object.keys(problem.properties).sort()).toEqual(['code', 'detail', 'errors', 'status', 'title', 'type']);
    expect(problem.required.sort()).toEqual(['code', 'detail', 'status', 'title', 'type']);
  });

  it('answers every 4xx/5xx of the OpenAI-compatible routes with the OpenAI error body', () => {
    const images = operations().filter((o) => o.path.startsWith('/v1/images/'));
    expect(images.map((o) => o.path).sort()).toEqual(['/v1/images/edits', '/v1/images/generations', '/v1/images/variations']);
    for (const { path, method, op } of images) {
      for (const [status, response] of Object.entries(op.responses as Record<string, Json>)) {
        if (!/^[45]/.test(status)) continue;
        expect(response.content, `${method} ${path} ${status}`).toEqual({
          'application/json': { schema: { $ref: '#/components/schemas/OpenAIError' } },
        });
      }
    }
  });

  it('resolves every $ref inside the document', () => {
    const refs = refsIn(doc);
    expect(refs.length).toBeGreaterThan(50);
    for (const r of new Set(refs)) expect(resolve(r), r).toBeDefined();
  });

  it('marks the headers the contract promises', () => {
    const submit = doc.paths['/v1/jobs']!.post as Json;
    const responses = submit.responses as Record<string, Json>;
    const headers = (s: string) => Object.keys((responses[s]!.headers as Json | undefined) ?? {});
    expect(headers('200')).toContain('Location');
    expect(headers('202')).toContain('Location');
    expect(headers('401')).toContain('WWW-Authenticate');
    expect(headers('429')).toContain('Retry-After');
    expect(headers('503')).toContain('Retry-After');
    const params = (submit.parameters as Json[]).map((p) => `${p.in}:${p.name}`);
    expect(params).toEqual(['query:wait', 'header:Idempotency-Key']);
    expect((submit.parameters as Json[])[0]!.schema).toMatchObject({ type: 'number', minimum: 0, maximum: 60 });
    expect((submit.parameters as Json[])[1]!.schema).toMatchObject({ type: 'string', maxLength: 255 });

    const result = (doc.paths['/v1/jobs/{id}/result']!.get as Json).responses as Record<string, Json>;
    expect(Object.keys(result['200']!.headers as Json)).toEqual(expect.arrayContaining(['ETag', 'Cache-Control']));
    expect(Object.keys(result['200']!.content as Json)).toEqual(['image/*']);
    expect(result['304']!.content).toBeUndefined();
    expect(Object.keys(result['409']!.headers as Json)).toContain('Retry-After');
    expect(
      Object.keys((doc.paths['/v1/jobs/{id}/events']!.get as { responses: Record<string, Json> }).responses['200']!.content as Json),
    ).toEqual(['text/event-stream']);
  });

  it('takes both submit encodings, with params per pipeline from the zod schemas', () => {
    const body = (doc.paths['/v1/jobs']!.post as { requestBody: { content: Record<string, Json> } }).requestBody.content;
    expect(Object.keys(body).sort()).toEqual(['application/json', 'multipart/form-data']);
    const multipart = resolve((body['multipart/form-data']!.schema as Json).$ref as string) as {
      properties: Record<string, Json>;
      required: string[];
    };
    expect(Object.keys(multipart.properties).sort()).toEqual([
      'image',
      'imageUrl',
      'params',
      'pipeline',
      'priority',
      'timeoutSeconds',
      'ttlSeconds',
      'webhookEvents',
      'webhookUrl',
    ]);
    expect(multipart.properties.image).toMatchObject({ type: 'string', format: 'binary' });
    expect(multipart.required).toEqual(['pipeline']);
    expect((body['multipart/form-data']!.encoding as Record<string, Json>).params).toEqual({ contentType: 'application/json' });
    const jsonBody = resolve((body['application/json']!.schema as Json).$ref as string) as { properties: Record<string, Json> };
    expect(Object.keys(jsonBody.properties).sort()).toEqual([
      'imageBase64',
      'imageUrl',
      'params',
      'pipeline',
      'priority',
      'timeoutSeconds',
      'ttlSeconds',
      'webhookEvents',
      'webhookUrl',
    ]);
    for (const field of ['timeoutSeconds', 'ttlSeconds']) {
      expect(jsonBody.properties[field], field).toMatchObject({ type: 'integer', exclusiveMinimum: 0 });
      expect(multipart.properties[field], field).toMatchObject({ type: 'integer', exclusiveMinimum: 0 });
    }
    expect(jsonBody.properties.imageBase64).toMatchObject({ type: 'string', contentEncoding: 'base64' });
    expect(jsonBody.properties.webhookUrl).toMatchObject({ type: 'string', format: 'uri', maxLength: 2048 });
    for (const b of [jsonBody, multipart]) expect(b.properties.imageUrl).toMatchObject({ type: 'string', format: 'uri', maxLength: 2048 });
    // A field error may say why with a code (an imageUrl that could not be used).
    expect(resolve('#/components/schemas/FieldError')).toMatchObject({
      properties: { code: { type: 'string' } },
      required: ['path', 'message'],
    });

    // `params` is any pipeline's params, and exactly the named pipeline's by `if`/`then`.
    const union = resolve((multipart.properties.params as Json).$ref as string) as { anyOf: Json[] };
    const names = Object.keys(PIPELINE_SPECS);
    expect(union.anyOf).toEqual(names.map((n) => ({ $ref: `#/components/schemas/${paramsComponentName(n)}` })));
    expect((multipart as unknown as { allOf: Json[] }).allOf).toEqual(
      names.map((n) => ({
        if: { properties: { pipeline: { const: n } }, required: ['pipeline'] },
        // biome-ignore lint/suspicious/noThenProperty: JSON Schema's `if`/`then` keywords, not a thenable
        then: { properties: { params: { $ref: `#/components/schemas/${paramsComponentName(n)}` } } },
      })),
    );
    // Each pipeline's component is the same JSON Schema `GET /v1/pipelines` serves (the input side),
    // save where the document refers to its shared components.
    for (const spec of Object.values(PIPELINE_SPECS)) {
      const component = doc.components.schemas[paramsComponentName(spec.name)] as Json;
      const served = paramsJsonSchema(spec) as Json;
      const inlined = JSON.parse(JSON.stringify(component, (_k, v) => (v?.$ref ? resolve(v.$ref) : v)));
      const strip = (x: unknown) => JSON.parse(JSON.stringify(x, (k, v) => (k === 'description' ? undefined : v)));
      expect(strip(inlined)).toEqual(strip(served));
    }
  });

  it('describes the status body as JobStatusBody does, open to fields added later', () => {
    const status = doc.components.schemas.JobStatus as { properties: Json; required: string[]; additionalProperties?: unknown };
    expect(Object.keys(status.properties).sort()).toEqual(Object.keys(JobStatusBody.shape).sort());
    expect(status.required.sort()).toEqual(['attempts', 'createdAt', 'id', 'links', 'pipeline', 'priority', 'status']);
    expect(JSON.stringify(doc.components.schemas.JobStatus)).not.toContain('"additionalProperties":false');
    expect(JSON.stringify(doc.components.schemas.Queue)).not.toContain('"additionalProperties":false');
    // Request params stay strict: unknown keys are a 400.
    expect((doc.components.schemas.EditParams as Json).additionalProperties).toBe(false);
  });

  it('has examples the server would accept', () => {
    const json = (
      doc.paths['/v1/jobs']!.post as { requestBody: { content: Record<string, { examples: Record<string, { value: Json }> }> } }
    ).requestBody.content['application/json']!.examples;
    for (const { value } of Object.values(json)) {
      expect(SubmitJsonBody.safeParse(value).success).toBe(true);
      const spec = PIPELINE_SPECS[value.pipeline as keyof typeof PIPELINE_SPECS];
      expect(spec.params.safeParse(value.params).success).toBe(true);
    }
    expect(EditParams.safeParse((json.edit!.value as Json).params).success).toBe(true);
    for (const { path, method, op } of operations()) {
      for (const [status, response] of Object.entries(op.responses as Record<string, Json>)) {
        const media = (response.content as Record<string, Json> | undefined)?.['application/json'];
        if (!media || (media.schema as Json).$ref !== '#/components/schemas/JobStatus') continue;
        const examples = media.example
          ? [media.example]
          : Object.values((media.examples as Record<string, Json>) ?? {}).map((e) => e.value);
        for (const ex of examples) expect(JobStatusBody.safeParse(ex).success, `${method} ${path} ${status}`).toBe(true);
      }
    }
  });

  it('declares the credentials: station key (Bearer or X-API-Key), admin (Bearer or Basic), none for the public routes', () => {
    const schemes = doc.components.securitySchemes as Record<string, Json>;
    expect(schemes.stationBearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes.stationApiKey).toMatchObject({ type: 'apiKey', in: 'header', name: 'X-API-Key' });
    expect(schemes.adminBearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(schemes.adminBasic).toMatchObject({ type: 'http', scheme: 'basic' });
    const security = (path: string, method: string) => (doc.paths[path]![method] as Json).security;
    for (const p of ['/healthz', '/readyz', '/openapi.json', '/docs']) expect(security(p, 'get'), p).toEqual([]);
    expect(security('/metrics', 'get')).toContainEqual({});
    expect(security('/v1/jobs', 'post')).toEqual([{ stationBearer: [] }, { stationApiKey: [] }]);
    expect(security('/v1/queue', 'get')).toEqual(
      expect.arrayContaining([{ stationBearer: [] }, { stationApiKey: [] }, { adminBearer: [] }]),
    );
    expect(security('/v1/admin/pipelines/{name}/pause', 'post')).toEqual([{ adminBearer: [] }, { adminBasic: [] }]);
    for (const { op } of operations()) {
      for (const req of (op.security as Json[] | undefined) ?? [])
        for (const name of Object.keys(req)) expect(schemes).toHaveProperty(name);
    }
  });

  it('names the server it was asked to', () => {
    expect(doc.servers).toEqual([{ url: '/', description: 'This server' }]);
    expect(buildOpenApiDocument({ routes: ROUTES, serverUrl: 'https://darkroom.lab.example' }).servers).toEqual([
      { url: 'https://darkroom.lab.example' },
    ]);
  });
});
