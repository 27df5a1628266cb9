import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import { ADMIN_TOKEN, fixture, REPO_ROOT, STATIONS, type System, startSystem } from '@darkroom/testing';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, launchChromium, submit, waitForFinal } from './helpers.ts';

/*
 * The screenshots README shows: the operators' dashboard, the API docs page and the CLI's live
 * progress line. `DARKROOM_UPDATE_SCREENSHOTS=1` makes them again, from the real api, worker and
 * CLI in Debian's Chromium; otherwise the test only checks they are there and referenced, so the
 * suite spends no browser time on them.
 */

const UPDATE = process.env.DARKROOM_UPDATE_SCREENSHOTS === '1';
const IMAGES = path.join(REPO_ROOT, 'docs/images');
const SHOTS = ['dashboard.png', 'api-docs.png', 'cli-progress.png'];
const CLI_MAIN = path.join(REPO_ROOT, 'apps/cli/src/main.ts');
const CLI_ARGS = ['submit', '--pipeline', 'synthetic', '--param', 'steps=40', '--param', 'stepMs=100', '--wait'];

/** A PNG's width and height, from its IHDR chunk. */
function pngSize(file: string): { width: number; height: number } {
  const b = fs.readFileSync(file);
  expect(b.subarray(0, 8).toString('hex'), file).toBe('89504e470d0a1a0a');
  return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
}

describe.skipIf(!UPDATE)('making the README screenshots (DARKROOM_UPDATE_SCREENSHOTS=1)', () => {
  let sys: System;
  let browser: Browser;

  beforeAll(async () => {
    expect(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}`).toBe(true);
    fs.mkdirSync(IMAGES, { recursive: true });
    sys = await startSystem();
    // A few finished jobs, so the dashboard has something to show.
    const ids: string[] = [];
    for (const width of [64, 128]) {
      const res = await submit(sys, {
        pipeline: 'edit',
        params: { operations: [{ op: 'resize', width }] },
        imageBase64: fixture('with-alpha.png').toString('base64'),
      });
      ids.push(((await res.json()) as JobStatusBody).id);
    }
    for (let i = 0; i < 3; i++) {
      const res = await submit(sys, { pipeline: 'synthetic', params: { steps: 2, stepMs: 10 } });
      ids.push(((await res.json()) as JobStatusBody).id);
    }
    for (const id of ids) await waitForFinal(sys, id);
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await sys?.stop();
  });

  it('the dashboard: one queue per pipeline at /admin/queues', async () => {
    const context = await browser.newContext({
      httpCredentials: { username: 'operator', password: ADMIN_TOKEN },
      viewport: { width: 1280, height: 800 },
    });
    const page = await context.newPage();
    expect((await page.goto(`${sys.url}/admin/queues`, { waitUntil: 'networkidle' }))?.status()).toBe(200);
    await expect.poll(() => page.getByText('synthetic', { exact: true }).count(), { timeout: 15_000 }).toBeGreaterThan(0);
    await page.screenshot({ path: path.join(IMAGES, 'dashboard.png') });
    await context.close();
  });

  it('the API docs page at /docs', async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();
    expect((await page.goto(`${sys.url}/docs`, { waitUntil: 'networkidle' }))?.status()).toBe(200);
    await expect.poll(() => page.locator('.opblock').count(), { timeout: 15_000 }).toBeGreaterThan(3);
    await page.screenshot({ path: path.join(IMAGES, 'api-docs.png') });
    await context.close();
  });

  it("the CLI's progress line, as a terminal shows it", async () => {
    // The CLI on a pseudo-terminal (util-linux `script`), so it draws its redrawn line.
    const command = [process.execPath, '--conditions=@darkroom/source', '--import', 'tsx', CLI_MAIN, ...CLI_ARGS]
      .map((a) => `'${a}'`)
      .join(' ');
    const run = spawnSync('script', ['-qec', `stty cols 100 rows 30; exec ${command}`, '/dev/null'], {
      cwd: REPO_ROOT,
      env: { ...process.env, DARKROOM_URL: sys.url, DARKROOM_API_KEY: STATIONS.alpha.key, COLUMNS: '100', TERM: 'xterm-256color' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    // Each redraw starts with carriage return + erase-line; keep one from the middle of the run.
    const frames = run.stdout
      .split('\r\x1b[2K')
      .map((f) => f.split(/\r?\n/)[0]!.trim())
      .filter((f) => / active .* (4\d|5\d)%/.test(f));
    expect(frames.length, run.stdout).toBeGreaterThan(0);
    const frame = frames[Math.floor(frames.length / 2)]!;
    const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
    const html = `<!doctype html><meta charset="utf-8"><body style="margin:0;background:#fff">
<pre id="term" style="display:inline-block;margin:0;padding:14px 18px;background:#1e1e1e;color:#d4d4d4;border-radius:6px;
font:15px/1.5 'DejaVu Sans Mono','Liberation Mono',monospace"><span style="color:#6a9955">$</span> darkroom ${esc(CLI_ARGS.join(' '))}
${esc(frame)}</pre></body>`;
    const page = await browser.newPage({ viewport: { width: 1000, height: 200 }, deviceScaleFactor: 2 });
    await page.setContent(html);
    await page.locator('#term').screenshot({ path: path.join(IMAGES, 'cli-progress.png') });
    await page.close();
  });
});

// After the update above (when it runs), so it checks the files just made.
describe('README screenshots', () => {
  it('are in docs/images, as PNGs of a readable size, and README shows each', () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    for (const name of SHOTS) {
      const file = path.join(IMAGES, name);
      expect(fs.existsSync(file), `${name}: run DARKROOM_UPDATE_SCREENSHOTS=1 pnpm vitest run apps/api/test/e2e-screenshots.test.ts`).toBe(
        true,
      );
      const { width, height } = pngSize(file);
      expect(width, name).toBeGreaterThanOrEqual(400);
      expect(height, name).toBeGreaterThanOrEqual(60);
      expect(fs.statSync(file).size, name).toBeLessThan(1024 * 1024);
      expect(readme, name).toContain(`](docs/images/${name})`);
    }
  });
});
