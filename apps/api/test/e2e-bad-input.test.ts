import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fixture, listFiles, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { multipart, submit, totalJobs } from './helpers.ts';

/*
 * Every documented bad input: the right status and problem code, the field paths in `errors`,
 * and nothing queued, nothing stored. No worker runs here, so anything queued would stay visible.
 */

const MAX_UPLOAD = 2 * 1024 * 1024;
let sys: System;
let stationsFile: string;

beforeAll(async () => {
  stationsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-')), 'stations.json');
  fs.writeFileSync(stationsFile, JSON.stringify([{ name: 'gamma', key: 'gamma-key-0123456789abcdef', maxPriority: 'normal' }]));
  sys = await startSystem({
    workers: 0,
    // Images past 64 KiB are spooled to disk as they arrive: the refusals below must remove them too.
    env: {
      DARKROOM_MAX_UPLOAD_BYTES: String(MAX_UPLOAD),
      DARKROOM_UPLOAD_MEMORY_BYTES: String(64 * 1024),
      DARKROOM_STATIONS_FILE: stationsFile,
    },
  });
});
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(path.dirname(stationsFile), { recursive: true, force: true });
});

const editParams = JSON.stringify({ operations: [{ op: 'resize', width: 64 }] });
const png = () => fixture('with-alpha.png');

interface Case {
  name: string;
  send: () => Promise<Response>;
  status: number;
  code: string;
  paths?: string[];
}

const cases: Case[] = [
  { name: 'missing pipeline', send: () => submit(sys, { params: {} }), status: 400, code: 'invalid_request', paths: ['pipeline'] },
  { name: 'unknown pipeline', send: () => submit(sys, { pipeline: 'teleport' }), status: 404, code: 'not_found' },
  {
    name: 'edit without an image',
    send: () => submit(sys, { pipeline: 'edit', params: { operations: [] } }),
    status: 400,
    code: 'invalid_request',
    paths: ['image'],
  },
  {
    name: 'an empty image part',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: Buffer.alloc(0) })),
    status: 400,
    code: 'invalid_request',
    paths: ['image'],
  },
  {
    name: 'params outside the schema, all listed',
    send: () =>
      submit(sys, {
        pipeline: 'edit',
        params: { operations: [{ op: 'resize', width: -5 }, { op: 'blur' }, { op: 'explode' }] },
        imageBase64: png().toString('base64'),
        priority: 'urgent',
        webhookUrl: 'ftp://example.com/hook',
      }),
    status: 400,
    code: 'invalid_request',
    paths: ['params.operations.0.width', 'params.operations.1.sigma', 'params.operations.2.op', 'priority', 'webhookUrl'],
  },
  {
    name: 'params that are not JSON (multipart)',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: '{not json' }, { data: png() })),
    status: 400,
    code: 'invalid_request',
    paths: ['params'],
  },
  {
    name: 'a webhook with no secret to sign it',
    send: () => submit(sys, { pipeline: 'synthetic', webhookUrl: 'https://example.com/hook' }),
    status: 400,
    code: 'invalid_request',
    paths: ['webhookUrl'],
  },
  {
    name: 'an image sent to a pipeline that takes none',
    send: () => submit(sys, { pipeline: 'synthetic', imageBase64: png().toString('base64') }),
    status: 400,
    code: 'invalid_request',
    paths: ['image'],
  },
  {
    name: 'invalid base64',
    send: () => submit(sys, { pipeline: 'edit', params: { operations: [] }, imageBase64: '@@@not base64@@@' }),
    status: 400,
    code: 'invalid_request',
    paths: ['image'],
  },
  {
    name: 'malformed JSON',
    send: () => sys.fetch('/v1/jobs', { method: 'POST', body: '{"pipeline": "edit",', headers: { 'content-type': 'application/json' } }),
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'multipart without a boundary',
    send: () => sys.fetch('/v1/jobs', { method: 'POST', body: 'x', headers: { 'content-type': 'multipart/form-data' } }),
    status: 400,
    code: 'invalid_request',
  },
  {
    name: 'a body that is neither multipart nor JSON',
    send: () => sys.fetch('/v1/jobs', { method: 'POST', body: 'pipeline=edit', headers: { 'content-type': 'text/plain' } }),
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'wait over 60 s',
    send: () => submit(sys, { pipeline: 'synthetic' }, { query: '?wait=61' }),
    status: 400,
    code: 'invalid_request',
    paths: ['wait'],
  },
  {
    name: 'wait that is not a number',
    send: () => submit(sys, { pipeline: 'synthetic' }, { query: '?wait=soon' }),
    status: 400,
    code: 'invalid_request',
    paths: ['wait'],
  },
  {
    name: 'a priority above the station’s highest',
    send: () =>
      sys.fetch('/v1/jobs', {
        method: 'POST',
        station: null,
        headers: { authorization: 'Bearer gamma-key-0123456789abcdef', 'content-type': 'application/json' },
        body: JSON.stringify({ pipeline: 'synthetic', priority: 'high' }),
      }),
    status: 403,
    code: 'forbidden',
  },
  {
    name: 'an image over the size limit (multipart)',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: Buffer.alloc(MAX_UPLOAD + 1, 7) })),
    status: 413,
    code: 'payload_too_large',
  },
  {
    name: 'an image over the size limit (base64, judged after decoding)',
    send: () => submit(sys, { pipeline: 'edit', imageBase64: Buffer.alloc(MAX_UPLOAD + 1, 7).toString('base64') }),
    status: 413,
    code: 'payload_too_large',
  },
  {
    name: 'random bytes declared as image/png',
    send: () =>
      submit(
        sys,
        multipart(
          { pipeline: 'edit', params: editParams },
          { data: Buffer.from('this is not an image at all, just text'), type: 'image/png', filename: 'x.png' },
        ),
      ),
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'SVG',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: fixture('check.svg'), type: 'image/svg+xml' })),
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'JPEG 2000',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: fixture('relax.jp2') })),
    status: 415,
    code: 'unsupported_media_type',
  },
  {
    name: 'a corrupt header',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: fixture('corrupt-header.jpg') })),
    status: 422,
    code: 'invalid_image',
  },
  {
    name: 'a truncated JPEG',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: fixture('truncated.jpg') })),
    status: 422,
    code: 'invalid_image',
  },
  {
    name: 'a truncated PNG',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: fixture('truncated.png') })),
    status: 422,
    code: 'invalid_image',
  },
  {
    name: 'a truncated photo, spooled to disk as it arrived',
    send: () =>
      submit(
        sys,
        multipart({ pipeline: 'edit', params: editParams }, { data: fixture('2569067123_aca715a2ee_o.jpg').subarray(0, 600_000) }),
      ),
    status: 422,
    code: 'invalid_image',
  },
  {
    name: 'a spooled image with params outside the schema',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: '{"operations":[{"op":"explode"}]}' }, { data: fixture('G31D.TIF') })),
    status: 400,
    code: 'invalid_request',
    paths: ['params.operations.0.op'],
  },
  {
    name: 'an image over the edge limit',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: fixture('giant-image.jpg') })),
    status: 422,
    code: 'invalid_image',
  },
  {
    name: 'a pixel bomb',
    send: () => submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: fixture('65536-uint32-limit.png') })),
    status: 422,
    code: 'invalid_image',
  },
];

describe('bad input is refused with a problem and changes nothing', () => {
  it.each(cases)('$name → $status $code', async (c) => {
    const before = { jobs: await totalJobs(sys), files: listFiles(sys.dataDir) };
    const res = await c.send();
    expect(res.status).toBe(c.status);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const body = (await res.json()) as {
      type: string;
      title: string;
      status: number;
      detail: string;
      code: string;
      errors?: { path: string; message: string }[];
    };
    expect(body).toMatchObject({ status: c.status, code: c.code });
    expect(typeof body.type).toBe('string');
    expect(typeof body.title).toBe('string');
    expect(body.detail).not.toMatch(/\/tmp|\/work|node_modules|\bat .*\.ts:\d+|ECONN|redis/i);
    if (c.paths) {
      expect(body.errors?.map((e) => e.path).sort()).toEqual([...c.paths].sort());
      for (const e of body.errors ?? []) expect(e.message.length).toBeGreaterThan(0);
    }
    expect(await totalJobs(sys)).toBe(before.jobs);
    expect(listFiles(sys.dataDir)).toEqual(before.files);
  });

  it('answers 404 for ids that are junk, traversal or Redis key syntax', async () => {
    for (const id of [
      '..%2F..%2Fetc%2Fpasswd',
      'edit_*',
      'edit_abc:lock',
      '%00',
      `synthetic_${'a'.repeat(200)}`,
      'edit_zzzzzzzzzzzzzzzzzzzzzzzz',
    ]) {
      for (const suffix of ['', '/result']) {
        const res = await sys.fetch(`/v1/jobs/${id}${suffix}`);
        expect(res.status).toBe(404);
        expect(((await res.json()) as { code: string }).code).toBe('not_found');
      }
    }
  });

  it('answers 503 when the data volume cannot take the image (in memory or spooled), storing and queueing nothing', async () => {
    const inputs = path.join(sys.dataDir, 'inputs');
    fs.rmSync(inputs, { recursive: true, force: true });
    fs.writeFileSync(inputs, 'not a directory');
    try {
      const before = await totalJobs(sys);
      for (const data of [png(), fixture('Landscape_1.jpg')]) {
        const res = await submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data }));
        expect(res.status).toBe(503);
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
        const problem = (await res.json()) as { code: string; detail: string };
        expect(problem.code).toBe('unavailable');
        expect(problem.detail).toMatch(/could not be stored/);
        expect(problem.detail).not.toMatch(/ENOTDIR|\/tmp|inputs/);
        expect(await totalJobs(sys)).toBe(before);
        expect(listFiles(sys.dataDir).filter((f) => f.startsWith('tmp/'))).toEqual([]);
      }
    } finally {
      fs.rmSync(inputs, { force: true });
      fs.mkdirSync(inputs);
    }
    expect((await submit(sys, multipart({ pipeline: 'edit', params: editParams }, { data: png() }))).status).toBe(202);
  });

  it('answers unknown routes with a problem body', async () => {
    const res = await sys.fetch('/v2/everything');
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  });
});
