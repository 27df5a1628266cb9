import fs from 'node:fs';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { fixture, listFiles, type System, startSystem, waitFor } from '@darkroom/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { multipart, submit, waitForFinal } from './helpers.ts';

/*
 * The orphan sweep: files no job refers to (a crash between storing an upload and queueing its
 * job, a worker killed mid-write) are removed once they are older than any job could be; the
 * files of live jobs and young files are kept, however old the former look.
 */

let sys: System;
beforeAll(async () => {
  sys = await startSystem({});
});
afterAll(async () => {
  await sys?.stop();
});

const MONTH_AGO = new Date(Date.now() - 30 * 24 * 3600_000);

function put(rel: string, old: boolean): void {
  const file = path.join(sys.dataDir, rel);
  fs.writeFileSync(file, 'x');
  if (old) fs.utimesSync(file, MONTH_AGO, MONTH_AGO);
}

it('removes old files no job refers to, and keeps live jobs’ files and young ones', async () => {
  const res = await submit(
    sys,
    multipart({ pipeline: 'edit', params: '{"operations":[{"op":"resize","width":64}]}' }, { data: fixture('with-alpha.png') }),
  );
  const job = await waitForFinal(sys, ((await res.json()) as JobStatusBody).id);
  expect(job.status).toBe('completed');
  const live = listFiles(sys.dataDir).filter((f) => f.includes(job.id));
  expect(live).toHaveLength(2); // its input and its output
  // The live job's files look a month old too: only the job's existence keeps them.
  for (const f of live) fs.utimesSync(path.join(sys.dataDir, f), MONTH_AGO, MONTH_AGO);

  const orphans = [
    'inputs/edit_00000000000000000000zzzz',
    'outputs/edit_00000000000000000000yyyy.webp',
    'inputs/not-a-job',
    'tmp/dead-writer.part',
  ];
  const young = ['inputs/edit_00000000000000000000xxxx', 'tmp/in-flight.part'];
  for (const f of orphans) put(f, true);
  for (const f of young) put(f, false);

  await sys.restartApi(); // the first maintenance pass of an api sweeps at once
  await waitFor(() => orphans.every((f) => !fs.existsSync(path.join(sys.dataDir, f))), { what: 'the orphans to be removed' });
  const left = listFiles(sys.dataDir);
  for (const f of [...live, ...young]) expect(left).toContain(f);
  expect((await sys.fetch(`/v1/jobs/${job.id}/result`)).status).toBe(200);
  // The line is written after the removals; its bytes reach this process a moment later.
  await waitFor(() => /"removed":4,.*"msg":"removed files no job refers to"/.test(sys.api.output()), { what: 'the sweep’s log line' });
  expect(sys.api.output()).toMatch(/"removed":4,.*"msg":"removed files no job refers to"/);
});
