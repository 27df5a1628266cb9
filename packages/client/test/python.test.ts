import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT, STATIONS, type System, startSystem } from '@darkroom/testing';
import { afterAll, beforeAll, expect, it } from 'vitest';

/*
 * The Python station client (clients/python) against the real system: its unittest suite runs
 * with the api's address and station keys in the environment and must pass whole.
 */

const LIMITED = { name: 'limited', key: 'limited-key-0123456789abcdef' };
let sys: System;
let dir: string;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-python-'));
  const stations = path.join(dir, 'stations.json');
  fs.writeFileSync(stations, JSON.stringify([{ ...LIMITED, maxPending: 1 }]));
  sys = await startSystem({ env: { DARKROOM_STATIONS_FILE: stations, DARKROOM_INPUT_URL_ALLOW_PRIVATE: 'true' } });
});
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

function run(cmd: string, args: string[], env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (b: Buffer) => {
      output += b.toString();
    });
    child.stderr.on('data', (b: Buffer) => {
      output += b.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output }));
  });
}

it('passes the Python client suite against the real api and worker', { timeout: 120_000 }, async () => {
  const { code, output } = await run('python3', ['-m', 'unittest', 'discover', '-s', 'clients/python/tests', '-v'], {
    DARKROOM_URL: sys.url,
    DARKROOM_API_KEY: STATIONS.alpha.key,
    DARKROOM_TEST_LIMITED_KEY: LIMITED.key,
    DARKROOM_TEST_IMAGE_URL: '1',
    PYTHONDONTWRITEBYTECODE: '1',
  });
  if (code !== 0) console.error(output);
  expect(code, output).toBe(0);
  expect(output).not.toMatch(/skipped/);
});
