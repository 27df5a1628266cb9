import fs from 'node:fs';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, fixture, REPO_ROOT, type System, startSystem } from '@darkroom/testing';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium, submit, waitForFinal } from './helpers.ts';

/*
 * The operators' dashboard in a real browser (Debian's Chromium, driven by playwright-core):
 * refused without the admin credential, then one queue per pipeline, and a completed job's
 * data with its blob storage key redacted. Screenshots are kept in test-artifacts/.
 */

const ARTIFACTS = path.join(REPO_ROOT, 'test-artifacts');
const haveBrowser = fs.existsSync(CHROMIUM);
// CI installs Chromium (.ci/run), so there a missing browser is a failure, not a skip.
if (!haveBrowser && process.env.CI) throw new Error(`no Chromium at ${CHROMIUM}: .ci/run should have installed it`);
if (!haveBrowser) process.stdout.write(`dashboard: no Chromium at ${CHROMIUM} (apt-get install chromium); skipped\n`);

let sys: System;
let browser: Browser;
let jobId: string;

beforeAll(async () => {
  if (!haveBrowser) return;
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  sys = await startSystem();
  const res = await submit(sys, {
    pipeline: 'edit',
    params: { operations: [{ op: 'resize', width: 64 }] },
    imageBase64: fixture('with-alpha.png').toString('base64'),
  });
  jobId = ((await res.json()) as JobStatusBody).id;
  await waitForFinal(sys, jobId);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await sys?.stop();
});

describe.skipIf(!haveBrowser)('dashboard in a browser', () => {
  it('refuses a browser without the admin credential', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    const seen: { status: number; challenge: string | undefined }[] = [];
    page.on('response', (r) => {
      if (r.url().endsWith('/admin/queues')) seen.push({ status: r.status(), challenge: r.headers()['www-authenticate'] });
    });
    // Without credentials to offer, Chromium ends the navigation at the Basic challenge.
    const navigation = await page.goto(`${sys.url}/admin/queues`).then(
      (r) => r?.status(),
      (err: Error) => err.message,
    );
    expect(String(navigation)).toMatch(/401|ERR_INVALID_AUTH_CREDENTIALS/);
    expect(seen[0]?.status).toBe(401);
    expect(seen[0]?.challenge).toMatch(/^Basic realm="darkroom-admin"/);
    expect(await page.getByText('synthetic', { exact: true }).count()).toBe(0);
    await context.close();
  });

  it('shows one queue per pipeline and a completed job with its blob key redacted', async () => {
    const context = await browser.newContext({
      httpCredentials: { username: 'operator', password: ADMIN_TOKEN },
      viewport: { width: 1400, height: 1000 },
    });
    const page = await context.newPage();
    const res = await page.goto(`${sys.url}/admin/queues`, { waitUntil: 'networkidle' });
    expect(res?.status()).toBe(200);
    for (const name of ['edit', 'synthetic'])
      await expect.poll(() => page.getByText(name, { exact: true }).count(), { timeout: 15_000 }).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-overview.png'), fullPage: true });

    await page.goto(`${sys.url}/admin/queues/queue/edit?status=completed`, { waitUntil: 'networkidle' });
    await expect.poll(() => page.getByText(jobId).count(), { timeout: 15_000 }).toBeGreaterThan(0);
    // The job's data tab shows what was asked, with the storage key redacted.
    const dataTab = page
      .getByRole('button', { name: /^data$/i })
      .or(page.getByText(/^Data$/))
      .first();
    if (await dataTab.count()) await dataTab.click();
    await expect.poll(async () => (await page.content()).includes('[redacted]'), { timeout: 15_000 }).toBe(true);
    const html = await page.content();
    expect(html).toContain('station:');
    expect(html).toContain('"alpha"');
    expect(html).not.toContain(`inputs/${jobId}`);
    expect(html).not.toContain(sys.dataDir);
    await page.screenshot({ path: path.join(ARTIFACTS, 'dashboard-job.png'), fullPage: true });
    await context.close();
  });
});
