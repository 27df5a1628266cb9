import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { DarkroomClient } from '@darkroom/client';
import { ADMIN_TOKEN, type FixtureServer, REPO_ROOT, STATIONS, type System, serveFixtures, startSystem, waitFor } from '@darkroom/testing';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/*
 * The `darkroom` command as a user runs it: a child process (stdout and stderr are pipes, so
 * never a terminal) against the real api and worker processes.
 */

const MAIN = path.join(REPO_ROOT, 'apps/cli/src/main.ts');
// The commands run in a scratch directory, so the tsx loader is named by its file.
const TSX = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const BIN = path.join(REPO_ROOT, 'apps/cli/bin/darkroom.js');
const PHOTO = path.join(REPO_ROOT, 'examples/photo.jpg'); // 2725×2225 JPEG
let sys: System;
let dir: string;
let client: DarkroomClient;
let images: FixtureServer;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-cli-'));
  // --image-url fetches from a server on loopback, which the api refuses unless allowed.
  sys = await startSystem({ env: { DARKROOM_INPUT_URL_ALLOW_PRIVATE: 'true' } });
  client = new DarkroomClient({ baseUrl: sys.url, apiKey: STATIONS.alpha.key });
  images = await serveFixtures();
});
afterAll(async () => {
  await images?.close();
  await sys?.stop();
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  /** The bytes of stdout. */
  raw: Buffer;
  stderr: string;
}

/** Starts `darkroom …` (`env` replaces the station's URL and key; undefined leaves one out), to watch while it runs. */
function start(args: string[], opts: { env?: Record<string, string | undefined>; stdin?: Buffer; entry?: string } = {}) {
  const env: Record<string, string> = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' };
  for (const [k, v] of Object.entries({ DARKROOM_URL: sys.url, DARKROOM_API_KEY: STATIONS.alpha.key, ...opts.env })) {
    if (v !== undefined) env[k] = v;
  }
  const child = spawn(
    process.execPath,
    opts.entry ? [opts.entry, ...args] : ['--conditions=@darkroom/source', '--import', TSX, MAIN, ...args],
    { cwd: dir, env },
  );
  const out: Buffer[] = [];
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
  });
  child.stdin.on('error', () => {}); // a command that exits without reading stdin
  child.stdin.end(opts.stdin);
  const done = new Promise<{ code: number | null; stdout: Buffer; stderr: string }>((resolve) =>
    child.once('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr })),
  );
  return {
    child,
    done,
    stderr: () => stderr,
    stderrMatches: (re: RegExp) => waitFor(() => re.test(stderr), { timeoutMs: 20_000, what: `stderr to match ${re}` }).then(() => {}),
  };
}

/** Runs `darkroom …` to its end. */
async function darkroom(args: string[], opts: Parameters<typeof start>[1] = {}): Promise<Run> {
  const { code, stdout, stderr } = await start(args, opts).done;
  return { code, stdout: stdout.toString(), raw: stdout, stderr };
}

const pipelineAdmin = (name: string, action: 'pause' | 'resume') =>
  fetch(`${sys.url}/v1/admin/pipelines/${name}/${action}`, { method: 'POST', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });

const ESC = '\x1b';

describe('darkroom submit', () => {
  it('submits a photo, waits with plain progress lines, and saves a WebP of the right size', async () => {
    const r = await darkroom(['submit', PHOTO, '--op', 'resize:width=512', '--op', 'format:type=webp', '--wait', '-o', 'out.webp']);
    expect(r.code, r.stderr).toBe(0);
    expect(await sharp(path.join(dir, 'out.webp')).metadata()).toMatchObject({ format: 'webp', width: 512, height: 418 });
    expect(r.stdout).toMatch(/^edit_\w+ completed 512×418 image\/webp, \d+ bytes in \d+ ms$/m);
    expect(r.stdout).toContain('saved out.webp');
    expect(r.stderr).toMatch(/^submitted edit_\w+$/m);
    expect(r.stderr).toMatch(/^completed$/m);
    expect(r.stdout + r.stderr).not.toContain(ESC);
    expect(fs.readdirSync(dir).filter((f) => f.includes('out.webp'))).toEqual(['out.webp']);
  });

  it('shows the queue position, then the progress, one plain line each, no escape codes when piped', async () => {
    await pipelineAdmin('synthetic', 'pause');
    let resumed = false;
    try {
      const r = start(['submit', '--pipeline', 'synthetic', '--param', 'steps=4', '--param', 'stepMs=200', '--wait']);
      await r.stderrMatches(/^queued position 1\b/m);
      await pipelineAdmin('synthetic', 'resume');
      resumed = true;
      const { code, stdout, stderr } = await r.done;
      expect(code, stderr).toBe(0);
      const lines = stderr.trim().split('\n');
      expect(lines[0]).toMatch(/^submitted synthetic_\w+$/);
      expect(lines[1]).toMatch(/^queued position 1( about \d+ s)?$/);
      expect(lines).toEqual(expect.arrayContaining([expect.stringMatching(/^active \d+% step \d\/4$/)]));
      expect(lines.at(-1)).toBe('completed');
      expect(new Set(lines).size).toBe(lines.length); // a line only when the state reads differently
      expect(stdout.toString() + stderr).not.toContain(ESC);
    } finally {
      if (!resumed) await pipelineAdmin('synthetic', 'resume');
    }
  });

  it('reads the image from stdin and writes the result to stdout with -o -', async () => {
    const r = await darkroom(['submit', '-', '--op', 'resize:width=64', '--op', 'format:type=png', '-o', '-'], {
      stdin: fs.readFileSync(PHOTO),
    });
    expect(r.code, r.stderr).toBe(0);
    expect(await sharp(r.raw).metadata()).toMatchObject({ format: 'png', width: 64 });
    expect(r.stderr).toMatch(/completed 64×\d+ image\/png/);
  });

  it('prints the body as JSON with --json, and only that on stdout', async () => {
    const r = await darkroom(['submit', '--pipeline', 'synthetic', '--params', '{"steps":1,"stepMs":0}', '--priority', 'high', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const job = JSON.parse(r.stdout);
    expect(job).toMatchObject({ status: 'queued', pipeline: 'synthetic', priority: 'high', links: { self: `/v1/jobs/${job.id}` } });

    const waited = await darkroom(['submit', '--pipeline', 'synthetic', '--param', 'steps=2', '--param', 'stepMs=10', '--wait', '--json']);
    expect(waited.code, waited.stderr).toBe(0);
    expect(JSON.parse(waited.stdout)).toMatchObject({ status: 'completed', result: { contentType: 'image/png' } });
  });

  it('submits by --image-url: the server fetches the image; a missing one is exit 3 naming imageUrl', async () => {
    const url = `${images.url}/flowers.jpeg`;
    const r = await darkroom(['submit', '--image-url', url, '--op', 'resize:width=320', '--op', 'format:type=webp', '-o', 'url.webp']);
    expect(r.code, r.stderr).toBe(0);
    expect(await sharp(path.join(dir, 'url.webp')).metadata()).toMatchObject({ format: 'webp', width: 320, height: 180 });
    expect(r.stdout).toMatch(/^edit_\w+ completed 320×180 image\/webp/m);

    const missing = await darkroom(['submit', '--image-url', `${images.url}/missing.jpeg`, '--op', 'flip', '--json']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/\(422 invalid_image\)/);
    expect(missing.stderr).toMatch(/^ {2}imageUrl: .+$/m);
    expect(JSON.parse(missing.stdout).errors).toEqual([{ path: 'imageUrl', code: 'unreachable', message: expect.any(String) }]);

    const both = await darkroom(['submit', PHOTO, '--image-url', url, '--op', 'flip']);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('not both');
  });

  it('sends --timeout-seconds, --ttl-seconds and --webhook-events to the API', async () => {
    const limited = await darkroom([
      'submit',
      '--pipeline',
      'synthetic',
      '--params',
      '{"steps":50,"stepMs":100}',
      '--timeout-seconds',
      '1',
      '--wait',
    ]);
    expect(limited.code, limited.stderr).toBe(1);
    expect(limited.stdout).toMatch(/^synthetic_\w+ failed timeout: /m);

    // Above the operator's time-to-live (3600 s by default): refused at its field, no job.
    const ttl = await darkroom(['submit', '--pipeline', 'synthetic', '--ttl-seconds', '3601']);
    expect(ttl.code).toBe(3);
    expect(ttl.stderr).toMatch(/^ {2}ttlSeconds: .+$/m);
    // Events without a webhook URL have nowhere to go: the API names the field.
    const events = await darkroom(['submit', '--pipeline', 'synthetic', '--webhook-events', 'started,completed']);
    expect(events.code).toBe(3);
    expect(events.stderr).toMatch(/^ {2}webhookEvents: .+$/m);
    const bad = await darkroom(['submit', '--pipeline', 'synthetic', '--ttl-seconds', '1.5']);
    expect(bad.code).toBe(2);
  });
});

describe('darkroom jobs, retry', () => {
  const asBeta = { env: { DARKROOM_API_KEY: STATIONS.beta.key } };
  const beta = () => new DarkroomClient({ baseUrl: sys.url, apiKey: STATIONS.beta.key });

  it('lists the station’s own jobs, newest first, filtered, as a table and as JSON', async () => {
    const c = beta();
    const done = await c.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0, width: 8, height: 8 } });
    await c.waitFor(done.id);
    await pipelineAdmin('synthetic', 'pause');
    try {
      const a = await c.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
      const b = await c.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });

      const text = await darkroom(['jobs', '--status', 'queued,active', '--pipeline', 'synthetic'], asBeta);
      expect(text.code, text.stderr).toBe(0);
      const [head, ...rows] = text.stdout.trimEnd().split('\n');
      expect(head).toMatch(/^ID +PIPELINE +STATUS +CREATED +AGE +DETAIL$/);
      expect(rows).toHaveLength(2);
      expect(rows[0]).toMatch(new RegExp(`^${b.id} +synthetic +queued +\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ +\\d+s +position \\d+`));
      expect(rows[1]).toMatch(new RegExp(`^${a.id} +synthetic +queued .* position \\d+`));

      const json = await darkroom(['jobs', '--json', '--limit', '2'], asBeta);
      expect(json.code, json.stderr).toBe(0);
      const listed = JSON.parse(json.stdout) as { id: string }[];
      expect(listed.map((j) => j.id)).toEqual([b.id, a.id]);
      expect(listed[0]).toEqual(await c.status(b.id));

      const completed = JSON.parse((await darkroom(['jobs', '--status', 'completed', '--since', '10m', '--json'], asBeta)).stdout);
      expect(completed.map((j: { id: string }) => j.id)).toEqual([done.id]);
      expect(JSON.parse((await darkroom(['jobs', '--pipeline', 'edit', '--json'], asBeta)).stdout)).toEqual([]);
      expect((await darkroom(['jobs', '--pipeline', 'edit'], asBeta)).stdout).toBe('no jobs\n');
      // Another station's jobs are not in alpha's list.
      const alpha = JSON.parse((await darkroom(['jobs', '--limit', '200', '--json'])).stdout) as { id: string }[];
      expect(alpha.some((j) => [a.id, b.id, done.id].includes(j.id))).toBe(false);

      const bad = await darkroom(['jobs', '--status', 'sleeping'], asBeta);
      expect(bad.code).toBe(3);
      expect(bad.stderr).toMatch(/^ {2}status: .+$/m);
      expect((await darkroom(['jobs', '--limit', '0'], asBeta)).code).toBe(2);
      await c.cancel(a.id);
      await c.cancel(b.id);
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
  });

  it('follows the pages past 100 jobs for a larger --limit', async () => {
    const c = beta();
    for (let i = 0; i < 6; i++) {
      await Promise.all(
        Array.from({ length: 20 }, () => c.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0, width: 8, height: 8 } })),
      );
    }
    const expected: string[] = [];
    for await (const j of c.eachJob()) expected.push(j.id);
    expect(expected.length).toBeGreaterThan(120);
    const r = await darkroom(['jobs', '--limit', '110', '--json'], asBeta);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { id: string }[]).map((j) => j.id)).toEqual(expected.slice(0, 110));
    const all = JSON.parse((await darkroom(['jobs', '--limit', '1000', '--json'], asBeta)).stdout) as { id: string }[];
    expect(all.map((j) => j.id)).toEqual(expected);
  });

  it('retries a cancelled job (linked both ways); retrying a completed job is exit 3 with the 409', async () => {
    const sub = await darkroom(['submit', '--pipeline', 'synthetic', '--params', '{"steps":50,"stepMs":100}', '--json']);
    expect(sub.code, sub.stderr).toBe(0);
    const old = JSON.parse(sub.stdout) as { id: string };
    expect((await darkroom(['cancel', old.id])).code).toBe(0);
    expect((await client.waitFor(old.id, { timeoutMs: 20_000 })).status).toBe('cancelled');

    const r = await darkroom(['retry', old.id, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const again = JSON.parse(r.stdout) as { id: string; retryOf: string; status: string };
    expect(again.id).not.toBe(old.id);
    expect(again.retryOf).toBe(old.id);
    expect(['queued', 'active']).toContain(again.status);
    expect((await client.status(old.id)).retriedBy).toBe(again.id);
    const shown = await darkroom(['status', old.id]);
    expect(shown.stdout).toMatch(new RegExp(`^retried as +${again.id}$`, 'm'));
    const twice = await darkroom(['retry', old.id]);
    expect(twice.code).toBe(3);
    expect(twice.stderr).toMatch(/\(409 conflict\)/);
    await client.cancel(again.id);

    const finished = await client.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
    await client.waitFor(finished.id);
    const refused = await darkroom(['retry', finished.id]);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(/^darkroom: .*\(409 conflict\)$/m);
    expect(refused.stdout).toBe('');
    expect((await darkroom(['retry'])).code).toBe(2);
  });

  it('retry --wait -o follows the new job and saves its result', async () => {
    await pipelineAdmin('synthetic', 'pause');
    let id: string;
    try {
      id = (await client.submit({ pipeline: 'synthetic', params: { steps: 2, stepMs: 10, width: 24, height: 16 } })).id;
      await client.cancel(id);
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
    const r = await darkroom(['retry', id, '-o', 'retried.png']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`^submitted synthetic_\\w+ \\(retry of ${id}\\)$`, 'm'));
    expect(r.stdout).toMatch(/^synthetic_\w+ completed 24×16 image\/png/m);
    expect(await sharp(path.join(dir, 'retried.png')).metadata()).toMatchObject({ format: 'png', width: 24, height: 16 });
  });
});

describe('darkroom status, cancel, queue, pipelines', () => {
  it('shows a job, as text and as JSON', async () => {
    const job = await client.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
    await client.waitFor(job.id);
    const text = await darkroom(['status', job.id]);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^id +${job.id}$`, 'm'));
    expect(text.stdout).toMatch(/^status +completed$/m);
    expect(text.stdout).toMatch(/^result +256×256 image\/png, \d+ bytes, sha256 [0-9a-f]{64}$/m);
    const json = await darkroom(['status', job.id, '--json']);
    expect(JSON.parse(json.stdout)).toEqual(await client.status(job.id));

    const saved = await darkroom(['status', job.id, '-o', 'status.png']);
    expect(saved.code, saved.stderr).toBe(0);
    expect((await sharp(path.join(dir, 'status.png')).metadata()).format).toBe('png');
  });

  it('cancels a job; a second cancel is an API error (exit 3); a waiting submit whose job is cancelled exits 1', async () => {
    await pipelineAdmin('synthetic', 'pause');
    try {
      const job = await client.submit({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });
      const r = await darkroom(['cancel', job.id]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${job.id} cancelled\n`);
      const again = await darkroom(['cancel', job.id]);
      expect(again.code).toBe(3);
      expect(again.stderr).toMatch(/\(409 conflict\)/);

      const waiting = start(['submit', '--pipeline', 'synthetic', '--wait']);
      await waiting.stderrMatches(/^queued position \d+/m);
      const id = /^submitted (\w+)$/m.exec(waiting.stderr())![1]!;
      await client.cancel(id);
      const { code, stdout } = await waiting.done;
      expect(code).toBe(1);
      expect(stdout.toString()).toBe(`${id} cancelled\n`);
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
  });

  it('prints the queue as a table, and as JSON', async () => {
    const r = await darkroom(['queue']);
    expect(r.code, r.stderr).toBe(0);
    const [head, ...rows] = r.stdout.split('\n');
    expect(head).toMatch(/^PIPELINE +STATE +WAITING +CRITICAL +HIGH +NORMAL +LOW +ACTIVE +WORKERS +AVG MS +PER MIN +DONE +FAILED$/);
    expect(rows.some((l) => /^edit +running +\d+/.test(l))).toBe(true);
    expect(rows.some((l) => /^synthetic +running +\d+/.test(l))).toBe(true);
    expect(r.stdout).toMatch(/^WORKER +PIPELINES/m);
    expect(r.stdout).toMatch(/^station alpha: \d+ pending of 100, highest priority critical$/m);
    const json = JSON.parse((await darkroom(['queue', '--json'])).stdout);
    expect(json.pipelines.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['edit', 'synthetic']));
  });

  it('lists the pipelines with their params as flags, and as JSON', async () => {
    const r = await darkroom(['pipelines']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('edit (takes an image)');
    expect(r.stdout).toContain('  --op resize:[width=<int 1–16384>],[height=<int 1–16384>],[fit=<cover|contain|fill|inside|outside>]');
    expect(r.stdout).toContain('  --op format:type=<jpeg|png|webp|avif>,[quality=<int 1–100>]');
    expect(r.stdout).toContain('synthetic (no image)');
    expect(r.stdout).toContain('  --param steps=<int 1–1000, default 10>');
    const json = JSON.parse((await darkroom(['pipelines', '--json'])).stdout);
    expect(json.pipelines.find((p: { name: string }) => p.name === 'edit')).toMatchObject({ acceptsImage: true });
  });
});

describe('errors and exit codes', () => {
  it('a 415 says which formats are accepted', async () => {
    fs.writeFileSync(path.join(dir, 'notes.jpg'), 'these are not the pixels you are looking for');
    const r = await darkroom(['submit', 'notes.jpg', '--op', 'flip']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^darkroom: .* \(415 unsupported_media_type\)$/m);
    expect(r.stderr).toContain('JPEG, PNG, WebP, AVIF, GIF, TIFF');
    expect(r.stderr).toContain('by its bytes, not by its file name');
    expect(r.stdout).toBe('');
  });

  it('a missing key says how to pass one; a wrong one says it was refused', async () => {
    const missing = await darkroom(['queue'], { env: { DARKROOM_API_KEY: undefined } });
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('(401 unauthorized)');
    expect(missing.stderr).toContain('pass a station key with --key <key> or set DARKROOM_API_KEY');
    const wrong = await darkroom(['queue', '--key', 'nope']);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toContain('the API refused this key');
  });

  it('lists each field error by its path; --json prints the problem', async () => {
    const r = await darkroom(['submit', PHOTO, '--op', 'resize:width=0', '--priority', 'urgent', '--json']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^ {2}params\.operations\.0\.width: .+$/m);
    expect(r.stderr).toMatch(/^ {2}priority: .+$/m);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 400, code: 'invalid_request', errors: expect.any(Array) });
  });

  it('usage errors exit 2, with a pointer to the help', async () => {
    for (const args of [
      ['frobnicate'],
      ['submit', PHOTO, '--nope'],
      ['submit', PHOTO, '--op', 'resize:width'],
      ['submit', 'missing.jpg'],
      ['submit', '--params', '[1,2]', '--pipeline', 'synthetic'],
      ['status'],
      [],
    ]) {
      const r = await darkroom(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/darkroom/);
    }
  });

  it('an unreachable API is exit 3 with where it looked', async () => {
    const r = await darkroom(['queue', '--url', 'http://127.0.0.1:9', '-q']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('cannot reach the Darkroom API at http://127.0.0.1:9');
  });

  it('stops waiting after --timeout with exit 124; the job goes on', async () => {
    await pipelineAdmin('synthetic', 'pause');
    try {
      const r = await darkroom(['submit', '--pipeline', 'synthetic', '--timeout', '0.5']);
      expect(r.code).toBe(124);
      const id = /submitted (\w+)/.exec(r.stderr)![1]!;
      expect(r.stderr).toContain(`darkroom status ${id}`);
      expect((await client.status(id)).status).toBe('queued');
      await client.cancel(id);
    } finally {
      await pipelineAdmin('synthetic', 'resume');
    }
  });
});

describe('interrupting', () => {
  it('Ctrl-C stops the wait with exit 130 and says how to follow the job, which goes on', async () => {
    const r = start(['submit', '--pipeline', 'synthetic', '--param', 'steps=20', '--param', 'stepMs=100', '--wait']);
    await r.stderrMatches(/^active /m);
    r.child.kill('SIGINT');
    const { code, stderr } = await r.done;
    expect(code).toBe(130);
    const id = /^submitted (\w+)$/m.exec(stderr)![1]!;
    expect(stderr).toContain(`stopped waiting; ${id} goes on: darkroom status ${id}`);
    expect(await client.waitFor(id)).toMatchObject({ status: 'completed' });
  });
});

describe('the bin', () => {
  it('runs from bin/darkroom.js', async () => {
    const r = await darkroom(['--version'], { entry: BIN });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe(`${JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'apps/cli/package.json'), 'utf8')).version}\n`);
  });
});
