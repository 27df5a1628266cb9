import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort, waitForPing } from './redis.ts';
import { waitFor } from './wait.ts';

/*
 * A real Redis Cluster for tests: three masters, each a private `redis-server --cluster-enabled
 * yes` on an ephemeral loopback port, joined by `redis-cli --cluster create` (no replicas).
 */

export interface RedisClusterHandle {
  /** `host:port,…` of its masters: DARKROOM_REDIS_CLUSTER_NODES. */
  nodes: string;
  ports: number[];
  stop(): Promise<void>;
}

export async function startRedisCluster(masters = 3): Promise<RedisClusterHandle> {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-cluster-'));
  const procs: ChildProcess[] = [];
  const cleanupOnExit = () => {
    for (const p of procs) p.kill('SIGKILL');
  };
  process.once('exit', cleanupOnExit);
  const ports: number[] = [];
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    const dir = path.join(root, String(port));
    fs.mkdirSync(dir);
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
    args.push('--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000');
    args.push('--logfile', path.join(dir, 'redis.log'));
    procs.push(spawn('redis-server', args, { stdio: 'ignore' }));
    await waitForPing(`redis://127.0.0.1:${port}`, 10_000);
    ports.push(port);
  }
  const created = spawnSync(
    'redis-cli',
    ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`);
  for (const port of ports) {
    const r = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
    r.on('error', () => {});
    await waitFor(async () => /cluster_state:ok/.test(String(await r.call('CLUSTER', 'INFO'))) || undefined, {
      timeoutMs: 20_000,
      intervalMs: 100,
      what: `cluster node ${port} to see the cluster as ok`,
    });
    r.disconnect();
  }
  return {
    nodes: ports.map((p) => `127.0.0.1:${p}`).join(','),
    ports,
    stop: async () => {
      await Promise.all(
        procs.map(
          (p) =>
            new Promise<void>((resolve) => {
              if (p.exitCode !== null || p.signalCode !== null) return resolve();
              p.once('exit', () => resolve());
              p.kill('SIGKILL');
            }),
        ),
      );
      process.off('exit', cleanupOnExit);
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}
