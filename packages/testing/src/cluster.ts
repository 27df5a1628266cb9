import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
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
    // A node also listens on port + 10000 (its cluster bus), which another process may hold:
    // pick ports whose bus port is free too, and start again on another if it was taken meanwhile.
    for (let attempt = 1; ; attempt++) {
      const port = await freeClusterPort();
      const dir = path.join(root, String(port));
      fs.mkdirSync(dir);
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
      args.push('--cluster-enabled', 'yes', '--cluster-config-file', path.join(dir, 'nodes.conf'), '--cluster-node-timeout', '2000');
      args.push('--logfile', path.join(dir, 'redis.log'));
      const proc = spawn('redis-server', args, { stdio: 'ignore' });
      const exited = new Promise<'exited'>((resolve) => proc.once('exit', () => resolve('exited')));
      const up = await Promise.race([waitForPing(`redis://127.0.0.1:${port}`, 10_000).then(() => 'up' as const), exited]);
      if (up === 'up') {
        procs.push(proc);
        ports.push(port);
        break;
      }
      if (attempt >= 5) throw new Error(`redis-server (cluster node) would not start: see ${path.join(dir, 'redis.log')}`);
    }
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

/** A free port whose cluster bus port (port + 10000) is free too. */
async function freeClusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10000 <= 65535 && (await isFree(port + 10000))) return port;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}
