/*
 * `pnpm start`: the whole system on one machine. Uses REDIS_URL if set, else a Redis already
 * answering on 127.0.0.1:6379, else starts a private redis-server with append-only persistence
 * under .darkroom/redis. Then the API and one worker serving every pipeline, with their logs
 * here; Ctrl-C stops all of it.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const stateDir = path.join(root, '.darkroom');
const children: ChildProcess[] = [];
let stopping = false;

function say(msg: string) {
  process.stdout.write(`\x1b[1m[darkroom]\x1b[0m ${msg}\n`);
}

function canConnect(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => {
      // Something listens; make sure it speaks Redis.
      sock.write('PING\r\n');
      sock.once('data', (d) => done(d.toString().startsWith('+PONG') || d.toString().startsWith('-NOAUTH')));
    });
    sock.once('error', () => done(false));
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
}

async function resolveRedis(): Promise<string> {
  if (process.env.REDIS_URL) {
    say(`using Redis at ${process.env.REDIS_URL.replace(/\/\/[^@]*@/, '//***@')} (REDIS_URL)`);
    return process.env.REDIS_URL;
  }
  if (await canConnect(6379)) {
    say('using the Redis already answering on 127.0.0.1:6379');
    return 'redis://127.0.0.1:6379';
  }
  if (spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status !== 0) {
    say('no Redis found: set REDIS_URL, start one on 127.0.0.1:6379, or install redis-server');
    say('  Debian/Ubuntu: sudo apt-get install -y redis-server    macOS: brew install redis');
    process.exit(1);
  }
  const dir = path.join(stateDir, 'redis');
  fs.mkdirSync(dir, { recursive: true });
  const port = (await canConnect(6379)) ? await freePort() : 6379;
  const redis = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--bind',
      '127.0.0.1',
      '--dir',
      dir,
      '--appendonly',
      'yes',
      '--save',
      '',
      '--maxmemory-policy',
      'noeviction',
      '--logfile',
      'redis.log',
    ],
    { stdio: 'ignore' },
  );
  children.push(redis);
  for (let i = 0; i < 100 && !(await canConnect(port)); i++) await new Promise((r) => setTimeout(r, 100));
  if (!(await canConnect(port))) {
    say(`redis-server did not start; see ${path.join(dir, 'redis.log')}`);
    process.exit(1);
  }
  say(`started a private redis-server on 127.0.0.1:${port} (append-only data in ${path.relative(root, dir)}/)`);
  return `redis://127.0.0.1:${port}`;
}

function adminToken(): string {
  if (process.env.DARKROOM_ADMIN_TOKEN) return process.env.DARKROOM_ADMIN_TOKEN;
  const file = path.join(stateDir, 'admin-token');
  if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8').trim();
  const token = randomBytes(18).toString('base64url');
  fs.mkdirSync(stateDir, { recursive: true });
  fs.writeFileSync(file, `${token}\n`, { mode: 0o600 });
  return token;
}

function startApp(name: 'api' | 'worker', env: NodeJS.ProcessEnv): ChildProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, `apps/${name}/src/main.ts`)], {
    cwd: root,
    env,
    stdio: 'inherit',
  });
  child.once('exit', (code, signal) => {
    if (!stopping) {
      say(`${name} exited unexpectedly (${signal ?? `code ${code}`}); stopping everything`);
      void stop(1);
    }
  });
  children.push(child);
  return child;
}

async function stop(code: number) {
  if (stopping) return;
  stopping = true;
  // The apps first (they finish or hand back their jobs), Redis last.
  const apps = children.slice(1).filter((c) => c.exitCode === null);
  const redis = children[0]?.spawnargs[0] === 'redis-server' ? children[0] : undefined;
  const wait = (c: ChildProcess) =>
    c.exitCode !== null || c.signalCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', r));
  for (const c of children) if (c !== redis && c.exitCode === null) c.kill('SIGTERM');
  await Promise.all(apps.map(wait));
  if (redis && redis.exitCode === null) {
    redis.kill('SIGTERM');
    await wait(redis);
  }
  process.exit(code);
}

async function main() {
  const redisUrl = await resolveRedis();
  const token = adminToken();
  const port = Number(process.env.PORT ?? 8080);
  const env = { ...process.env, REDIS_URL: redisUrl, DARKROOM_ADMIN_TOKEN: token, PORT: String(port) };
  startApp('api', env);
  startApp('worker', env);

  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 300; i++) {
    try {
      if ((await fetch(`${base}/readyz`)).ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const keyed = Boolean(process.env.DARKROOM_API_KEYS || process.env.DARKROOM_STATIONS_FILE);
  const auth = keyed ? ' -H "Authorization: Bearer $DARKROOM_KEY"' : '';
  say(`API        ${base}`);
  say(`dashboard  ${base}/admin/queues   (user: any, password: ${token})`);
  say('try it:');
  process.stdout.write(
    [
      `  curl -s${auth} -F image=@examples/photo.jpg -F pipeline=edit \\`,
      `       -F 'params={"operations":[{"op":"resize","width":512},{"op":"format","type":"webp"}]}' \\`,
      `       '${base}/v1/jobs?wait=30' | tee /tmp/job.json`,
      `  curl -s${auth} -o resized.webp ${base}$(node -p 'require("/tmp/job.json").links.result')`,
      '',
    ].join('\n'),
  );
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
}

void main();
