import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, STATIONS, type System, startSystem } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The two npm packages as a station developer gets them: built, packed with `npm pack`, and
 * installed from the tarballs into an empty project outside the workspace, where neither the
 * workspace packages nor their dependencies can be found. The install runs offline: the
 * packages must need nothing from a registry.
 */

const run = promisify(execFile);
const PHOTO = path.join(REPO_ROOT, 'examples/photo.jpg'); // 2725×2225 JPEG
const WIDTH = 320;
const HEIGHT = Math.round((2225 * WIDTH) / 2725);
const TSC = createRequire(import.meta.url).resolve('typescript/bin/tsc');
let sys: System;
let tmp: string;
let station: string;
const packed: Record<string, { filename: string; files: string[] }> = {};
let env: Record<string, string>;

/** npm with nothing of this workspace's configuration (pnpm passes npm_config_* to its children). */
function npm(args: string[], cwd: string) {
  return run('npm', args, { cwd, env });
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-install-'));
  env = { PATH: process.env.PATH ?? '', HOME: tmp, npm_config_cache: path.join(tmp, 'npm-cache'), npm_config_update_notifier: 'false' };
  const [system] = await Promise.all([
    startSystem(),
    (async () => {
      for (const [name, dir] of [
        ['client', 'packages/client'],
        ['cli', 'apps/cli'],
      ] as const) {
        await run('pnpm', ['--filter', `./${dir}`, 'build'], { cwd: REPO_ROOT });
        const { stdout } = await npm(['pack', '--json', '--pack-destination', tmp], path.join(REPO_ROOT, dir));
        const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
        if (!info) throw new Error(`npm pack ${dir}: no tarball`);
        packed[name] = { filename: path.join(tmp, info.filename), files: info.files.map((f) => f.path) };
      }
      station = path.join(tmp, 'station');
      fs.mkdirSync(station);
      fs.writeFileSync(path.join(station, 'package.json'), JSON.stringify({ name: 'station', private: true, type: 'module' }));
      await npm(['install', '--offline', '--no-audit', '--no-fund', packed.client?.filename ?? '', packed.cli?.filename ?? ''], station);
    })(),
  ]);
  sys = system;
}, 240_000);
afterAll(async () => {
  await sys?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the npm packages', () => {
  it('ship the build, the README and the metadata, and no sources, tests or configs', () => {
    for (const [name, { files }] of Object.entries(packed)) {
      expect(files, name).toContain('package.json');
      expect(files, name).toContain('README.md');
      for (const f of files) expect(f, name).not.toMatch(/^(src|test|scripts|examples|bin)\/|tsconfig|vitest|\.ts$(?<!\.d\.ts$)/);
    }
    expect(packed.client?.files).toEqual(expect.arrayContaining(['dist/index.js', 'dist/index.d.ts']));
    expect(packed.cli?.files).toEqual(expect.arrayContaining(['dist/darkroom.js']));
    for (const dir of ['@darkroom/client', '@darkroom/cli']) {
      const pkg = JSON.parse(fs.readFileSync(path.join(station, 'node_modules', dir, 'package.json'), 'utf8'));
      expect(pkg.private, dir).toBeUndefined();
      expect(pkg.license, dir).toBe('MIT');
      expect(pkg.dependencies ?? {}, dir).toEqual({});
    }
    // Nothing but the two packages was installed.
    expect(fs.readdirSync(path.join(station, 'node_modules')).filter((d) => !d.startsWith('.'))).toEqual(['@darkroom']);
  });

  it('@darkroom/client: a station script submits a photo, waits and downloads the result', async () => {
    fs.writeFileSync(
      path.join(station, 'station.mjs'),
      `import { DarkroomClient, verifyStandardWebhook } from '@darkroom/client';
const darkroom = new DarkroomClient();
const job = await darkroom.submit({
  image: process.argv[2],
  pipeline: 'edit',
  params: { operations: [{ op: 'resize', width: ${WIDTH} }] },
});
const done = await darkroom.waitFor(job.id);
const file = await darkroom.download(done.id, 'station-out.jpg');
console.log(JSON.stringify({ status: done.status, result: done.result, bytes: file.bytes, verify: typeof verifyStandardWebhook }));
`,
    );
    const { stdout } = await run(process.execPath, ['station.mjs', PHOTO], {
      cwd: station,
      env: { ...env, DARKROOM_URL: sys.url, DARKROOM_API_KEY: STATIONS.alpha.key },
    });
    const out = JSON.parse(stdout);
    expect(out).toMatchObject({ status: 'completed', result: { width: WIDTH, height: HEIGHT }, verify: 'function' });
    const file = path.join(station, 'station-out.jpg');
    const meta = await sharp(file).metadata();
    expect([meta.format, meta.width, meta.height, fs.statSync(file).size]).toEqual(['jpeg', WIDTH, HEIGHT, out.bytes]);
  });

  it('@darkroom/client: its types check in a TypeScript project of the station', async () => {
    fs.writeFileSync(
      path.join(station, 'typed.ts'),
      `import { DarkroomClient, type JobStatusBody, type ParamsOf } from '@darkroom/client';
const params: ParamsOf<'edit'> = { operations: [{ op: 'resize', width: 64 }] };
const job: JobStatusBody = await new DarkroomClient().submit({ pipeline: 'edit', params });
// @ts-expect-error: an operation the contract does not know
const wrong: ParamsOf<'edit'> = { operations: [{ op: 'explode' }] };
console.log(job.status, wrong);
`,
    );
    const typeRoots = path.join(path.dirname(createRequire(import.meta.url).resolve('@types/node/package.json')), '..');
    fs.writeFileSync(
      path.join(station, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'nodenext', target: 'es2022', strict: true, noEmit: true, types: ['node'], typeRoots: [typeRoots] },
        files: ['typed.ts'],
      }),
    );
    const r = await run(process.execPath, [TSC, '-p', '.'], { cwd: station, env }).catch((e: { stdout: string }) => e);
    expect(r.stdout).toBe('');
  });

  it('@darkroom/cli: npx darkroom submits, waits and writes the result', async () => {
    const { stderr } = await run(
      'npx',
      ['--offline', 'darkroom', 'submit', PHOTO, '--op', `resize:width=${WIDTH}`, '--op', 'format:type=webp', '--wait', '-o', 'out.webp'],
      { cwd: station, env: { ...env, DARKROOM_URL: sys.url, DARKROOM_API_KEY: STATIONS.alpha.key } },
    );
    expect(stderr).toMatch(/completed/);
    const meta = await sharp(path.join(station, 'out.webp')).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', WIDTH, HEIGHT]);
  });
});
