import { buildOpenApiDocument } from '@darkroom/contracts';
import { ADMIN_TOKEN, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from '../src/routes/table.ts';

type Json = Record<string, unknown>;
interface Doc {
  openapi: string;
  paths: Record<string, Record<string, Json>>;
  components: { schemas: Record<string, Json> };
}

const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'head', 'options', 'trace'];

let sys: System;
let doc: Doc;
beforeAll(async () => {
  sys = await startSystem({ workers: 0 });
});
afterAll(async () => {
  await sys?.stop();
});

/** The URLs of every script, stylesheet, icon and image a page loads. */
function assetUrls(html: string): string[] {
  const urls: string[] = [];
  for (const m of html.matchAll(/<(script|link|img|iframe|source)\b[^>]*>/gi)) {
    const tag = m[0];
    const attr = /\b(?:src|href)\s*=\s*["']([^"']+)["']/i.exec(tag);
    if (attr) urls.push(attr[1]!);
  }
  return urls;
}

/** The OpenAI-compatible routes answer errors in OpenAI's shape, with the SDKs' retry hint. */
function expectOpenAiError(res: Response, text: string) {
  expect(res.headers.get('content-type')).toMatch(/^application\/json\b/);
  const { error } = JSON.parse(text) as { error: Json };
  expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof error.message).toBe('string');
  expect(res.headers.get('x-should-retry')).toMatch(/^(true|false)$/);
}

/** A live problem answer has the media type, `type`, `title` and headers the document shows for it. */
function expectDocumentedProblem(documented: Json, res: Response, text: string) {
  if ((documented.content as Record<string, Json>)['application/json']) return expectOpenAiError(res, text);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json\b/);
  const body = JSON.parse(text) as Json;
  const media = (documented.content as Record<string, Json>)['application/problem+json']!;
  const examples = (media.example ? [media.example] : Object.values(media.examples as Record<string, Json>).map((e) => e.value)) as Json[];
  const example = examples.find((e) => e.code === body.code);
  expect(example, `a documented example with code ${String(body.code)}`).toBeDefined();
  expect({ type: body.type, title: body.title, status: body.status }).toEqual({
    type: example!.type,
    title: example!.title,
    status: example!.status,
  });
  for (const name of Object.keys((documented.headers as Json | undefined) ?? {})) {
    if (name !== 'Retry-After') expect(res.headers.has(name), name).toBe(true);
  }
}

describe('GET /openapi.json', () => {
  it('answers the OpenAPI 3.1 document without a credential', async () => {
    const res = await sys.fetch('/openapi.json', { station: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/json\b/);
    doc = (await res.json()) as Doc;
    expect(doc.openapi).toMatch(/^3\.1\.\d+$/);
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(['/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/result', '/openapi.json', '/docs']),
    );
  });

  it('is the document generated from the route table, the same for every caller', async () => {
    expect(doc).toEqual(buildOpenApiDocument({ routes: ROUTES }));
    const res = await sys.fetch('/openapi.json');
    expect(await res.json()).toEqual(doc);
  });

  it('shows problems as the server writes them', async () => {
    for (const [path, station] of [
      ['/v1/queue', null],
      ['/v1/jobs/edit_aaaaaaaaaaaaaaaaaaaaaaaa', 'alpha'],
      ['/v1/jobs?ids=', 'alpha'],
    ] as const) {
      const res = await sys.fetch(path, { station });
      const documented = (doc.paths[path.split('?')[0]!.replace(/edit_a+$/, '{id}')]!.get as { responses: Record<string, Json> }).responses;
      expect(documented[String(res.status)], `${path} ${res.status}`).toBeDefined();
      expectDocumentedProblem(documented[String(res.status)]!, res, await res.text());
    }
  });

  it('describes the pipelines as GET /v1/pipelines serves them', async () => {
    const res = await sys.fetch('/v1/pipelines');
    const { pipelines } = (await res.json()) as { pipelines: { name: string }[] };
    const union = doc.components.schemas.PipelineParams as { anyOf: { $ref: string }[] };
    expect(union.anyOf).toHaveLength(pipelines.length);
  });
});

describe('GET /docs', () => {
  let html: string;

  it('answers an HTML page without a credential', async () => {
    const res = await sys.fetch('/docs', { station: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html\b/);
    html = await res.text();
    expect(html).toMatch(/<!doctype html>/i);
    expect(html).toContain('id="swagger-ui"');
  });

  it('loads every asset from this server: no CDN, no inline script', async () => {
    const urls = assetUrls(html);
    expect(urls.length).toBeGreaterThanOrEqual(3);
    // Nothing in the page points off this host: no absolute or protocol-relative URL at all.
    expect(html).not.toMatch(/(?:src|href)\s*=\s*["'](?:[a-z][a-z0-9+.-]*:)?\/\//i);
    expect(html).not.toMatch(/https?:\/\//i);
    expect(html).not.toMatch(/<script\b[^>]*>\s*[^<\s]/i); // every <script> has a src and no body
    const scripts = [...html.matchAll(/<script\b[^>]*\bsrc=["']([^"']+)["']/gi)].map((m) => m[1]!);
    const styles = [...html.matchAll(/<link\b[^>]*rel=["']stylesheet["'][^>]*href=["']([^"']+)["']/gi)].map((m) => m[1]!);
    expect(scripts.length).toBeGreaterThanOrEqual(2);
    expect(styles.length).toBeGreaterThanOrEqual(1);

    for (const url of urls) {
      const resolved = new URL(url, `${sys.url}/docs`);
      expect(resolved.origin, url).toBe(sys.url);
      const res = await sys.fetch(resolved.pathname + resolved.search, { station: null });
      expect(res.status, url).toBe(200);
      const body = await res.text();
      expect(body.length, url).toBeGreaterThan(0);
      const type = res.headers.get('content-type') ?? '';
      if (scripts.includes(url)) expect(type, url).toMatch(/^(text|application)\/javascript\b/);
      if (styles.includes(url)) expect(type, url).toMatch(/^text\/css\b/);
    }
  });

  it('starts Swagger UI on our document, with no off-host validator badge', async () => {
    const scripts = [...html.matchAll(/<script\b[^>]*\bsrc=["']([^"']+)["']/gi)].map((m) => m[1]!);
    const init = scripts.find((s) => s.includes('init.js'));
    expect(init).toBeDefined();
    const text = await (await sys.fetch(init!, { station: null })).text();
    expect(text).toContain('"/openapi.json"');
    expect(text).toMatch(/validatorUrl:\s*null/);
    expect(text).not.toMatch(/https?:\/\//);
  });

  it('forbids the browser to load anything from elsewhere', async () => {
    const res = await sys.fetch('/docs', { station: null });
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toMatch(/https?:/);
  });

  it('serves only the package files the page uses', async () => {
    for (const p of [
      '/docs/assets/index.html',
      '/docs/assets/package.json',
      '/docs/assets/..%2Fpackage.json',
      '/docs/assets/swagger-initializer.js',
    ]) {
      const res = await sys.fetch(p, { station: null });
      expect(res.status, p).toBe(404);
      expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
  });
});

describe('every documented route is served', () => {
  const ID = 'edit_aaaaaaaaaaaaaaaaaaaaaaaa';

  it('answers each path and method with something other than "no such route"', async () => {
    const checked: string[] = [];
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const method of METHODS.filter((m) => item[m])) {
        const METHOD = method.toUpperCase();
        const url = path.replace('{id}', ID).replace('{name}', 'edit');
        const isAdmin = path.startsWith('/admin/') || path.startsWith('/v1/admin/');
        const headers: Record<string, string> = isAdmin ? { authorization: `Bearer ${ADMIN_TOKEN}` } : {};
        if (METHOD === 'POST') headers['content-type'] = 'application/json';
        const res = await sys.fetch(url, {
          method: METHOD,
          station: isAdmin ? null : 'alpha',
          headers,
          ...(METHOD === 'POST' ? { body: '{}' } : {}),
        });
        const body = await res.text();
        const noSuchRoute = res.status === 404 && (JSON.parse(body) as { detail?: string }).detail === 'no such route';
        expect(noSuchRoute, `${METHOD} ${path} answered "no such route"`).toBe(false);
        // A documented status (or 401 for a credential this probe could not give).
        const responses = (item[method] as { responses: Record<string, Json> }).responses;
        expect([...Object.keys(responses), '401'], `${METHOD} ${path} answered ${res.status}`).toContain(String(res.status));
        if (res.status >= 400 && responses[String(res.status)]) expectDocumentedProblem(responses[String(res.status)]!, res, body);
        checked.push(`${METHOD} ${path} ${res.status}`);
      }
    }
    expect(checked.length).toBe(ROUTES.length);
    expect(checked.length).toBe(Object.values(doc.paths).flatMap((item) => METHODS.filter((m) => item[m])).length);
  });

  it('answers an undocumented route with the generic 404, so the check above can tell', async () => {
    const res = await sys.fetch('/v1/nothing-here');
    expect(res.status).toBe(404);
    expect(((await res.json()) as { detail: string }).detail).toBe('no such route');
  });

  it('documents every route of the table under its method and path, with the credential it asks for', () => {
    const security: Record<string, unknown[]> = {
      none: [],
      station: [{ stationBearer: [] }, { stationApiKey: [] }],
      'station-or-admin': [{ stationBearer: [] }, { stationApiKey: [] }, { adminBearer: [] }, { adminBasic: [] }],
      admin: [{ adminBearer: [] }, { adminBasic: [] }],
      'metrics-token': [{}, { metricsBearer: [] }],
    };
    for (const route of ROUTES) {
      const op = doc.paths[route.path]?.[route.method.toLowerCase()] as { operationId: string; security: unknown[]; responses: Json };
      expect(op, `${route.method} ${route.path}`).toBeDefined();
      expect(op.operationId).toBe(route.doc.operationId);
      expect(op.security).toEqual(security[route.auth]);
      if (route.redis) expect(Object.keys(op.responses), `${route.method} ${route.path}`).toContain('503');
      if (route.rateLimited) expect(Object.keys(op.responses), `${route.method} ${route.path}`).toContain('429');
    }
  });
});
