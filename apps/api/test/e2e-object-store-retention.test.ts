import type { JobStatusBody } from '@darkroom/contracts';
import { fixture, type ObjectStoreHandle, type System, startObjectStore, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { hostDirs, submit, waitForFinal } from './helpers.ts';

/*
 * Retention and the orphan sweep on a bucket (a real one-node Swift), the api and the worker each
 * with their own data directory. The sweep's age of an object is its LastModified in the bucket's
 * listing, which S3 cannot set: the test's Swift lets it write objects and start multipart uploads
 * back-dated, and a short time-to-live, job timeout and retention make "older than any job could
 * be" ten seconds, so a live job's own input gets that old while the api is down.
 */

const PREFIX = 'darkroom/';
const TTL_S = 1;
const TIMEOUT_S = 3;
const RETENTION_S = 6;
/** The sweep's threshold: time-to-live + timeout × attempts (1) + retention. */
const ORPHAN_AGE_MS = (TTL_S + TIMEOUT_S + RETENTION_S) * 1000;

let store: ObjectStoreHandle;
let sys: System;
let bucket: string;
const hosts = hostDirs();
const ownDir = hosts.own;

beforeAll(async () => {
  store = await startObjectStore();
  bucket = await store.createBucket();
  const env = {
    ...store.env(bucket, PREFIX),
    DARKROOM_JOB_TTL_SECONDS: String(TTL_S),
    DARKROOM_JOB_TIMEOUT_SECONDS: String(TIMEOUT_S),
    DARKROOM_JOB_ATTEMPTS: '1',
    DARKROOM_RETENTION_SECONDS: String(RETENTION_S),
    DARKROOM_MAINTENANCE_INTERVAL_MS: '200',
  };
  sys = await startSystem({ env, apiEnv: { DARKROOM_DATA_DIR: ownDir() }, workers: 0 });
}, 90_000);

afterAll(async () => {
  await sys?.stop();
  await store?.stop();
  hosts.removeAll();
});

const keys = async () => (await store.listKeys(bucket, PREFIX)).map((k) => k.slice(PREFIX.length));
const ago = (ms: number) => new Date(Date.now() - ms);
const MONTH = 30 * 24 * 3600_000;
const HOURS_2 = 2 * 3600_000;
const image = () => ({
  pipeline: 'edit',
  params: { operations: [{ op: 'flip' }] },
  imageBase64: fixture('with-alpha.png').toString('base64'),
});

it('sweeps old objects no job refers to from the bucket, and keeps a live job’s however old, and young ones', async () => {
  // A job no worker takes; the api goes down while it waits, long enough for its input to pass the threshold.
  const submitted = Date.now();
  const res = await submit(sys, image());
  expect(res.status).toBe(202);
  const live = ((await res.json()) as JobStatusBody).id;
  expect(await keys()).toEqual([`inputs/${live}`]);
  await sys.killApi(0);

  const orphans = ['inputs/edit_00000000000000000000zzzz', 'outputs/edit_00000000000000000000yyyy.webp', 'inputs/not-a-job'];
  for (const k of orphans) await store.putAt(bucket, PREFIX + k, 'x', ago(MONTH));
  await store.putAt(bucket, `${PREFIX}tmp/dead-writer.part`, 'x', ago(HOURS_2));
  await store.startUploadAt(bucket, `${PREFIX}tmp/dead-upload.part`, ago(HOURS_2));
  // Under the live job's name, a month old: its job keeps it.
  await store.putAt(bucket, `${PREFIX}outputs/${live}.png`, 'x', ago(MONTH));

  await new Promise((r) => setTimeout(r, submitted + ORPHAN_AGE_MS + 2000 - Date.now()));
  const young = ['inputs/edit_00000000000000000000xxxx', 'tmp/in-flight.part'];
  for (const k of young) await store.putAt(bucket, PREFIX + k, 'x', new Date());
  await store.startUploadAt(bucket, `${PREFIX}tmp/in-flight-upload.part`, new Date());

  await sys.restartApi(); // the first maintenance pass of an api sweeps at once
  // Three orphans, a temporary object and a multipart upload: the line is written after the removals.
  const line = /"removed":5,.*"msg":"removed files no job refers to"/;
  await waitFor(() => line.test(sys.api.output()), { what: 'the sweep’s log line' });
  expect(await keys()).toEqual([`inputs/${live}`, `outputs/${live}.png`, ...young].sort());
  expect(await store.listUploads(bucket, PREFIX)).toEqual([`${PREFIX}tmp/in-flight-upload.part`]);

  // The same pass expired the waiting job; retention then takes its input with it.
  await waitFor(async () => (await sys.fetch(`/v1/jobs/${live}`)).status === 410, { timeoutMs: 30_000, what: 'retention' });
  // The tombstone comes first, the removals right after.
  await waitFor(async () => !(await keys()).includes(`inputs/${live}`), { what: 'the expired job’s input to be removed' });
}, 90_000);

it('removes a completed job’s objects after retention: 410 expired for its station, 404 for another, nothing in the bucket', async () => {
  await sys.addWorker({ DARKROOM_DATA_DIR: ownDir() });
  const res = await submit(sys, image());
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as JobStatusBody;
  const done = await waitForFinal(sys, id);
  expect(done.status).toBe('completed');
  const ofJob = async () => (await keys()).filter((k) => k.includes(id));
  expect(await ofJob()).toEqual([`inputs/${id}`, `outputs/${id}.png`]);

  await waitFor(async () => (await sys.fetch(`/v1/jobs/${id}`)).status === 410, { timeoutMs: 30_000, what: 'retention' });
  const gone = await sys.fetch(`/v1/jobs/${id}`);
  expect(gone.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(((await gone.json()) as { code: string }).code).toBe('expired');
  const result = await sys.fetch(`/v1/jobs/${id}/result`);
  expect(result.status).toBe(410);
  expect(((await result.json()) as { code: string }).code).toBe('expired');
  expect((await sys.fetch(`/v1/jobs/${id}`, { station: 'beta' })).status).toBe(404);
  expect((await sys.fetch(`/v1/jobs/${id}/result`, { station: 'beta' })).status).toBe(404);
  // The tombstone comes first, the removals right after.
  await waitFor(async () => (await ofJob()).length === 0, { what: 'the job’s objects to be removed' });
  expect((await keys()).filter((k) => k.startsWith('tmp/') && k !== 'tmp/in-flight.part')).toEqual([]);
}, 90_000);
