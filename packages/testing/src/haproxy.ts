import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './redis.ts';

/*
 * A real HAProxy (Debian's `haproxy` package) in front of api replicas, for tests: its config is
 * written to a temporary directory, it runs in the foreground as a child process on an ephemeral
 * loopback port, and it is stopped by its PID. It health-checks every replica on /readyz and
 * balances round-robin, so consecutive requests go to different replicas. Its runtime API (a
 * UNIX socket) tells which replicas it holds for up.
 */

export interface HaproxyBackend {
  name: string;
  port: number;
}

export interface HaproxyOptions {
  /** Health-check interval (default 250 ms: a dead replica is out of rotation within about that). */
  checkIntervalMs?: number;
  /** Failed checks before a replica is marked down (default 2) and passed ones before it is up again (default 1). */
  fall?: number;
  rise?: number;
}

export interface HaproxyHandle {
  url: string;
  port: number;
  pid: number;
  /** The generated configuration file. */
  configPath: string;
  /** HAProxy's own output (its warnings and alerts). */
  output(): string;
  /** Each backend server's state as HAProxy sees it ('UP', 'DOWN', 'MAINT', …), by name. */
  serverStates(): Promise<Record<string, string>>;
  /** Waits until every named server (default all) is in `state`. */
  waitForStates(state: string, names?: string[], timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** The haproxy binary: on the PATH, else where Debian puts it (/usr/sbin, off a non-root PATH). */
function haproxyBin(): string | undefined {
  return ['haproxy', '/usr/sbin/haproxy'].find((bin) => spawnSync(bin, ['-v'], { stdio: 'ignore' }).status === 0);
}

export function hasHaproxy(): boolean {
  return haproxyBin() !== undefined;
}

/**
 * The configuration used in tests: the same timeouts, checks and retries as docker/haproxy.cfg
 * (long-lived answers for `?wait` and event streams, health checks on /readyz, bodies streamed
 * through; docker.test.ts compares them), with loopback addresses, shorter check intervals, and
 * round-robin rather than leastconn so that consecutive requests go to different replicas.
 */
export function haproxyConfig(opts: { port: number; socket: string; backends: HaproxyBackend[] } & HaproxyOptions): string {
  const inter = opts.checkIntervalMs ?? 250;
  return `global
    stats socket ${opts.socket} mode 600 level admin
    maxconn 4096

defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-request 30s
    timeout http-keep-alive 10s
    timeout queue 10s
    retries 3
    option redispatch 1

frontend darkroom
    bind 127.0.0.1:${opts.port}
    option forwardfor
    default_backend api

backend api
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz
    http-check expect status 200
    default-server check inter ${inter} fastinter ${inter} downinter ${inter} fall ${opts.fall ?? 2} rise ${opts.rise ?? 1}
${opts.backends.map((b) => `    server ${b.name} 127.0.0.1:${b.port}`).join('\n')}
`;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

export async function startHaproxy(backends: HaproxyBackend[], opts: HaproxyOptions = {}): Promise<HaproxyHandle> {
  const bin = haproxyBin();
  if (!bin) throw new Error('tests with api replicas need HAProxy: apt-get install haproxy');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-haproxy-'));
  const port = await freePort();
  const socket = path.join(dir, 'admin.sock');
  const configPath = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(configPath, haproxyConfig({ port, socket, backends, ...opts }));
  // -db: stay in the foreground, so the child's PID is HAProxy's own.
  const proc = spawn(bin, ['-db', '-f', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 2_000_000) out = out.slice(-1_000_000);
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  void exited.then(() => live.delete(proc));

  const runtime = (command: string) =>
    new Promise<string>((resolve, reject) => {
      const conn = net.connect(socket);
      let text = '';
      conn.on('data', (d) => {
        text += d.toString();
      });
      conn.on('end', () => resolve(text));
      conn.on('error', reject);
      conn.write(`${command}\n`);
    });
  const serverStates = async () => {
    const csv = await runtime('show stat');
    const [header, ...rows] = csv.trim().split('\n');
    const cols = (header ?? '').replace(/^# /, '').split(',');
    const [px, sv, st] = ['pxname', 'svname', 'status'].map((c) => cols.indexOf(c));
    const states: Record<string, string> = {};
    for (const row of rows) {
      const f = row.split(',');
      if (f[px!] === 'api' && f[sv!] !== 'BACKEND') states[f[sv!] ?? ''] = (f[st!] ?? '').split(' ')[0] ?? '';
    }
    return states;
  };
  const waitForStates = async (state: string, names = backends.map((b) => b.name), timeoutMs = 15_000) => {
    const deadline = Date.now() + timeoutMs;
    let last: Record<string, string> = {};
    for (;;) {
      last = await serverStates().catch(() => ({}));
      if (names.every((n) => last[n] === state)) return;
      if (Date.now() > deadline)
        throw new Error(`haproxy servers ${names.join(', ')} not ${state} within ${timeoutMs} ms: ${JSON.stringify(last)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid!, 'SIGTERM');
    await exited;
    fs.rmSync(dir, { recursive: true, force: true });
  };

  // Ready once the runtime API answers and every replica has passed its health check.
  const deadline = Date.now() + 15_000;
  while (!fs.existsSync(socket)) {
    if (proc.exitCode !== null) throw new Error(`haproxy exited (${proc.exitCode}):\n${out}`);
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`haproxy did not start within 15 s:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  try {
    await waitForStates('UP');
  } catch (err) {
    await stop();
    throw err;
  }
  return { url: `http://127.0.0.1:${port}`, port, pid: proc.pid!, configPath, output: () => out, serverStates, waitForStates, stop };
}
