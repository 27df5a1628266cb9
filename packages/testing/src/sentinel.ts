import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort, waitForPing } from './redis.ts';
import { waitFor } from './wait.ts';

/*
 * A Redis that can lose a node, for failover tests: one master, its replicas and three Sentinels,
 * every one a private `redis-server` on an ephemeral loopback port (Sentinels are
 * `redis-server <conf> --sentinel`), with short failure detection so a failover takes seconds.
 */

export interface SentinelGroup {
  name: string;
  /** `host:port,…` of the Sentinels: DARKROOM_REDIS_SENTINELS. */
  sentinels: string;
  masterPort: number;
  replicaPorts: number[];
  /** The master as the Sentinels see it now. */
  masterPortNow(): Promise<number | undefined>;
  /** SIGKILLs the current master. */
  killMaster(): Promise<void>;
  stop(): Promise<void>;
}

export interface SentinelGroupOptions {
  replicas?: number;
  /** The master is down after this long without an answer (default 1000 ms). */
  downAfterMs?: number;
  failoverTimeoutMs?: number;
}

export async function startSentinelGroup(opts: SentinelGroupOptions = {}): Promise<SentinelGroup> {
  const name = 'mymaster';
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-sentinel-'));
  const procs = new Map<number, ChildProcess>();
  const cleanupOnExit = () => {
    for (const p of procs.values()) p.kill('SIGKILL');
  };
  process.once('exit', cleanupOnExit);

  const server = async (port: number, extra: string[]) => {
    const dir = path.join(root, String(port));
    fs.mkdirSync(dir);
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
    args.push('--logfile', path.join(dir, 'redis.log'), ...extra);
    procs.set(port, spawn('redis-server', args, { stdio: 'ignore' }));
    await waitForPing(`redis://127.0.0.1:${port}`, 10_000);
  };
  const masterPort = await freePort();
  await server(masterPort, []);
  const replicaPorts: number[] = [];
  for (let i = 0; i < (opts.replicas ?? 1); i++) {
    const port = await freePort();
    await server(port, ['--replicaof', '127.0.0.1', String(masterPort)]);
    replicaPorts.push(port);
  }
  const master = new Redis(masterPort, '127.0.0.1', { lazyConnect: true });
  await waitFor(
    async () => Number(/connected_slaves:(\d+)/.exec(await master.info('replication'))?.[1]) === replicaPorts.length || undefined,
    {
      timeoutMs: 10_000,
      what: 'the replicas to connect',
    },
  );
  master.disconnect();

  const sentinelPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const dir = path.join(root, `s${port}`);
    fs.mkdirSync(dir);
    const conf = path.join(dir, 'sentinel.conf');
    fs.writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${dir}`,
        `logfile ${path.join(dir, 'sentinel.log')}`,
        `sentinel monitor ${name} 127.0.0.1 ${masterPort} 2`,
        `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 3000}`,
        `sentinel parallel-syncs ${name} 1`,
        '',
      ].join('\n'),
    );
    procs.set(port, spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }));
    await waitForPing(`redis://127.0.0.1:${port}`, 10_000);
    sentinelPorts.push(port);
  }
  const sentinel = new Redis(sentinelPorts[0]!, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  sentinel.on('error', () => {});
  // A failover needs the Sentinels to know each other and the replicas first.
  await waitFor(
    async () => {
      const m = (await sentinel.call('SENTINEL', 'MASTER', name)) as string[];
      const field = (k: string) => Number(m[m.indexOf(k) + 1]);
      return (field('num-other-sentinels') === 2 && field('num-slaves') === replicaPorts.length) || undefined;
    },
    { timeoutMs: 20_000, intervalMs: 200, what: 'the Sentinels to find each other and the replicas' },
  );

  const masterPortNow = async () => {
    const addr = (await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name).catch(() => null)) as string[] | null;
    return addr ? Number(addr[1]) : undefined;
  };
  const killPort = async (port: number) => {
    const p = procs.get(port);
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGKILL');
    await exited;
  };
  return {
    name,
    sentinels: sentinelPorts.map((p) => `127.0.0.1:${p}`).join(','),
    masterPort,
    replicaPorts,
    masterPortNow,
    killMaster: async () => {
      const port = await masterPortNow();
      if (port) await killPort(port);
    },
    stop: async () => {
      sentinel.disconnect();
      await Promise.all([...procs.keys()].map(killPort));
      process.off('exit', cleanupOnExit);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
