import type { JobStatusBody, Problem } from '@darkroom/contracts';
import { ADMIN_TOKEN, type System, startSystem, waitFor } from '@darkroom/testing';
import { Redis } from 'ioredis';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { submit } from './helpers.ts';

/*
 * GET /v1/jobs without ids: a station's own jobs, newest first, a page at a time, end to end
 * (api and Redis; no worker, so jobs stay queued unless cancelled or expired).
 */

type Page = { jobs: JobStatusBody[]; nextCursor: string | null };

let sys: System;
let redis: Redis;
let png: string;

beforeAll(async () => {
  sys = await startSystem({ workers: 0, env: { DARKROOM_MAINTENANCE_INTERVAL_MS: '200' } });
  redis = new Redis(sys.redis.url, { lazyConnect: true });
  await redis.connect();
  png = (
    await sharp({ create: { width: 8, height: 6, channels: 3, background: '#336699' } })
      .png()
      .toBuffer()
  ).toString('base64');
});
afterAll(async () => {
  redis?.disconnect();
  await sys?.stop();
});

const admin = { station: null, headers: { authorization: `Bearer ${ADMIN_TOKEN}` } } as const;
const synthetic = { pipeline: 'synthetic', params: { steps: 1, stepMs: 1 } };

/** Every job queued here, in the order queued (one at a time). */
const queuedOrder: string[] = [];

async function queue(station: 'alpha' | 'beta', body: object = synthetic): Promise<JobStatusBody> {
  const res = await submit(sys, body, { station });
  expect(res.status).toBe(202);
  const job = (await res.json()) as JobStatusBody;
  queuedOrder.push(job.id);
  return job;
}

async function list(query: string, init: Parameters<System['fetch']>[1] = {}): Promise<Page> {
  const res = await sys.fetch(`/v1/jobs${query}`, init);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Page;
}

/** Every page of a listing, following nextCursor. */
async function all(query: string, init: Parameters<System['fetch']>[1] = {}): Promise<{ pages: Page[]; jobs: JobStatusBody[] }> {
  const pages: Page[] = [];
  let cursor: string | null = null;
  do {
    const sep = query ? '&' : '?';
    const page = await list(`${query}${cursor ? `${sep}cursor=${cursor}` : ''}`, init);
    pages.push(page);
    cursor = page.nextCursor;
    expect(pages.length).toBeLessThan(50);
  } while (cursor);
  return { pages, jobs: pages.flatMap((p) => p.jobs) };
}

/** Newest first: the reverse of the order they were queued in. */
const newestFirst = (jobs: JobStatusBody[]) => jobs.map((j) => j.id).sort((a, b) => queuedOrder.indexOf(b) - queuedOrder.indexOf(a));

const alphaJobs: JobStatusBody[] = [];

describe('GET /v1/jobs (listing)', () => {
  it('pages through 45 jobs 20 at a time: 3 pages, newest first, none twice, none lost', async () => {
    // One at a time, so "newest" is well defined; many share a millisecond.
    for (let i = 0; i < 45; i++) alphaJobs.push(await queue('alpha'));
    const { pages, jobs } = await all('?limit=20');
    expect(pages.map((p) => p.jobs.length)).toEqual([20, 20, 5]);
    expect(pages.map((p) => p.nextCursor === null)).toEqual([false, false, true]);
    const ids = jobs.map((j) => j.id);
    expect(new Set(ids).size).toBe(45);
    expect(ids).toEqual(newestFirst(alphaJobs));
    // Each entry is the job's own status body.
    const first = pages[0]!.jobs[0]!;
    expect(first).toEqual(await (await sys.fetch(`/v1/jobs/${first.id}`)).json());
    expect(first).toMatchObject({ status: 'queued', pipeline: 'synthetic', links: { self: `/v1/jobs/${first.id}` } });

    // Without limit: 20. A job submitted after the first page never shifts the next one.
    const page1 = await list('');
    expect(page1.jobs.map((j) => j.id)).toEqual(ids.slice(0, 20));
    const late = await queue('alpha');
    alphaJobs.push(late);
    const page2 = await list(`?cursor=${page1.nextCursor}`);
    expect(page2.jobs.map((j) => j.id)).toEqual(ids.slice(20, 40));
    expect((await list('?limit=1')).jobs.map((j) => j.id)).toEqual([late.id]);
  });

  it('filters by status, pipeline and since, alone and together', async () => {
    const sinceEdits = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    const edits = [];
    for (let i = 0; i < 3; i++) edits.push(await queue('alpha', { pipeline: 'edit', params: { operations: [] }, imageBase64: png }));
    alphaJobs.push(...edits);
    const cancelled = alphaJobs.slice(3, 7);
    for (const j of cancelled) expect((await sys.fetch(`/v1/jobs/${j.id}`, { method: 'DELETE' })).status).toBe(200);
    // Two that expire in the queue: failed.
    const expiring = [
      await queue('alpha', { ...synthetic, ttlSeconds: 1 }),
      await queue('alpha', { pipeline: 'edit', params: { operations: [] }, imageBase64: png, ttlSeconds: 1 }),
    ];
    alphaJobs.push(...expiring);
    await waitFor(async () => (await list('?status=failed')).jobs.length === 2, { what: 'two expired jobs', timeoutMs: 15_000 });

    const ids = (p: { jobs: JobStatusBody[] }) => p.jobs.map((j) => j.id);
    const failed = await list('?status=failed');
    expect(ids(failed)).toEqual(newestFirst(expiring));
    expect(failed.jobs.every((j) => j.status === 'failed' && j.error?.code === 'expired')).toBe(true);
    expect(ids(await list('?status=cancelled'))).toEqual(newestFirst(cancelled));
    const gone = new Set([...cancelled, ...expiring].map((j) => j.id));
    const queued = alphaJobs.filter((j) => !gone.has(j.id));
    const allQueued = await all('?status=queued&limit=7');
    expect(ids(allQueued)).toEqual(newestFirst(queued));
    expect(allQueued.jobs.every((j) => j.status === 'queued')).toBe(true);
    expect(ids(await list('?status=cancelled,failed&limit=100'))).toEqual(newestFirst([...cancelled, ...expiring]));
    expect((await list('?status=completed,active')).jobs).toEqual([]);

    expect(ids(await list('?pipeline=edit'))).toEqual(newestFirst([...edits, expiring[1]!]));
    expect(ids(await list('?pipeline=edit&status=queued'))).toEqual(newestFirst(edits));
    expect(ids(await list('?pipeline=upscale'))).toEqual([]);

    expect(ids(await list(`?since=${encodeURIComponent(sinceEdits)}`))).toEqual(newestFirst([...edits, ...expiring]));
    // At or after: the exact submit time of a job includes it.
    const edge = edits[1]!;
    const atEdge = await list(`?since=${encodeURIComponent(edge.createdAt)}&pipeline=edit&status=queued`);
    expect(ids(atEdge)).toEqual(newestFirst(edits.filter((e) => Date.parse(e.createdAt) >= Date.parse(edge.createdAt))));
    expect(ids(atEdge)).toContain(edge.id);
    // An offset form of the same instant.
    const offset = new Date(Date.parse(sinceEdits)).toISOString().replace('Z', '+00:00');
    expect(ids(await list(`?since=${encodeURIComponent(offset)}&status=failed`))).toEqual(newestFirst(expiring));
    expect((await list(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).jobs).toEqual([]);
  });

  it('shows a station only its own jobs; the admin lists one station at a time', async () => {
    const beta = [await queue('beta'), await queue('beta')];
    const betaPage = await list('', { station: 'beta' });
    expect(betaPage).toEqual({ jobs: expect.any(Array), nextCursor: null });
    expect(betaPage.jobs.map((j) => j.id)).toEqual(newestFirst(beta));
    const alpha = await all('?limit=100');
    expect(alpha.jobs.some((j) => beta.some((b) => b.id === j.id))).toBe(false);
    expect(alpha.jobs).toHaveLength(alphaJobs.length);
    // Naming another station is refused; naming itself is the same listing.
    const other = await sys.fetch('/v1/jobs?station=alpha', { station: 'beta' });
    expect(other.status).toBe(403);
    expect(other.headers.get('content-type')).toMatch(/application\/problem\+json/);
    expect((await list('?station=beta', { station: 'beta' })).jobs.map((j) => j.id)).toEqual(newestFirst(beta));

    expect((await list('?station=beta', admin)).jobs.map((j) => j.id)).toEqual(newestFirst(beta));
    const adminAlpha = await all('?station=alpha&limit=30', admin);
    expect(adminAlpha.jobs.map((j) => j.id)).toEqual(alpha.jobs.map((j) => j.id));
    const missing = await sys.fetch('/v1/jobs', admin);
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as Problem).errors).toEqual([{ path: 'station', message: expect.stringContaining('required') }]);
    const unknown = await sys.fetch('/v1/jobs?station=gamma', admin);
    expect(unknown.status).toBe(400);
    expect(((await unknown.json()) as Problem).errors?.[0]?.path).toBe('station');
    expect((await sys.fetch('/v1/jobs', { station: null })).status).toBe(401);
  });

  it('answers 400 naming each bad parameter, and changes nothing', async () => {
    const cases: [string, string[]][] = [
      ['?status=done', ['status']],
      ['?status=queued,', ['status']],
      ['?pipeline=nope', ['pipeline']],
      ['?since=yesterday', ['since']],
      ['?since=2026-12-01', ['since']],
      ['?since=2026-13-45T00:00:00Z', ['since']],
      ['?limit=0', ['limit']],
      ['?limit=101', ['limit']],
      ['?limit=ten', ['limit']],
      ['?limit=1&limit=2', ['limit']],
      ['?cursor=not-a-cursor!', ['cursor']],
      [`?cursor=${Buffer.from('123:../../etc').toString('base64url')}`, ['cursor']],
      ['?status=nope&pipeline=nope&limit=0', ['limit', 'status', 'pipeline']],
    ];
    const before = await all('?limit=100');
    for (const [query, paths] of cases) {
      const res = await sys.fetch(`/v1/jobs${query}`);
      expect(res.status, query).toBe(400);
      expect(res.headers.get('content-type')).toMatch(/application\/problem\+json/);
      const problem = (await res.json()) as Problem;
      expect(problem.code).toBe('invalid_request');
      expect(problem.errors?.map((e) => e.path).sort(), query).toEqual([...paths].sort());
    }
    expect((await all('?limit=100')).jobs.map((j) => j.id)).toEqual(before.jobs.map((j) => j.id));
  });

  it('keeps the ids form as it was', async () => {
    const [a, b] = alphaJobs;
    const res = await sys.fetch(`/v1/jobs?ids=${a!.id},${b!.id},edit_00000000000000000000`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as Record<string, unknown>;
    expect(Object.keys(body)).toEqual(['jobs']);
    expect((body.jobs as JobStatusBody[]).map((j) => j.id)).toEqual([a!.id, b!.id]);
    // ids present but empty is still the ids form's 400, whatever else is there.
    const empty = await sys.fetch('/v1/jobs?ids=&limit=5');
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as Problem).errors).toEqual([{ path: 'ids', message: 'required' }]);
  });

  it('skips jobs that are gone and drops them from the index', async () => {
    const doomed = await queue('beta');
    const index = `${sys.prefix}:sys:jobs:beta`;
    const indexed = async (id: string) => (await redis.xrange(index, '-', '+')).some(([, fields]) => fields.includes(id));
    expect(await indexed(doomed.id)).toBe(true);
    const cancelled = (await (await sys.fetch(`/v1/jobs/${doomed.id}`, { method: 'DELETE', station: 'beta' })).json()) as JobStatusBody;
    expect(cancelled.status).toBe('cancelled');
    // Removed behind the api's back (as from the queue dashboard).
    await redis.del(`${sys.prefix}:synthetic:${doomed.id}`);
    const page = await list('', { station: 'beta' });
    expect(page.jobs.map((j) => j.id)).not.toContain(doomed.id);
    expect(page.jobs).toHaveLength(2);
    expect(await indexed(doomed.id)).toBe(false);
  });
});
