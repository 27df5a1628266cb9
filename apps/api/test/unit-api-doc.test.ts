import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { type OpenApiDocument, PROBLEM_CODES } from '@darkroom/contracts';
import { describe, expect, it } from 'vitest';
import {
  API_DOC_END,
  API_DOC_START,
  apiDocument,
  operationAnchor,
  renderApiReference,
  schemaAnchor,
  withApiReference,
} from '../src/api-reference.ts';
import { ROUTES } from '../src/routes/table.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');
const page = read('docs/api.md');
const doc = apiDocument();
const generated = page.slice(page.indexOf(API_DOC_START), page.indexOf(API_DOC_END));

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as dashes. */
const slug = (heading: string) =>
  heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-');

/** The anchors a Markdown page has: its headings' and its explicit `<a id>`s. */
function anchors(text: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  for (const [, heading] of text.matchAll(/^#{1,6} (.+)$/gm)) {
    const s = slug(heading!);
    const n = seen.get(s) ?? 0;
    seen.set(s, n + 1);
    out.add(n ? `${s}-${n}` : s);
  }
  for (const [, id] of text.matchAll(/<a id="([^"]+)"><\/a>/g)) out.add(id!);
  return out;
}

/** The cells of a Markdown table row, split on pipes that are not escaped. */
const cells = (row: string) =>
  row
    .trim()
    .replace(/^\||\|$/g, '')
    .split(/(?<!\\)\|/)
    .map((c) => c.trim());

/** The rows of the Markdown tables in a text, as cells. */
const rows = (text: string) =>
  text
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .map(cells);
/** The row whose first cell is `first`. */
function row(text: string, first: string): string[] {
  const found = rows(text).find((c) => c[0] === first);
  expect(found, `no table row for ${first}`).toBeDefined();
  return found!;
}
/** The generated text from one heading up to the next one named. */
function between(from: string, to: string): string {
  const start = generated.indexOf(`${from}\n`);
  const end = generated.indexOf(`${to}\n`, start);
  expect(start, from).toBeGreaterThan(0);
  expect(end, to).toBeGreaterThan(start);
  return generated.slice(start, end);
}

describe('docs/api.md is generated from the OpenAPI document', () => {
  it('the generated reference is what `pnpm api:doc` writes now (run `pnpm api:doc` after changing a route or a contract)', () => {
    expect(page.indexOf(API_DOC_START), 'docs/api.md lost its generated:routes:start marker').toBeGreaterThan(0);
    expect(page.indexOf(API_DOC_END), 'docs/api.md lost its generated:routes:end marker').toBeGreaterThan(page.indexOf(API_DOC_START));
    const region = (text: string) => text.slice(text.indexOf(API_DOC_START), text.indexOf(API_DOC_END));
    expect(region(page), 'docs/api.md is out of date: run `pnpm api:doc` and commit docs/api.md').toBe(region(withApiReference(page, doc)));
    expect(withApiReference(page, doc)).toBe(page);
  });

  it('has a section for every route of the route table, under its method and path', () => {
    expect(ROUTES.length).toBeGreaterThan(15);
    const headings = new Set([...generated.matchAll(/^### `([A-Z]+ \S+)`$/gm)].map((m) => m[1]));
    const missing = ROUTES.filter((r) => !headings.has(`${r.method} ${r.path}`)).map((r) => `${r.method} ${r.path}`);
    expect(missing).toEqual([]);
    for (const r of ROUTES) expect(generated).toContain(`<a id="${operationAnchor(r.method, r.path)}"></a>`);
    expect(headings.size).toBe(ROUTES.length);
  });

  it('has a section for every component schema', () => {
    const names = Object.keys(doc.components.schemas);
    expect(names).toContain('JobStatus');
    const missing = names.filter((n) => !generated.includes(`<a id="${schemaAnchor(n)}"></a>\n\n### \`${n}\``));
    expect(missing).toEqual([]);
  });

  it('every link inside docs/api.md, and every link into it from the other docs, lands on an anchor it has', () => {
    const own = anchors(page);
    const broken: string[] = [];
    for (const [, target] of page.matchAll(/\]\(#([^)\s]+)\)/g)) if (!own.has(target!)) broken.push(`docs/api.md: #${target}`);
    for (const file of ['README.md', 'CONTRIBUTING.md', ...fs.readdirSync(path.join(root, 'docs')).map((f) => `docs/${f}`)]) {
      if (!file.endsWith('.md')) continue;
      for (const m of read(file).matchAll(/\]\(([^)\s]*api\.md)#([^)\s]+)\)/g)) {
        if (path.resolve(root, path.dirname(file), m[1]!) !== path.join(root, 'docs/api.md')) continue;
        if (!own.has(m[2]!)) broken.push(`${file}: ${m[1]}#${m[2]}`);
      }
    }
    expect(broken).toEqual([]);
    expect(own.has('schema-jobstatus') && own.has('post-v1-jobs') && own.has('header-retry-after') && own.has('error-codes')).toBe(true);
  });

  it('keeps the hand-written behaviour after the generated block, and names contract.md as the original contract', () => {
    const behaviour = page.slice(page.indexOf(API_DOC_END));
    for (const heading of ['## Submit', '## Results', '## OpenAI Images API', '## Machine-readable contract']) {
      expect(behaviour).toContain(`\n${heading}\n`);
    }
    expect(page.startsWith('# Darkroom API reference\n')).toBe(true);
    expect(page.slice(0, page.indexOf(API_DOC_START))).toContain('[`contract.md`](contract.md) is the original station contract');
  });

  it('shows each route’s credential, parameters, body fields, statuses, headers and problem codes', () => {
    const submit = between('### `POST /v1/jobs`', '### `GET /v1/jobs/{id}`');
    expect(submit).toContain('- **Credential:** station key\n');
    expect(row(submit, '`wait`')).toEqual(['`wait`', 'query', 'number', 'no', '≥ 0; ≤ 60', expect.stringContaining('Outside 0–60')]);
    expect(row(submit, '`Idempotency-Key`').slice(1, 5)).toEqual([
      'header',
      'string',
      'no',
      'min length 1; max length 255; pattern `^[\\x21-\\x7e]+$`',
    ]);
    expect(submit).toContain('`multipart/form-data`: [SubmitMultipart](#schema-submitmultipart)');
    expect(submit).toContain('`application/json`: [SubmitJson](#schema-submitjson)');
    expect(row(submit, '`imageBase64`').slice(1, 4)).toEqual(['string', 'no', 'encoding base64']);
    expect(submit).toContain('- `params` is [EditParams](#schema-editparams) when `pipeline` is `"edit"`.');
    const r429 = row(submit, '`429`');
    expect(r429[2]).toBe('[`Retry-After`](#header-retry-after)');
    expect(r429[3]).toBe('`application/problem+json` [Problem](#schema-problem)');
    expect(r429[4]).toBe('`queue_full`, `rate_limited`, `budget_exceeded`');
    const statuses = rows(submit)
      .map((c) => /^`(\d{3})`$/.exec(c[0]!)?.[1])
      .filter(Boolean);
    expect(statuses).toEqual(Object.keys(doc.paths['/v1/jobs']!.post!.responses as object));

    expect(between('### `POST /v1/admin/pipelines/{name}/purge`', '### `POST /v1/admin/pipelines/{name}/pause`')).toContain(
      '- **Credential:** admin credential\n',
    );
    expect(between('### `GET /metrics`', '### `GET /openapi.json`')).toContain(
      '- **Credential:** none, unless the operator set a metrics token\n',
    );
    expect(between('### `GET /healthz`', '### `GET /readyz`')).toContain('- **Credential:** none\n');
  });

  it('flattens nested objects with dotted names, resolves references to links, and lists enum values', () => {
    const queue = between('### `Queue`', '### `PipelineQueue`');
    expect(row(queue, '`limits.station.maxPending`').slice(1, 3)).toEqual(['integer or null', 'yes']);
    expect(row(queue, '`limits.station.maxPriority`').slice(1, 3)).toEqual(['[Priority](#schema-priority)', 'yes']);
    expect(row(queue, '`pipelines`').slice(1, 3)).toEqual(['array of [PipelineQueue](#schema-pipelinequeue)', 'yes']);
    expect(between('### `Priority`', '### `FailureCode`')).toContain('Type: string; one of `"critical"`, `"high"`, `"normal"`, `"low"`.');
    const edit = generated.slice(generated.indexOf('### `EditOperation`'));
    expect(edit).toMatch(/\*\*`op`: `"crop"`\*\*\n\n\| field/);
  });

  it('lists every problem code once with its statuses from the error table', () => {
    const section = generated.slice(generated.indexOf('## Error codes'));
    const codes = rows(section)
      .map((c) => c[0]!)
      .filter((c) => /^`[a-z_]+`$/.test(c));
    expect(codes).toEqual(PROBLEM_CODES.map((c) => `\`${c}\``));
    expect(row(section, '`not_ready`').slice(1, 3)).toEqual(['`409`', 'Not ready']);
    expect(row(section, '`invalid_request`')[1]).toBe('`400`, `408`, `412`, `416`, `417`, `431`');
  });

  it('keeps tables intact when a description holds a pipe, and links nowhere outside the page', () => {
    const tiny: OpenApiDocument = {
      openapi: '3.1.1',
      info: { title: 't', version: '1' },
      paths: {
        '/x': {
          get: {
            summary: 'x',
            security: [],
            parameters: [{ name: 'q', in: 'query', required: true, schema: { type: 'string', description: 'a | b', pattern: '^(a|b)$' } }],
            responses: {
              '200': { description: 'ok | fine', content: { 'application/json': { schema: { $ref: '#/components/schemas/T' } } } },
            },
          },
        },
      },
      components: { schemas: { T: { type: 'object', properties: { 'a|b': { type: 'string' } }, required: ['a|b'] } } },
    };
    const md = renderApiReference(tiny);
    expect(row(md, '`q`')).toEqual(['`q`', 'query', 'string', 'yes', 'pattern `^(a\\|b)$`', 'a \\| b']);
    expect(row(md, '`a\\|b`')).toHaveLength(5);
    expect(md).toContain('- **Credential:** none\n');
    expect(generated).not.toMatch(/\]\((?!#)/);
  });
});
