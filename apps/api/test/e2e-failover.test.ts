import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { JobStatusBody } from '@darkroom/contracts';
import {
  freePort,
  type ProcessHandle,
  type SentinelGroup,
  STATIONS,
  sleep,
  startApi,
  startSentinelGroup,
  startWorker,
  uniquePrefix,
  waitFor,
} from '@darkroom/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { FINAL } from './helpers.ts';

/*
 * Losing the Redis master under load. The api and a worker find Redis only through three
 * Sentinels (REDIS_URL points at a port where nothing listens); a few stations submit in a loop
 * while the master is SIGKILLed. Every answer is a 202 or a 503 with Retry-After (never a hang,
 * never another error), 202s come back within seconds of the promotion, and the worker carries
 * on without a restart. With DARKROOM_REDIS_MIN_REPLICAS=1 no acknowledged job is lost and none
 * runs twice; with 0 the same figures are measured and recorded.
 */

const CLIENTS = 3;
const CLIENT_TIMEOUT_MS = 5000;
const PAUSE_MS = 25;
const WARMUP_MS = 2000;
/** The load stops this long after the first 202 that followed the kill (or after LOAD_CAP_MS). */
const AFTER_RECOVERY_MS = 2000;
const LOAD_CAP_MS = 40_000;

interface Answer {
  start: number;
  end: number;
  kind: 'accepted' | 'unavailable' | 'other' | 'timeout' | 'error';
  status?: number;
  retryAfter?: string | null;
  id?: string;
}

export interface FailoverFigures {
  minReplicas: number;
  replicas: number;
  answers: number;
  duringFailover: Record<Answer['kind'], number>;
  /** The longest any answer took during the failover. */
  slowestAnswerMs: number;
  /** From the kill to the Sentinels naming a new master. */
  promotionMs: number;
  /** From the kill to the first 202 of a request sent after it. */
  firstAcceptedAfterKillMs: number | null;
  acknowledged: number;
  acknowledgedLost: number;
  notCompleted: number;
  ranTwice: number;
  completedTwice: number;
  workerRestarted: boolean;
}

let group: SentinelGroup | undefined;
let procs: ProcessHandle[] = [];
let dataDir: string | undefined;
afterEach(async () => {
  await Promise.all(procs.map((p) => p.stop('SIGKILL')));
  procs = [];
  await group?.stop();
  group = undefined;
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

async function failover(minReplicas: number, replicas: number): Promise<{ figures: FailoverFigures; answers: Answer[] }> {
  group = await startSentinelGroup({ replicas, downAfterMs: 1000, failoverTimeoutMs: 3000 });
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-failover-'));
  const port = await freePort();
  const env: Record<string, string> = {
    // Nothing listens here: a connection that did not go through the Sentinels would fail.
    REDIS_URL: `redis://127.0.0.1:${await freePort()}`,
    DARKROOM_REDIS_SENTINELS: group.sentinels,
    DARKROOM_REDIS_SENTINEL_NAME: group.name,
    DARKROOM_REDIS_MIN_REPLICAS: String(minReplicas),
    DARKROOM_REDIS_PREFIX: uniquePrefix('fo'),
    DARKROOM_DATA_DIR: dataDir,
    DARKROOM_API_KEYS: `${STATIONS.alpha.name}:${STATIONS.alpha.key}`,
    DARKROOM_ADMIN_TOKEN: 'admin-token-0123456789abcdef',
    DARKROOM_STATION_MAX_PENDING: 'off',
    DARKROOM_MAX_QUEUE_SIZE: 'off',
    DARKROOM_WORKER_PIPELINES: 'synthetic',
    DARKROOM_WORKER_METRICS_PORT: '0',
    DARKROOM_RETRY_BACKOFF_MS: '200',
    DARKROOM_LOCK_DURATION_MS: '5000',
    DARKROOM_STALLED_INTERVAL_MS: '2000',
  };
  const api = await startApi({ ...env, PORT: String(port) });
  procs.push(api);
  const worker = await startWorker({ ...env, DARKROOM_WORKER_NAME: 'fo1' });
  procs.push(worker);
  const workerPid = worker.proc.pid;
  const base = `http://127.0.0.1:${port}`;
  const headers = { authorization: `Bearer ${STATIONS.alpha.key}`, 'content-type': 'application/json' };
  const body = JSON.stringify({ pipeline: 'synthetic', params: { steps: 1, stepMs: 0 } });

  const answers: Answer[] = [];
  let stopAt = Date.now() + LOAD_CAP_MS;
  const client = async () => {
    while (Date.now() < stopAt) {
      const start = Date.now();
      try {
        const res = await fetch(`${base}/v1/jobs`, { method: 'POST', headers, body, signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) });
        const json = (await res.json()) as { id?: string };
        answers.push({
          start,
          end: Date.now(),
          kind: res.status === 202 ? 'accepted' : res.status === 503 ? 'unavailable' : 'other',
          status: res.status,
          retryAfter: res.headers.get('retry-after'),
          ...(res.status === 202 && json.id ? { id: json.id } : {}),
        });
      } catch (err) {
        answers.push({ start, end: Date.now(), kind: (err as Error).name === 'TimeoutError' ? 'timeout' : 'error' });
      }
      await sleep(PAUSE_MS);
    }
  };
  const load = Promise.all(Array.from({ length: CLIENTS }, client));

  await sleep(WARMUP_MS);
  const oldMaster = await group.masterPortNow();
  const killedAt = Date.now();
  await group.killMaster();
  const promotedAt = await waitFor(async () => ((await group!.masterPortNow()) !== oldMaster ? Date.now() : undefined), {
    timeoutMs: 30_000,
    intervalMs: 100,
    what: 'a replica to be promoted',
  });
  const firstAccepted = await waitFor(() => answers.find((a) => a.start > killedAt && a.kind === 'accepted'), {
    timeoutMs: Math.max(1000, stopAt - Date.now()),
    intervalMs: 50,
    what: 'a 202 after the failover',
  }).catch(() => undefined);
  stopAt = Math.min(stopAt, Date.now() + AFTER_RECOVERY_MS);
  await load;

  // Every acknowledged job, followed to its end through the api.
  const acked = answers.filter((a) => a.id).map((a) => a.id!);
  const finals = new Map<string, string>();
  await waitFor(
    async () => {
      for (const id of acked) {
        if (finals.has(id)) continue;
        const res = await fetch(`${base}/v1/jobs/${id}`, { headers, signal: AbortSignal.timeout(CLIENT_TIMEOUT_MS) });
        if (res.status === 404) finals.set(id, 'lost');
        else if (res.status === 200) {
          const job = (await res.json()) as JobStatusBody;
          if (FINAL.includes(job.status)) finals.set(id, job.status);
        }
      }
      return finals.size === acked.length || undefined;
    },
    { timeoutMs: 45_000, intervalMs: 500, what: 'every acknowledged job to end' },
  ).catch(() => undefined);

  const lines = worker
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => {
      try {
        return JSON.parse(l) as { msg?: string; jobId?: string };
      } catch {
        return {};
      }
    });
  const times = (msg: string) => {
    const n = new Map<string, number>();
    for (const l of lines) if (l.msg === msg && l.jobId) n.set(l.jobId, (n.get(l.jobId) ?? 0) + 1);
    return [...n.values()].filter((c) => c > 1).length;
  };
  // During the failover: the requests sent from the kill up to the first one accepted after it.
  const end = firstAccepted?.start ?? Date.now();
  const during = answers.filter((a) => a.start >= killedAt && a.start <= end);
  const count = (kind: Answer['kind']) => during.filter((a) => a.kind === kind).length;
  const figures: FailoverFigures = {
    minReplicas,
    replicas,
    answers: answers.length,
    duringFailover: {
      accepted: count('accepted'),
      unavailable: count('unavailable'),
      other: count('other'),
      timeout: count('timeout'),
      error: count('error'),
    },
    slowestAnswerMs: Math.max(0, ...during.map((a) => a.end - a.start)),
    promotionMs: promotedAt - killedAt,
    firstAcceptedAfterKillMs: firstAccepted ? firstAccepted.end - killedAt : null,
    acknowledged: acked.length,
    acknowledgedLost: [...finals.values()].filter((s) => s === 'lost').length,
    notCompleted: acked.length - [...finals.values()].filter((s) => s === 'completed').length,
    ranTwice: times('job started'),
    completedTwice: times('job completed'),
    workerRestarted: worker.proc.exitCode !== null || worker.proc.signalCode !== null || worker.proc.pid !== workerPid,
  };
  console.log(`failover figures: ${JSON.stringify(figures)}`);
  if (process.env.DARKROOM_FAILOVER_REPORT) {
    fs.appendFileSync(process.env.DARKROOM_FAILOVER_REPORT, `${JSON.stringify(figures)}\n`);
  }
  return { figures, answers };
}

/** What holds whatever the replica count asked for: answers are 202 or 503 + Retry-After, quickly, and service resumes by itself. */
function expectFailFastAndRecovery({ figures, answers }: { figures: FailoverFigures; answers: Answer[] }) {
  expect(answers.filter((a) => a.kind === 'timeout' || a.kind === 'error')).toEqual([]);
  expect(answers.filter((a) => a.kind === 'other').map((a) => a.status)).toEqual([]);
  const refused = answers.filter((a) => a.kind === 'unavailable');
  expect(refused.length).toBeGreaterThan(0);
  for (const a of refused) expect(Number(a.retryAfter)).toBeGreaterThan(0);
  expect(figures.firstAcceptedAfterKillMs).not.toBeNull();
  // Within seconds of the promotion.
  expect(figures.firstAcceptedAfterKillMs!).toBeLessThan(figures.promotionMs + 10_000);
  expect(figures.workerRestarted).toBe(false);
}

describe('the Redis master is lost under load (Sentinel)', () => {
  it('with DARKROOM_REDIS_MIN_REPLICAS=1: 503 + Retry-After during the failover, 202 again after it, no acknowledged job lost or run twice', async () => {
    // Two replicas: once one is promoted, the other is the replica a submit waits for.
    const run = await failover(1, 2);
    expectFailFastAndRecovery(run);
    expect(run.figures.acknowledged).toBeGreaterThan(0);
    expect(run.figures.acknowledgedLost).toBe(0);
    expect(run.figures.notCompleted).toBe(0);
    expect(run.figures.completedTwice).toBe(0);
  }, 150_000);

  it('with DARKROOM_REDIS_MIN_REPLICAS=0 (the default): the same figures, measured', async () => {
    const run = await failover(0, 1);
    expectFailFastAndRecovery(run);
  }, 150_000);
});
