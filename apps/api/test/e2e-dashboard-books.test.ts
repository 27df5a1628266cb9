import fs from 'node:fs';
import path from 'node:path';
import type { JobStatusBody, QueueBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, fixture, listFiles, REPO_ROOT, type System, startSystem, waitFor } from '@darkroom/testing';
import { Redis } from 'ioredis';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium, submit, waitForFinal } from './helpers.ts';

/*
 * The dashboard keeps Darkroom's books: Bull Board, in a real browser, offers no action that
 * changes jobs (retry, clean, promote, add, duplicate, edit data, empty, obliterate), its API
 * refuses each of them even when the page itself calls it, and afterwards every job, a station's
 * pending count and the stored files are as they were. Pausing through the dashboard's API is
 * the admin routes' pause, and both views agree on it.
 */

const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');
const haveBrowser = fs.existsSync(CHROMIUM);
if (!haveBrowser && process.env.CI) throw new Error(`no Chromium at ${CHROMIUM}: .ci/run should have installed it`);
if (!haveBrowser) process.stdout.write(`dashboard books: no Chromium at ${CHROMIUM} (apt-get install chromium); skipped\n`);

const BOARD = '/admin/queues';
const adminHeaders = { authorization: `Bearer ${ADMIN_TOKEN}` };
/** BullMQ states in which Darkroom counts a job as its station's pending work. */
const PENDING_STATES = ['waiting', 'paused', 'prioritized', 'delayed', 'waiting-children', 'active'];
/** Labels of Bull Board's actions that change jobs, as its English UI names them. */
const BOOK_CHANGING =
  /^(retry|retry all|retry .*failed jobs.*|clean|clean all|promote|promote all|add job|duplicate|update data|reschedule|change priority|remove unprocessed children|empty|obliterate|set concurrency|set rate limit)$/i;

type Station = 'alpha' | 'beta';
interface Tracked {
  id: string;
  pipeline: string;
  station: Station;
}

let sys: System;
let browser: Browser;
let redis: Redis;
const jobs: Record<'completed' | 'failed' | 'active' | 'queued1' | 'queued2' | 'queuedBeta', Tracked> = {} as never;

const body = async (res: Response) => (await res.json()) as JobStatusBody;
const image = () => fixture('with-alpha.png').toString('base64');
const editJob = { pipeline: 'edit', params: { operations: [{ op: 'resize', width: 32 }] } };
const admin = (p: string, method = 'GET') => sys.fetch(p, { method, station: null, headers: adminHeaders });

/** BullMQ's own view of a job, through the dashboard's (read-only) API. */
async function bullState(job: Tracked): Promise<string> {
  const res = await admin(`${BOARD}/api/queues/${job.pipeline}/${job.id}`);
  expect(res.status, job.id).toBe(200);
  return ((await res.json()) as { status: string }).status;
}

/** Darkroom's status of the job, as its station reads it. */
async function darkroomStatus(job: Tracked): Promise<string> {
  const res = await sys.fetch(`/v1/jobs/${job.id}`, { station: job.station });
  expect(res.status, job.id).toBe(200);
  return (await body(res)).status;
}

async function boardCounts(): Promise<Record<string, Record<string, number>>> {
  const res = await admin(`${BOARD}/api/queues`);
  const { queues } = (await res.json()) as { queues: { name: string; counts: Record<string, number> }[] };
  return Object.fromEntries(queues.map((q) => [q.name, q.counts]));
}

async function pipelinePaused(name: string): Promise<boolean> {
  const q = (await (await admin('/v1/queue')).json()) as QueueBody;
  return q.pipelines.find((p) => p.name === name)!.paused;
}

/** Darkroom's books and BullMQ agree: states match, each station's pending set is its queued and active jobs. */
async function expectBooksAgree(): Promise<Record<string, string>> {
  const states: Record<string, string> = {};
  const pendingOf: Record<Station, string[]> = { alpha: [], beta: [] };
  for (const job of Object.values(jobs)) {
    const bull = await bullState(job);
    const mine = await darkroomStatus(job);
    states[job.id] = mine;
    expect(mine, job.id).toBe(PENDING_STATES.includes(bull) && bull !== 'active' ? 'queued' : bull);
    if (PENDING_STATES.includes(bull)) pendingOf[job.station].push(job.id);
  }
  for (const station of ['alpha', 'beta'] as const) {
    const view = (await (await sys.fetch('/v1/queue', { station })).json()) as QueueBody;
    expect(view.limits.station?.pending, station).toBe(pendingOf[station].length);
    const set = await redis.smembers(`${sys.prefix}:sys:pending:${station}`);
    expect(set.sort(), station).toEqual(pendingOf[station].sort());
  }
  return states;
}

/** Every action the page offers: buttons, links and menu items by text, label and tooltip, menus opened. */
async function offeredLabels(page: Page): Promise<string[]> {
  const labels = new Set<string>();
  const read = async () => {
    const found = await page
      .locator('button, a, [role="menuitem"], [role="tooltip"]')
      .evaluateAll((els: { textContent: string | null; getAttribute(name: string): string | null }[]) =>
        els.flatMap((el) =>
          [el.textContent, el.getAttribute('aria-label'), el.getAttribute('title')].map((t) => (t ?? '').trim()).filter(Boolean),
        ),
      );
    for (const f of found) labels.add(f);
  };
  await read();
  // Icon-only buttons name themselves in a tooltip; menus list their items once opened.
  const buttons = page.locator('button:visible');
  for (let i = 0; i < (await buttons.count()); i++) {
    const button = buttons.nth(i);
    if ((await button.textContent())?.trim()) continue;
    await button.hover({ timeout: 2000 }).catch(() => undefined);
    await page.waitForTimeout(150);
    await read();
    if ((await button.getAttribute('aria-haspopup')) !== null) {
      await button.click({ timeout: 2000 }).catch(() => undefined);
      await page.waitForTimeout(200);
      await read();
      await page.keyboard.press('Escape');
    }
  }
  // Job cards' action lists, which the UI draws only for queues that are not read-only.
  expect(await page.locator('[class*="jobActions"]').count()).toBe(0);
  return [...labels];
}

beforeAll(async () => {
  if (!haveBrowser) return;
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  sys = await startSystem({ env: { DARKROOM_JOB_TIMEOUT_SECONDS: '600' } });
  redis = new Redis(sys.redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();

  const completed = await body(await submit(sys, { ...editJob, imageBase64: image() }));
  jobs.completed = { id: completed.id, pipeline: 'edit', station: 'alpha' };
  expect((await waitForFinal(sys, completed.id)).status).toBe('completed');
  // Fails at its own 1 s limit: a failed job with an error and a stack for the dashboard to show.
  const failed = await body(
    await submit(sys, { pipeline: 'synthetic', params: { steps: 100, stepMs: 100, width: 8, height: 8 }, timeoutSeconds: 1 }),
  );
  jobs.failed = { id: failed.id, pipeline: 'synthetic', station: 'alpha' };
  expect((await waitForFinal(sys, failed.id)).status).toBe('failed');
  // Runs for minutes, so it stays active through the test.
  const active = await body(await submit(sys, { pipeline: 'synthetic', params: { steps: 1000, stepMs: 300, width: 8, height: 8 } }));
  jobs.active = { id: active.id, pipeline: 'synthetic', station: 'alpha' };
  await waitFor(async () => (await darkroomStatus(jobs.active)) === 'active', { what: 'the long job to start' });
  // Queued jobs with stored inputs: the edit pipeline is paused while they are submitted.
  expect((await admin('/v1/admin/pipelines/edit/pause', 'POST')).status).toBe(200);
  for (const [key, station] of [
    ['queued1', 'alpha'],
    ['queued2', 'alpha'],
    ['queuedBeta', 'beta'],
  ] as const) {
    const res = await submit(sys, { ...editJob, imageBase64: image() }, { station });
    expect(res.status).toBe(202);
    jobs[key] = { id: (await body(res)).id, pipeline: 'edit', station };
  }
  browser = await launchChromium();
}, 120_000);
afterAll(async () => {
  await browser?.close();
  redis?.disconnect();
  await sys?.stop();
});

describe.skipIf(!haveBrowser)('the dashboard keeps Darkroom’s books', () => {
  let context: BrowserContext;
  let page: Page;
  let before: { states: Record<string, string>; counts: Record<string, Record<string, number>>; files: string[] };
  const writes: string[] = [];

  beforeAll(async () => {
    if (!haveBrowser) return;
    before = { states: await expectBooksAgree(), counts: await boardCounts(), files: listFiles(sys.dataDir) };
    expect(Object.values(before.states).sort()).toEqual(['active', 'completed', 'failed', 'queued', 'queued', 'queued']);
    context = await browser.newContext({
      httpCredentials: { username: 'operator', password: ADMIN_TOKEN },
      viewport: { width: 1400, height: 1000 },
    });
    page = await context.newPage();
    page.on('request', (r) => {
      if (r.method() !== 'GET' && r.url().includes(BOARD)) writes.push(`${r.method()} ${r.url()}`);
    });
  });
  afterAll(async () => {
    await context?.close();
  });

  const views = () => [
    { path: '', shows: 'synthetic' },
    { path: '/queue/edit', shows: jobs.queued1.id },
    { path: '/queue/edit?status=prioritized', shows: jobs.queued2.id },
    { path: '/queue/edit?status=completed', shows: jobs.completed.id },
    { path: `/queue/edit/${jobs.completed.id}`, shows: jobs.completed.id },
    { path: `/queue/edit/${jobs.queued1.id}`, shows: jobs.queued1.id },
    { path: '/queue/synthetic?status=failed', shows: jobs.failed.id },
    { path: `/queue/synthetic/${jobs.failed.id}`, shows: jobs.failed.id },
    { path: '/queue/synthetic?status=active', shows: jobs.active.id },
  ];

  it('offers no action that changes jobs in the overview, queue and job views', async () => {
    for (const view of views()) {
      expect((await page.goto(`${sys.url}${BOARD}${view.path}`, { waitUntil: 'networkidle' }))?.status()).toBe(200);
      await expect.poll(() => page.getByText(view.shows).count(), { timeout: 15_000, message: view.path }).toBeGreaterThan(0);
      const labels = await offeredLabels(page);
      // What is there to read is there: the queues, or the job's tabs.
      expect(
        labels.some((l) => /^(synthetic|Data)$/.test(l)),
        view.path,
      ).toBe(true);
      expect(
        labels.filter((l) => BOOK_CHANGING.test(l)),
        view.path,
      ).toEqual([]);
    }
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-read-only.png'), fullPage: true });
    expect(writes).toEqual([]);
  });

  it('shows a failed job’s error and job data without image bytes or storage keys', async () => {
    await page.goto(`${sys.url}${BOARD}/queue/synthetic/${jobs.failed.id}`, { waitUntil: 'networkidle' });
    await page.getByRole('tab', { name: 'Error' }).click();
    await expect.poll(() => page.getByText(/ran past its execution limit of 1 s/).count(), { timeout: 15_000 }).toBeGreaterThan(0);

    await page.goto(`${sys.url}${BOARD}/queue/edit/${jobs.queued1.id}`, { waitUntil: 'networkidle' });
    await page.getByRole('tab', { name: 'Data' }).click();
    await expect.poll(async () => (await page.content()).includes('[redacted]'), { timeout: 15_000 }).toBe(true);
    const html = await page.content();
    expect(html).toContain('sha256:');
    expect(html).not.toContain(`inputs/${jobs.queued1.id}`);
    expect(html).not.toContain(image().slice(0, 40));
    expect(html).not.toContain(sys.dataDir);
  });

  it('refuses each of Bull Board’s book-changing API calls made from the page, saying where the action lives', async () => {
    const { completed, failed, active, queued1 } = jobs;
    const calls: [string, string, unknown, RegExp][] = [
      ['PUT', `/api/queues/synthetic/${failed.id}/retry`, undefined, /POST \/v1\/jobs\/\{id\}\/retry/],
      ['PUT', `/api/queues/edit/${completed.id}/retry`, undefined, /POST \/v1\/jobs\/\{id\}\/retry/],
      ['PUT', '/api/queues/synthetic/retry/failed', undefined, /POST \/v1\/jobs\/\{id\}\/retry/],
      ['PUT', '/api/queues/edit/retry/completed', undefined, /retr/],
      ['PUT', `/api/queues/edit/${queued1.id}/clean`, undefined, /DELETE \/v1\/jobs\/\{id\}/],
      ['PUT', `/api/queues/edit/${completed.id}/clean`, undefined, /DELETE \/v1\/jobs\/\{id\}/],
      ['PUT', `/api/queues/synthetic/${failed.id}/clean`, undefined, /DELETE \/v1\/jobs\/\{id\}/],
      ['PUT', `/api/queues/synthetic/${active.id}/clean`, undefined, /DELETE \/v1\/jobs\/\{id\}/],
      ['PUT', '/api/queues/edit/clean/completed', undefined, /purge/],
      ['PUT', '/api/queues/synthetic/clean/failed', undefined, /purge/],
      ['PUT', '/api/queues/edit/clean/paused', undefined, /purge/],
      ['PUT', '/api/queues/edit/empty', undefined, /POST \/v1\/admin\/pipelines\/\{name\}\/purge/],
      ['PUT', '/api/queues/edit/obliterate', { force: true }, /POST \/v1\/admin\/pipelines\/\{name\}\/purge/],
      ['PUT', `/api/queues/edit/${queued1.id}/promote`, undefined, /not available/],
      ['PUT', '/api/queues/edit/promote', undefined, /not available/],
      ['POST', '/api/queues/edit/add', { name: 'edit', data: { station: 'alpha' }, options: {} }, /POST \/v1\/jobs/],
      ['PATCH', `/api/queues/edit/${queued1.id}/update-data`, { data: { station: 'beta' } }, /DELETE \/v1\/jobs\/\{id\}/],
      ['PATCH', `/api/queues/edit/${queued1.id}/delay`, { delay: 60_000 }, /not available/],
      ['PATCH', `/api/queues/edit/${queued1.id}/priority`, { priority: 1 }, /not available/],
      ['PUT', `/api/queues/edit/${queued1.id}/remove-unprocessed-children`, undefined, /not available/],
      ['PUT', '/api/queues/edit/concurrency', { concurrency: 0 }, /DARKROOM_WORKER_CONCURRENCY/],
      ['PUT', '/api/queues/edit/rate-limit', { max: 1, duration: 60_000 }, /DARKROOM_WORKER_CONCURRENCY/],
      ['PUT', '/api/queues/edit/rate-limit/release', undefined, /not available/],
      ['PUT', '/api/queues/edit/job-schedulers/nightly/remove', undefined, /not available/],
      ['PATCH', '/api/queues/edit/job-schedulers/nightly', { pattern: '* * * * *' }, /not available/],
      ['PUT', '/api/queues/edit/job-schedulers/nightly/run', undefined, /not available/],
      ['POST', '/api/metrics/history/purge', {}, /not available/],
      // Spellings Express would route to the same handlers, and methods Bull Board has not got.
      ['PUT', '/API/Queues/edit/EMPTY', undefined, /purge/],
      ['PUT', '/api/queues/edit/empty/', undefined, /purge/],
      ['DELETE', `/api/queues/edit/${queued1.id}`, undefined, /not available/],
      ['POST', '/api/queues', {}, /not available/],
      ['GET', '/api/queues/edit/obliterate/now', undefined, /not available/],
    ];
    const answers = await page.evaluate(
      async ({ base, calls }) =>
        Promise.all(
          calls.map(async ([method, p, payload]) => {
            const res = await fetch(base + p, {
              method,
              credentials: 'same-origin',
              ...(payload === undefined ? {} : { body: JSON.stringify(payload), headers: { 'content-type': 'application/json' } }),
            });
            return { call: `${method} ${p}`, status: res.status, type: res.headers.get('content-type'), text: await res.text() };
          }),
        ),
      { base: `${sys.url}${BOARD}`, calls: calls.map(([m, p, b]) => [m, p, b] as const) },
    );
    for (const [i, answer] of answers.entries()) {
      expect(answer.status, answer.call).toBe(403);
      expect(answer.type, answer.call).toMatch(/^application\/problem\+json/);
      const problem = JSON.parse(answer.text) as { code: string; detail: string };
      expect(problem.code, answer.call).toBe('forbidden');
      expect(problem.detail, answer.call).toMatch(/not available from the dashboard/);
      expect(problem.detail, answer.call).toMatch(calls[i]![3]);
      expect(answer.text, answer.call).not.toMatch(/at .*\.(js|ts):\d+|redis|ioredis|\/work\//i);
    }
  });

  it('leaves every job, each station’s pending count and the stored files as they were', async () => {
    expect(await expectBooksAgree()).toEqual(before.states);
    expect(await boardCounts()).toEqual(before.counts);
    expect(listFiles(sys.dataDir)).toEqual(before.files);
    expect(before.files.filter((f) => f.includes(jobs.queued1.id) || f.includes(jobs.completed.id)).length).toBeGreaterThanOrEqual(3);
    const result = await sys.fetch(`/v1/jobs/${jobs.completed.id}/result`);
    expect(result.status).toBe(200);
    expect(
      Buffer.from(await result.arrayBuffer())
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
  });

  it('pauses and resumes through the admin routes’ code; Darkroom and the dashboard agree', async () => {
    // The queue list beside the page marks a paused queue "[ Paused ]".
    const pausedBadge = () =>
      page
        .locator('a[title="synthetic"]')
        .getByText(/\[\s*Paused\s*\]/i)
        .count();
    const call = (method: string, p: string) =>
      page.evaluate(
        async ({ url, method }) => {
          const res = await fetch(url, { method, credentials: 'same-origin' });
          return { status: res.status, json: (await res.json()) as Record<string, unknown> };
        },
        { url: `${sys.url}${BOARD}${p}`, method },
      );

    // Paused from the dashboard's API: Darkroom's queue view says so, and so does the page.
    const paused = await call('PUT', '/api/queues/synthetic/pause');
    expect(paused).toMatchObject({ status: 200, json: { name: 'synthetic', paused: true } });
    expect(await pipelinePaused('synthetic')).toBe(true);
    await page.goto(`${sys.url}${BOARD}/queue/synthetic`, { waitUntil: 'networkidle' });
    await expect.poll(pausedBadge, { timeout: 15_000 }).toBeGreaterThan(0);

    // Resumed through Darkroom's admin route: the page shows it running again.
    expect((await admin('/v1/admin/pipelines/synthetic/resume', 'POST')).status).toBe(200);
    await page.reload({ waitUntil: 'networkidle' });
    await expect.poll(pausedBadge, { timeout: 15_000 }).toBe(0);
    expect((await call('PUT', '/api/queues/nope/pause')).status).toBe(404);

    // Resume every pipeline from the dashboard: the paused edit jobs run, and the books follow.
    expect(await pipelinePaused('edit')).toBe(true);
    const all = await call('PUT', '/api/queues/resume');
    expect(all.status).toBe(200);
    expect(await pipelinePaused('edit')).toBe(false);
    for (const key of ['queued1', 'queued2'] as const) expect((await waitForFinal(sys, jobs[key].id)).status).toBe('completed');
    expect((await waitForFinal(sys, jobs.queuedBeta.id, 'beta')).status).toBe('completed');
    const after = await expectBooksAgree();
    expect(after[jobs.active.id]).toBe('active');
    expect(((await (await sys.fetch('/v1/queue', { station: 'alpha' })).json()) as QueueBody).limits.station?.pending).toBe(1);
  });
});
