/*
 * The container files (docker/, .dockerignore), checked without a Docker engine: the compose file
 * against the Compose Specification schema, the Dockerfile by parsing it, and every path, port,
 * setting and metric name they mention against the repository.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv } from 'ajv';
import { DCLinter } from 'dclint';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const DOCKER = path.join(ROOT, 'docker');
const COMPOSE_FILE = path.join(DOCKER, 'compose.yaml');
const DOCKERFILE = path.join(DOCKER, 'Dockerfile');
const read = (p: string) => fs.readFileSync(p, 'utf8');
const exists = (p: string) => fs.existsSync(p);

type Json = Record<string, unknown>;
const obj = (v: unknown): Json => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : {});

// The compose file uses YAML merge keys (`<<: *anchor`), as Docker Compose does.
const loadYaml = (p: string): Json => obj(parseYaml(read(p), { merge: true }));
const compose = loadYaml(COMPOSE_FILE);
const services = obj(compose.services);
const service = (name: string) => obj(services[name]);

/** A service's environment as a map, whichever form (map or KEY=VALUE list) it is written in. */
function environment(svc: Json): Record<string, string> {
  const env = svc.environment;
  if (Array.isArray(env)) {
    return Object.fromEntries(
      env.map((e) => {
        const [k, ...v] = String(e).split('=');
        return [k ?? '', v.join('=')];
      }),
    );
  }
  return Object.fromEntries(Object.entries(obj(env)).map(([k, v]) => [k, v == null ? '' : String(v)]));
}

// ---------------------------------------------------------------------------------------------
// Dockerfile parsing: continuation lines joined, comments dropped, stages with their base.

interface Instruction {
  keyword: string;
  args: string;
}
interface Stage {
  name: string;
  image: string;
  instructions: Instruction[];
}

function parseDockerfile(text: string) {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === '')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    logical.push((current + line).trim());
    current = '';
  }
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const l of logical.filter(Boolean)) {
    const m = /^(\S+)\s*(.*)$/.exec(l);
    const keyword = (m?.[1] ?? '').toUpperCase();
    const args = m?.[2] ?? '';
    if (keyword === 'FROM') {
      const parts = args.split(/\s+/).filter((p) => !p.startsWith('--'));
      const image = (parts[0] ?? '').replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => globalArgs[a ?? b] ?? '');
      const as = parts.findIndex((p) => p.toUpperCase() === 'AS');
      stages.push({ name: as >= 0 ? (parts[as + 1] ?? '') : `#${stages.length}`, image, instructions: [] });
    } else if (stages.length === 0 && keyword === 'ARG') {
      const [k, v] = args.split('=');
      if (k) globalArgs[k.trim()] = (v ?? '').trim();
    } else {
      stages.at(-1)?.instructions.push({ keyword, args });
    }
  }
  const byName = new Map(stages.map((s) => [s.name, s]));
  /** The stage and the stages it is built FROM, nearest first. */
  const chain = (name: string): Stage[] => {
    const out: Stage[] = [];
    for (let s = byName.get(name); s; s = byName.get(s.image)) out.push(s);
    return out;
  };
  /** The last value of an instruction in effect in a stage (own, else inherited from a parent stage). */
  const effective = (name: string, keyword: string) => {
    for (const s of chain(name)) {
      const found = s.instructions.filter((i) => i.keyword === keyword).at(-1);
      if (found) return found.args;
    }
    return undefined;
  };
  /** ENV names and values in effect in a stage. */
  const env = (name: string) => {
    const out: Record<string, string> = {};
    for (const s of chain(name).reverse()) {
      for (const i of s.instructions.filter((x) => x.keyword === 'ENV')) {
        for (const m of i.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) out[m[1] ?? ''] = (m[2] ?? '').replace(/^"|"$/g, '');
      }
    }
    return out;
  };
  /** The external image a stage finally runs on. */
  const baseImage = (name: string) => chain(name).at(-1)?.image ?? '';
  return { stages, byName, chain, effective, env, baseImage, globalArgs };
}

const dockerfileText = read(DOCKERFILE);
const dockerfile = parseDockerfile(dockerfileText);
const TARGETS = ['api', 'worker', 'worker-gpu'];

/** ARG defaults declared so far (`NAME=value`), with the global ones under them. */
function argDefaults(instructions: Instruction[]): Record<string, string> {
  const out = { ...dockerfile.globalArgs };
  for (const i of instructions.filter((x) => x.keyword === 'ARG')) {
    const [k, ...v] = i.args.split('=');
    if (k && v.length > 0) out[k.trim()] = v.join('=').trim();
  }
  return out;
}

/** COPY sources that come from the build context (not `--from=` another stage or image), ARGs at their defaults. */
function contextCopySources(): string[] {
  const out: string[] = [];
  for (const s of dockerfile.stages) {
    for (const [n, i] of s.instructions.entries()) {
      if (i.keyword !== 'COPY' && i.keyword !== 'ADD') continue;
      const args = argDefaults(s.instructions.slice(0, n));
      const words = i.args.replace(/\$\{(\w+)\}/g, (m, a) => args[a] ?? m).split(/\s+/);
      if (words.some((w) => w.startsWith('--from='))) continue;
      const rest = words.filter((w) => !w.startsWith('--'));
      const list: string[] = rest[0]?.startsWith('[') ? (JSON.parse(rest.join(' ')) as string[]) : rest;
      out.push(...list.slice(0, -1));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// .dockerignore matching, as Docker does it: `**` spans directories, `*` and `?` stay inside one
// path segment, a pattern that matches a directory excludes what is under it, `!` re-includes,
// the last matching line wins.

function dockerignore() {
  const rules = read(path.join(ROOT, '.dockerignore'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = (negate ? l.slice(1) : l).trim().replace(/^\/+/, '').replace(/\/+$/, '');
      let re = '';
      for (let i = 0; i < pattern.length; i++) {
        const c = pattern[i] ?? '';
        if (c === '*' && pattern[i + 1] === '*') {
          i++;
          if (pattern[i + 1] === '/') {
            i++;
            re += '(?:.*/)?';
          } else re += '.*';
        } else if (c === '*') re += '[^/]*';
        else if (c === '?') re += '[^/]';
        else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
      }
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (p: string) => {
    const segments = p.split('/');
    let excluded = false;
    for (const rule of rules) {
      for (let n = 1; n <= segments.length; n++) {
        if (rule.re.test(segments.slice(0, n).join('/'))) {
          excluded = !rule.negate;
          break;
        }
      }
    }
    return excluded;
  };
}

// ---------------------------------------------------------------------------------------------

describe('compose.yaml against the Compose Specification', () => {
  // The official compose-spec JSON schema (draft-07), as shipped in the dclint npm package.
  const requireFromHere = createRequire(import.meta.url);
  const schemaPath = path.join(path.dirname(requireFromHere.resolve('dclint/package.json')), 'schemas', 'compose.schema.json');
  const schema = JSON.parse(read(schemaPath)) as Json;
  const ajv = new Ajv({ allErrors: true, strict: false, allowUnionTypes: true, validateSchema: false });
  const validate = ajv.compile(schema);

  it('is the Compose Specification schema', () => {
    expect(schema.$id).toBe('compose_spec.json');
    expect(Object.keys(obj(schema.properties))).toEqual(expect.arrayContaining(['services', 'volumes', 'include', 'models']));
  });

  it('validates', () => {
    const ok = validate(compose);
    expect(validate.errors ?? [], JSON.stringify(validate.errors, null, 2)).toEqual([]);
    expect(ok).toBe(true);
    expect(compose).not.toHaveProperty('version');
  });

  it('rejects a broken copy (so the check can fail)', () => {
    const broken = structuredClone(compose) as { services: { api: Json } };
    broken.services.api.ports = 5;
    expect(validate(broken)).toBe(false);
    expect(validate({ ...compose, servics: {} })).toBe(false);
    const badDepends = structuredClone(compose) as { services: { worker: Json } };
    badDepends.services.worker.depends_on = { redis: { condition: 'service_ready' } };
    expect(validate(badDepends)).toBe(false);
  });

  it('passes dclint (correctness and security rules; layout rules off)', () => {
    const linter = new DCLinter({
      rules: {
        'services-alphabetical-order': 0,
        'service-keys-order': 0,
        'top-level-properties-order': 0,
        // Quoted ports never turn into YAML 1.1 base-60 numbers; this file uses double quotes.
        'require-quotes-in-ports': [2, { quoteType: 'double' }],
      },
      quiet: true,
      debug: false,
      exclude: [],
    });
    const [result] = linter.lintFiles([COMPOSE_FILE], false);
    const messages: { type: string; rule: string; line: number; message: string }[] = result?.messages ?? [];
    const problems = messages.map((m) => `${m.type} ${m.rule} line ${m.line}: ${m.message}`);
    expect(problems).toEqual([]);
  });
});

describe('compose.yaml against the repository', () => {
  const built = Object.entries(services).filter(([, s]) => obj(s).build !== undefined);

  it('builds api, worker and worker-gpu from docker/Dockerfile, with the repo root as context', () => {
    expect(built.map(([n]) => n).sort()).toEqual(['api', 'worker', 'worker-gpu']);
    for (const [name, svc] of built) {
      const build = obj(obj(svc).build);
      const context = path.resolve(DOCKER, String(build.context ?? '.'));
      expect(context, name).toBe(path.resolve(ROOT));
      expect(exists(path.join(context, String(build.dockerfile ?? 'Dockerfile'))), name).toBe(true);
      expect(path.join(context, String(build.dockerfile))).toBe(DOCKERFILE);
      expect(build.target, name).toBe(name);
      expect(dockerfile.byName.has(String(build.target)), `stage ${String(build.target)}`).toBe(true);
    }
  });

  it('sets only environment variables that config.ts reads (or that are on their way)', () => {
    const configSource = read(path.join(ROOT, 'packages/runtime/src/config.ts'));
    // The worker metrics server (DARKROOM_WORKER_METRICS_PORT) and the
    // GPU pipelines (DARKROOM_COMFYUI_URL, DARKROOM_MODEL_DIR) add these to config.ts. Drop a name
    // from this list once config.ts has it.
    const pending = new Set(['DARKROOM_WORKER_METRICS_PORT', 'DARKROOM_COMFYUI_URL', 'DARKROOM_MODEL_DIR']);
    const ours = (k: string) => k.startsWith('DARKROOM_') || k === 'PORT' || k === 'REDIS_URL' || k === 'NODE_ENV';
    const names = new Set<string>();
    for (const svc of Object.values(services)) for (const k of Object.keys(environment(obj(svc)))) if (ours(k)) names.add(k);
    for (const t of TARGETS) for (const k of Object.keys(dockerfile.env(t))) if (ours(k)) names.add(k);
    expect(names.size).toBeGreaterThan(5);
    const unknown = [...names].filter((k) => !pending.has(k) && !new RegExp(`\\b${k}\\b`).test(configSource));
    expect(unknown).toEqual([]);
  });

  it('points the processes at the compose Redis and the shared blob volume', () => {
    for (const name of ['api', 'worker', 'worker-gpu']) {
      const svc = service(name);
      const env = environment(svc);
      expect(env.REDIS_URL, name).toBe('redis://redis:6379');
      expect(env.DARKROOM_DATA_DIR, name).toBe('/data');
      expect(env.DARKROOM_HOST, name).toBe('0.0.0.0');
      expect(svc.volumes, name).toContain('blobs:/data');
      expect(obj(obj(svc.depends_on).redis).condition, name).toBe('service_healthy');
    }
    expect(dockerfile.env('api').DARKROOM_DATA_DIR).toBe('/data');
  });

  it('requires the admin token and leaves station keys empty by default', () => {
    const env = environment(service('api'));
    expect(env.DARKROOM_ADMIN_TOKEN).toMatch(/^\$\{DARKROOM_ADMIN_TOKEN:\?.+\}$/);
    expect(env.DARKROOM_API_KEYS).toBe(`\${DARKROOM_API_KEYS:-}`);
  });

  it('publishes the API through lb on its default port and keeps replicas and worker metrics on the compose network', () => {
    const configSource = read(path.join(ROOT, 'packages/runtime/src/config.ts'));
    const defaultPort = Number(/\bPORT: int\(0\)\.max\(65535\)\.default\((\d+)\)/.exec(configSource)?.[1]);
    expect(defaultPort).toBe(8080);
    const api = service('api');
    // Replicas have no host port (a fixed one would stop --scale api=N); lb publishes it.
    expect(api.ports).toBeUndefined();
    expect(api.expose).toEqual([String(defaultPort)]);
    expect(service('lb').ports).toEqual([`${defaultPort}:${defaultPort}`]);
    expect(Number(environment(api).PORT ?? defaultPort)).toBe(defaultPort);
    expect(dockerfile.effective('api', 'EXPOSE')).toBe(String(defaultPort));

    const metricsDefault = /DARKROOM_WORKER_METRICS_PORT: int\(0\)\.max\(65535\)\.default\((\d+)\)/.exec(configSource)?.[1];
    for (const name of ['worker', 'worker-gpu']) {
      const svc = service(name);
      const port = environment(svc).DARKROOM_WORKER_METRICS_PORT;
      expect(port, name).toBe('9091');
      if (metricsDefault) expect(port, `${name} = config default`).toBe(metricsDefault);
      expect(svc.ports, name).toBeUndefined();
      expect(svc.expose, name).toEqual([port]);
      expect(dockerfile.effective(name, 'EXPOSE'), name).toBe(port);
    }
    expect(environment(service('worker')).DARKROOM_WORKER_PIPELINES).toBe('edit,synthetic');
  });

  it('gives the GPU worker the GPUs and read-only models under the gpu profile', () => {
    const gpu = service('worker-gpu');
    expect(gpu.profiles).toEqual(['gpu']);
    expect(obj(obj(obj(gpu.deploy).resources).reservations).devices).toEqual([{ driver: 'nvidia', count: 'all', capabilities: ['gpu'] }]);
    expect(environment(gpu).DARKROOM_MODEL_DIR).toBe('/models');
    expect(environment(gpu)).not.toHaveProperty('DARKROOM_WORKER_DEVICE');
    expect(gpu.volumes).toContain('models:/models:ro');
  });

  it('gives workers longer to stop than their shutdown grace', () => {
    for (const name of ['worker', 'worker-gpu']) {
      const svc = service(name);
      const grace = Number(environment(svc).DARKROOM_SHUTDOWN_GRACE_SECONDS ?? 30);
      expect(Number.parseInt(String(svc.stop_grace_period), 10), name).toBeGreaterThan(grace);
    }
  });

  it('runs Redis append-only with noeviction, with a healthcheck', () => {
    const redis = service('redis');
    const command = (redis.command as string[]).join(' ');
    expect(command).toContain('--appendonly yes');
    expect(command).toContain('--appendfsync everysec');
    expect(command).toContain('--maxmemory-policy noeviction');
    expect(String(redis.image)).toMatch(/^redis:7(\.|$|-)/);
    expect(JSON.stringify(obj(redis.healthcheck).test)).toContain('redis-cli ping');
    expect(redis.volumes).toContain('redis-data:/data');
  });

  it('has the same healthchecks as the images', () => {
    for (const name of ['api', 'worker', 'worker-gpu']) {
      const fromCompose = obj(service(name).healthcheck).test as string[];
      const fromImage = dockerfile.effective(name, 'HEALTHCHECK') ?? '';
      const cmd = JSON.parse(fromImage.slice(fromImage.indexOf('CMD ') + 4)) as string[];
      expect(fromCompose, name).toEqual(['CMD', ...cmd]);
    }
  });

  it('mounts only repository files that exist and volumes that are declared', () => {
    const declared = new Set(Object.keys(obj(compose.volumes)));
    let binds = 0;
    for (const [name, svc] of Object.entries(services)) {
      for (const v of (obj(svc).volumes as unknown[] | undefined) ?? []) {
        const source = typeof v === 'string' ? (v.split(':')[0] ?? '') : String(obj(v).source ?? '');
        if (source.startsWith('.') || source.startsWith('/')) {
          binds++;
          expect(exists(path.resolve(DOCKER, source)), `${name}: ${source}`).toBe(true);
        } else {
          expect(declared.has(source), `${name}: volume ${source}`).toBe(true);
        }
      }
    }
    expect(binds).toBeGreaterThanOrEqual(3);
  });

  it('uses pinned images, never :latest', () => {
    for (const [name, svc] of Object.entries(services)) {
      const image = obj(svc).image;
      if (image === undefined) continue;
      expect(String(image), name).toMatch(/:[\w][\w.-]*$/);
      expect(String(image), name).not.toMatch(/:latest$/);
    }
  });
});

describe('the load balancer (lb, docker/haproxy.cfg)', () => {
  const HAPROXY_CFG = path.join(DOCKER, 'haproxy.cfg');
  const cfg = read(HAPROXY_CFG);
  /** The config's sections by header line ("backend api" → its lines), comments dropped. */
  const sections = (text: string) => {
    const out: Record<string, string[]> = {};
    let current = '';
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*$/, '').trimEnd();
      if (!line.trim()) continue;
      if (/^\S/.test(line)) {
        current = line.trim();
        out[current] = [];
      } else out[current]?.push(line.trim().replace(/\s+/g, ' '));
    }
    return out;
  };
  const parsed = sections(cfg);
  const seconds = (v: string | undefined) => {
    const m = /^(\d+)(ms|s|m)?$/.exec(v ?? '');
    return m ? Number(m[1]) * ({ ms: 0.001, s: 1, m: 60 }[m[2] ?? 'ms'] ?? 0.001) : Number.NaN;
  };
  const timeouts = (lines: string[] = []) =>
    Object.fromEntries(lines.filter((l) => l.startsWith('timeout ')).map((l) => [l.split(' ')[1], seconds(l.split(' ')[2])]));

  it('is the lb service: a pinned HAProxy mounting this file, after the api is healthy', () => {
    const lb = service('lb');
    expect(String(lb.image)).toMatch(/^haproxy:2\.\d+/);
    expect(lb.volumes).toEqual(['./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro']);
    expect(exists(HAPROXY_CFG)).toBe(true);
    expect(obj(obj(lb.depends_on).api).condition).toBe('service_healthy');
  });

  it('listens on the published port and sends to every replica of the api service on its port', () => {
    const published = String((service('lb').ports as string[])[0]).split(':');
    const frontend = Object.entries(parsed).find(([h]) => h.startsWith('frontend '))?.[1] ?? [];
    expect(frontend).toContain(`bind :${published[1]}`);
    const backend = parsed['backend api'] ?? [];
    const template = backend.find((l) => l.startsWith('server-template '))?.split(' ') ?? [];
    const [host, port] = (template[3] ?? '').split(':');
    expect(Object.keys(services)).toContain(host);
    expect(service(host ?? '').expose).toEqual([port]);
    expect(environment(service(host ?? '')).PORT).toBe(port);
    expect(template).toContain('resolvers');
    expect(Object.keys(parsed)).toContain(`resolvers ${template[template.indexOf('resolvers') + 1]}`);
  });

  it('health-checks the replicas on /readyz', () => {
    const backend = parsed['backend api'] ?? [];
    expect(backend).toContain('option httpchk');
    expect(backend).toContain('http-check send meth GET uri /readyz');
    expect(backend).toContain('http-check expect status 200');
    expect(backend.find((l) => l.startsWith('default-server '))).toMatch(/\bcheck\b/);
  });

  it('keeps ?wait=60 answers and event streams open, streams bodies, and retries only unsent requests', () => {
    const t = timeouts(parsed.defaults);
    // ?wait holds an answer for up to 60 s; event streams send a comment every 15 s.
    expect(t.server).toBeGreaterThan(60);
    expect(t.client).toBeGreaterThan(60);
    expect(t['http-request']).toBeGreaterThan(0);
    expect(cfg).not.toMatch(/^\s*option http-buffer-request/m);
    expect(cfg).not.toMatch(/^\s*retry-on/m);
    expect(parsed.defaults).toContain('mode http');
    expect(parsed.defaults).toContain('option redispatch 1');
  });

  it('is what the tests run: the harness config has the same timeouts and checks', async () => {
    const { haproxyConfig } = await import('../src/haproxy.ts');
    const test = sections(haproxyConfig({ port: 1, socket: '/tmp/x.sock', backends: [{ name: 'api1', port: 2 }] }));
    expect(timeouts(test.defaults)).toEqual(timeouts(parsed.defaults));
    for (const l of ['option httpchk', 'http-check send meth GET uri /readyz', 'http-check expect status 200']) {
      expect(test['backend api'], l).toContain(l);
    }
    expect(test.defaults).toContain('option redispatch 1');
  });
});

describe('Dockerfile', () => {
  it('has the targets, built on glibc Node 24 LTS (not alpine) and the CUDA runtime', () => {
    for (const t of TARGETS) expect(dockerfile.byName.has(t), t).toBe(true);
    for (const t of ['api', 'worker']) {
      expect(dockerfile.baseImage(t), t).toMatch(/^node:24[\w.-]*-bookworm-slim$/);
    }
    expect(dockerfile.baseImage('build')).toMatch(/^node:24[\w.-]*-bookworm-slim$/);
    // The GPU image takes its node binary from the same Node image as the others.
    expect(dockerfile.baseImage('node-dist')).toBe(dockerfile.baseImage('api'));
    expect(dockerfileText).toMatch(/COPY --from=node-dist \/usr\/local\/bin\/node /);
    expect(dockerfile.baseImage('worker-gpu')).toMatch(/^nvidia\/cuda:12[\w.-]*-cudnn-runtime-ubuntu\d/);
    for (const s of dockerfile.stages) expect(s.image, s.name).not.toMatch(/alpine/);
  });

  it('ships a newer Node than the oldest the code supports, which stays Node 20', () => {
    const engines = (f: string) => JSON.parse(fs.readFileSync(path.join(ROOT, f), 'utf8')).engines?.node;
    expect(engines('package.json')).toBe('>=20');
    expect(Number(/^node:(\d+)/.exec(dockerfile.baseImage('api'))?.[1])).toBeGreaterThanOrEqual(20);
  });

  it('pins every base image by tag, never :latest', () => {
    for (const s of dockerfile.stages) {
      if (dockerfile.byName.has(s.image)) continue;
      expect(s.image, s.name).toMatch(/^[\w./-]+:[\w][\w.-]*$/);
      expect(s.image, s.name).not.toMatch(/:latest$/);
    }
    expect(dockerfileText).not.toMatch(/:latest\b/);
  });

  it('installs with the lockfile, after copying every workspace manifest', () => {
    const build = dockerfile.byName.get('build');
    expect(build).toBeDefined();
    const instructions = build?.instructions ?? [];
    const installAt = instructions.findIndex((i) => i.keyword === 'RUN' && /pnpm install\b/.test(i.args));
    expect(installAt).toBeGreaterThan(0);
    expect(instructions[installAt]?.args).toContain('--frozen-lockfile');
    const before = instructions
      .slice(0, installAt)
      .filter((i) => i.keyword === 'COPY')
      .flatMap((i) => i.args.split(/\s+/).slice(0, -1));
    const manifests = ['apps', 'packages'].flatMap((dir) =>
      fs
        .readdirSync(path.join(ROOT, dir))
        .filter((d) => exists(path.join(ROOT, dir, d, 'package.json')))
        .map((d) => `${dir}/${d}/package.json`),
    );
    expect(manifests.length).toBeGreaterThanOrEqual(6);
    for (const m of ['package.json', 'pnpm-lock.yaml', 'pnpm-workspace.yaml', ...manifests]) expect(before, m).toContain(m);
    // No source is copied before the install (that would rebuild the install layer on every edit).
    expect(before.filter((s) => !s.endsWith('package.json') && !s.endsWith('.yaml'))).toEqual([]);
  });

  it('uses the pnpm of package.json', () => {
    const pkg = JSON.parse(read(path.join(ROOT, 'package.json'))) as { packageManager: string };
    const version = /ARG PNPM_VERSION=(\S+)/.exec(dockerfileText)?.[1];
    expect(`pnpm@${version}`).toBe(pkg.packageManager.split('+')[0]);
    expect(dockerfileText).toContain(`npm install -g pnpm@\${PNPM_VERSION}`);
  });

  it('builds and deploys each app with production dependencies only', () => {
    for (const [app, stage] of [
      ['api', 'build-api'],
      ['worker', 'build-worker'],
    ] as const) {
      const run = dockerfile.byName
        .get(stage)
        ?.instructions.filter((i) => i.keyword === 'RUN')
        .map((i) => i.args)
        .join(' ');
      expect(run, stage).toContain(`pnpm --filter @darkroom/${app} build`);
      expect(run, stage).toMatch(new RegExp(`pnpm --filter @darkroom/${app} deploy --prod --legacy /out/app`));
    }
    for (const t of TARGETS) {
      const copies = dockerfile
        .chain(t)
        .flatMap((s) => s.instructions.filter((i) => i.keyword === 'COPY' && i.args.includes('--from=build-')));
      expect(copies.map((c) => c.args.split(/\s+/)[1]).sort(), t).toEqual([
        '/out/app/dist',
        '/out/app/node_modules',
        '/out/app/package.json',
      ]);
      expect(dockerfile.effective(t, 'WORKDIR'), t).toBe('/app');
    }
  });

  it('runs every target as the non-root user 10001, in production, with a healthcheck', () => {
    for (const t of TARGETS) {
      const user = dockerfile.effective(t, 'USER') ?? 'root';
      expect(user, t).toBe('10001:10001');
      expect(dockerfile.env(t).NODE_ENV, t).toBe('production');
      expect(dockerfile.effective(t, 'HEALTHCHECK'), t).toMatch(/^--interval=.* CMD \["node", "-e", .*\/healthz/);
      expect(dockerfile.effective(t, 'CMD'), t).toBe('["node", "dist/main.js"]');
      expect(dockerfile.effective(t, 'VOLUME'), t).toBe('["/data"]');
    }
    expect(dockerfile.effective('api', 'HEALTHCHECK')).toContain('process.env.PORT||8080');
    expect(dockerfile.effective('worker', 'HEALTHCHECK')).toContain('process.env.DARKROOM_WORKER_METRICS_PORT||9091');
    // The data directory belongs to that user in every image.
    for (const stage of ['runtime', 'worker-gpu']) {
      const runs =
        dockerfile.byName
          .get(stage)
          ?.instructions.filter((i) => i.keyword === 'RUN')
          .map((i) => i.args)
          .join(' ') ?? '';
      expect(runs, stage).toMatch(/useradd .*--uid 10001/);
      expect(runs, stage).toContain('chown 10001:10001 /data');
    }
  });

  it('sets up the GPU image for the NVIDIA runtime with Node from the node image', () => {
    const env = dockerfile.env('worker-gpu');
    expect(env.NVIDIA_VISIBLE_DEVICES).toBe('all');
    expect(env.NVIDIA_DRIVER_CAPABILITIES).toBe('compute,utility');
    const copies =
      dockerfile.byName
        .get('worker-gpu')
        ?.instructions.filter((i) => i.keyword === 'COPY')
        .map((i) => i.args) ?? [];
    expect(copies).toContain('--from=node-dist /usr/local/bin/node /usr/local/bin/node');
    expect(dockerfile.baseImage('node-dist')).toBe(dockerfile.baseImage('api'));
  });

  it('copies only repository paths that exist and that .dockerignore lets through', () => {
    const ignored = dockerignore();
    const sources = contextCopySources();
    expect(sources.length).toBeGreaterThan(8);
    for (const s of sources) {
      expect(exists(path.join(ROOT, s)), s).toBe(true);
      expect(ignored(s.replace(/\/$/, '')), `${s} is in .dockerignore`).toBe(false);
    }
    // What the bundle build needs is in the context ...
    for (const p of [
      'scripts/build-app.ts',
      'apps/api/src/main.ts',
      'apps/worker/src/main.ts',
      'packages/runtime/src/config.ts',
      'tsconfig.base.json',
    ]) {
      expect(exists(path.join(ROOT, p)), p).toBe(true);
      expect(ignored(p), p).toBe(false);
    }
    // ... and what is installed, built, private or test-only here is not.
    for (const p of [
      'node_modules/.pnpm/x',
      'apps/api/node_modules/express/package.json',
      'packages/jobs/node_modules/x',
      'apps/api/dist/main.js',
      '.git/HEAD',
      '.darkroom/data/outputs/x',
      'apps/api/test/e2e.test.ts',
      'test-artifacts/x',
      '.env',
    ]) {
      expect(ignored(p), p).toBe(true);
    }
  });
});

describe("the GPU image: onnxruntime-node's CUDA execution provider", () => {
  const gpuBuild = dockerfile.byName.get('build-worker-gpu');
  const runsOf = (stage: string | undefined) =>
    (dockerfile.byName.get(stage ?? '')?.instructions ?? []).filter((i) => i.keyword === 'RUN').map((i) => i.args);
  const installRun = runsOf('build-worker-gpu').find((r) => r.includes('script/install.js')) ?? '';
  const imageCheck = runsOf('worker-gpu').find((r) => r.includes('libonnxruntime_providers_cuda.so')) ?? '';
  const requireFromPipelines = createRequire(path.join(ROOT, 'packages/pipelines/package.json'));
  const ortDir = path.dirname(requireFromPipelines.resolve('onnxruntime-node/package.json'));

  it('is built into worker-gpu only, on top of the worker build', () => {
    expect(gpuBuild?.image).toBe('build-worker');
    const from = (t: string) =>
      dockerfile
        .chain(t)
        .flatMap((s) => s.instructions.filter((i) => i.keyword === 'COPY'))
        .map((i) => /--from=(\S+)/.exec(i.args)?.[1])
        .filter((f) => f?.startsWith('build-'));
    expect(from('worker-gpu')).toEqual(['build-worker-gpu', 'build-worker-gpu', 'build-worker-gpu']);
    expect(from('worker')).toEqual(['build-worker', 'build-worker', 'build-worker']);
    expect(from('api')).toEqual(['build-api', 'build-api', 'build-api']);
    // Nothing else runs the install script or sets its flag.
    for (const s of dockerfile.stages.filter((x) => x.name !== 'build-worker-gpu')) {
      const text = s.instructions.map((i) => `${i.keyword} ${i.args}`).join('\n');
      expect(text, s.name).not.toMatch(/script\/install|ONNXRUNTIME_NODE_INSTALL/);
    }
    // pnpm's own install (the shared build stage, `pnpm install` here) never runs it.
    const workspace = loadYaml(path.join(ROOT, 'pnpm-workspace.yaml'));
    expect(workspace.ignoredBuiltDependencies).toContain('onnxruntime-node');
    expect(workspace.onlyBuiltDependencies ?? []).not.toContain('onnxruntime-node');
  });

  it('runs the install script of the locked onnxruntime-node with the flag that makes it install the CUDA provider', () => {
    const pkg = JSON.parse(read(path.join(ortDir, 'package.json'))) as { version: string; scripts: Record<string, string> };
    expect(read(path.join(ROOT, 'pnpm-lock.yaml'))).toContain(`onnxruntime-node@${pkg.version}:`);
    expect(pkg.scripts.postinstall).toBe('node ./script/install');
    // The flag, as that version reads it, names an install its metadata has for linux/x64 ...
    const flag = /\bONNXRUNTIME_NODE_INSTALL=(\S+) node script\/install\.js/.exec(installRun)?.[1];
    expect(flag).toBe('cuda12');
    expect(read(path.join(ortDir, 'script/install-utils.js'))).toContain('process.env.ONNXRUNTIME_NODE_INSTALL');
    const metadata = requireFromPipelines(path.join(ortDir, 'script/install-metadata.js')) as {
      requirements: Record<string, string[]>;
      manifests: Record<string, Record<string, { package: string; path: string }>>;
    };
    expect(metadata.requirements['linux/x64']).toContain(flag);
    // ... which brings the files the build then checks for, into the folder it checks.
    const files = Object.keys(metadata.manifests[`linux/x64:${flag}`] ?? {}).map((f) => path.basename(f));
    expect(files).toEqual(
      expect.arrayContaining([
        'libonnxruntime_providers_cuda.so',
        'libonnxruntime_providers_shared.so',
        'libonnxruntime_providers_tensorrt.so',
      ]),
    );
    expect(read(path.join(ortDir, 'script/install.js'))).toContain("path.join(__dirname, '..', 'bin/napi-v6', PLATFORM)");
    expect(installRun).toContain('bin/napi-v6/');
    expect(installRun).toContain('libonnxruntime_providers_cuda.so');
    expect(imageCheck).toContain('"bin/napi-v6", process.platform, process.arch, "libonnxruntime_providers_cuda.so"');
  });

  it('can take the libraries from a directory of the build context instead (no network), passed through by compose', () => {
    const args = argDefaults(gpuBuild?.instructions ?? []);
    expect(args.ONNXRUNTIME_CUDA_DIR).toBe('docker/onnxruntime-cuda');
    expect(gpuBuild?.instructions).toContainEqual({ keyword: 'COPY', args: `\${ONNXRUNTIME_CUDA_DIR}/ /tmp/onnxruntime-cuda/` });
    expect(contextCopySources()).toContain('docker/onnxruntime-cuda/');
    expect(exists(path.join(ROOT, 'docker/onnxruntime-cuda/README.md'))).toBe(true);
    // Libraries dropped there reach the build but never the repository.
    expect(dockerignore()('docker/onnxruntime-cuda/libonnxruntime_providers_cuda.so')).toBe(false);
    expect(dockerignore()('docker/compose.yaml')).toBe(true);
    const gitIgnored = (p: string) => spawnSync('git', ['check-ignore', '-q', p], { cwd: ROOT }).status === 0;
    expect(gitIgnored('docker/onnxruntime-cuda/libonnxruntime_providers_cuda.so')).toBe(true);
    expect(gitIgnored('docker/onnxruntime-cuda/README.md')).toBe(false);
    expect(obj(obj(service('worker-gpu').build).args)).toEqual({
      ONNXRUNTIME_CUDA_DIR: `\${ONNXRUNTIME_CUDA_DIR:-docker/onnxruntime-cuda}`,
    });
  });

  // The two RUN steps executed as the build would, on a stand-in onnxruntime-node whose install
  // script records its flag and does what the test says (a build host with or without network).
  describe('run on a stand-in package', () => {
    const platformDir = `bin/napi-v6/${process.platform}/${process.arch}`;
    const LIBS = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so', 'libonnxruntime_providers_tensorrt.so'];

    function sandbox(install: 'downloads' | 'downloads nothing' | 'fails', contextLibs: boolean) {
      const root = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-ort-'));
      const ort = path.join(root, 'out/app/node_modules/.pnpm/onnxruntime-node@1.30.0/node_modules/onnxruntime-node');
      fs.mkdirSync(path.join(ort, 'script'), { recursive: true });
      fs.mkdirSync(path.join(ort, platformDir), { recursive: true });
      fs.writeFileSync(path.join(ort, 'package.json'), JSON.stringify({ name: 'onnxruntime-node', version: '1.30.0' }));
      fs.symlinkSync(path.relative(path.join(root, 'out/app/node_modules'), ort), path.join(root, 'out/app/node_modules/onnxruntime-node'));
      fs.writeFileSync(
        path.join(ort, 'script/install.js'),
        `const fs = require('fs'), path = require('path');
fs.writeFileSync(${JSON.stringify(path.join(root, 'install-flag'))}, String(process.env.ONNXRUNTIME_NODE_INSTALL));
${install === 'fails' ? "throw new Error('getaddrinfo ENOTFOUND api.nuget.org');" : ''}
${install === 'downloads' ? `for (const f of ${JSON.stringify(LIBS)}) fs.writeFileSync(path.join(__dirname, '..', ${JSON.stringify(platformDir)}, f), 'ELF');` : ''}
`,
      );
      fs.mkdirSync(path.join(root, 'ctx'));
      if (contextLibs) for (const f of LIBS) fs.writeFileSync(path.join(root, 'ctx', f), 'ELF from the context');
      const at = (cmd: string) =>
        cmd.replaceAll('/tmp/onnxruntime-cuda', path.join(root, 'ctx')).replaceAll('/out/app', path.join(root, 'out/app'));
      const sh = (cmd: string, cwd: string) => spawnSync('sh', ['-c', cmd], { cwd, encoding: 'utf8' });
      return {
        build: () => sh(at(installRun), root),
        check: () => sh(imageCheck, path.join(root, 'out/app')),
        lib: (f: string) =>
          fs.existsSync(path.join(ort, platformDir, f)) ? fs.readFileSync(path.join(ort, platformDir, f), 'utf8') : undefined,
        flag: () => (fs.existsSync(path.join(root, 'install-flag')) ? read(path.join(root, 'install-flag')) : undefined),
        remove: () => fs.rmSync(root, { recursive: true, force: true }),
      };
    }

    it('runs the install script with ONNXRUNTIME_NODE_INSTALL=cuda12 and keeps what it installed', () => {
      expect(installRun).toContain('/out/app');
      const s = sandbox('downloads', false);
      try {
        const r = s.build();
        expect(r.status, r.stderr).toBe(0);
        expect(s.flag()).toBe('cuda12');
        expect(s.lib('libonnxruntime_providers_cuda.so')).toBe('ELF');
        expect(s.check().status).toBe(0);
      } finally {
        s.remove();
      }
    });

    it('fails when the script cannot download or installs no CUDA provider', () => {
      for (const install of ['fails', 'downloads nothing'] as const) {
        const s = sandbox(install, false);
        try {
          const r = s.build();
          expect(r.status, install).not.toBe(0);
          if (install === 'downloads nothing') expect(r.stderr).toMatch(/libonnxruntime_providers_cuda\.so is missing/);
          expect(s.check().status, install).not.toBe(0);
        } finally {
          s.remove();
        }
      }
    });

    it('takes the libraries from ONNXRUNTIME_CUDA_DIR without running the script', () => {
      const s = sandbox('fails', true);
      try {
        const r = s.build();
        expect(r.status, r.stderr).toBe(0);
        expect(s.flag()).toBeUndefined();
        for (const f of LIBS) expect(s.lib(f), f).toBe('ELF from the context');
        expect(s.check().status).toBe(0);
      } finally {
        s.remove();
      }
    });
  });
});

describe('monitoring', () => {
  const prometheus = loadYaml(path.join(DOCKER, 'prometheus.yml'));
  const dashboardPath = path.join(DOCKER, 'grafana/dashboards/darkroom.json');

  it('scrapes the api and workers where they serve /metrics', () => {
    const jobs = (prometheus.scrape_configs as Json[]).map((j) => ({
      name: String(j.job_name),
      path: String(j.metrics_path ?? '/metrics'),
      targets: ((j.dns_sd_configs as Json[] | undefined) ?? []).flatMap((d) => (d.names as string[]).map((n) => `${n}:${String(d.port)}`)),
    }));
    const targets = Object.fromEntries(jobs.flatMap((j) => j.targets.map((t) => [t, j.path])));
    expect(targets).toMatchObject({ 'api:8080': '/metrics', 'worker:9091': '/metrics', 'worker-gpu:9091': '/metrics' });
    for (const t of Object.keys(targets)) expect(Object.keys(services), t).toContain(t.split(':')[0]);
    expect(service('prometheus').profiles).toEqual(['monitoring']);
    expect(service('grafana').profiles).toEqual(['monitoring']);
  });

  it('provisions the Prometheus datasource and the dashboard folder that compose mounts', () => {
    const ds = loadYaml(path.join(DOCKER, 'grafana/provisioning/datasources/prometheus.yaml'));
    const [source] = ds.datasources as Json[];
    expect(source).toMatchObject({ uid: 'prometheus', type: 'prometheus', url: 'http://prometheus:9090' });
    const providers = loadYaml(path.join(DOCKER, 'grafana/provisioning/dashboards/darkroom.yaml'));
    const dashboardsDir = String(obj(obj((providers.providers as Json[])[0]).options).path);
    expect(service('grafana').volumes).toContain(`./grafana/dashboards:${dashboardsDir}:ro`);
    expect(service('grafana').volumes).toContain('./grafana/provisioning:/etc/grafana/provisioning:ro');
  });

  // The metric names the api and worker export (apps/*/src/metrics.ts); the metrics engineer also
  // checks this list against a live /metrics.
  const API_METRICS = [
    'darkroom_queue_waiting_jobs',
    'darkroom_queue_active_jobs',
    'darkroom_queue_paused',
    'darkroom_workers_live',
    'darkroom_jobs_submitted_total',
    'darkroom_jobs_rejected_total',
    'darkroom_http_request_duration_seconds_bucket',
  ];
  const WORKER_METRICS = [
    'darkroom_job_run_seconds_bucket',
    'darkroom_job_queue_wait_seconds_bucket',
    'darkroom_jobs_finished_total',
    'darkroom_worker_busy_slots',
    'darkroom_worker_slots',
    'darkroom_gpu_memory_used_bytes',
    'darkroom_gpu_memory_total_bytes',
    'darkroom_gpu_utilization_ratio',
    'darkroom_backend_healthy',
    'darkroom_backend_vram_total_bytes',
    'darkroom_backend_vram_free_bytes',
    'darkroom_device_seconds_total',
    'darkroom_queued_seconds_total',
    'darkroom_model_load_seconds_total',
  ];
  // prom-client 15 default metrics, registered with prefix darkroom_ in both processes.
  const DEFAULT_METRICS = [
    'process_cpu_user_seconds_total',
    'process_cpu_system_seconds_total',
    'process_cpu_seconds_total',
    'process_start_time_seconds',
    'process_resident_memory_bytes',
    'process_virtual_memory_bytes',
    'process_heap_bytes',
    'process_open_fds',
    'process_max_fds',
    'nodejs_eventloop_lag_seconds',
    'nodejs_eventloop_lag_min_seconds',
    'nodejs_eventloop_lag_max_seconds',
    'nodejs_eventloop_lag_mean_seconds',
    'nodejs_eventloop_lag_stddev_seconds',
    'nodejs_eventloop_lag_p50_seconds',
    'nodejs_eventloop_lag_p90_seconds',
    'nodejs_eventloop_lag_p99_seconds',
    'nodejs_active_resources',
    'nodejs_active_resources_total',
    'nodejs_active_handles',
    'nodejs_active_handles_total',
    'nodejs_active_requests',
    'nodejs_active_requests_total',
    'nodejs_heap_size_total_bytes',
    'nodejs_heap_size_used_bytes',
    'nodejs_external_memory_bytes',
    'nodejs_version_info',
  ].map((n) => `darkroom_${n}`);
  // A histogram's _bucket comes with its _sum and _count.
  const histogramSiblings = [...API_METRICS, ...WORKER_METRICS]
    .filter((m) => m.endsWith('_bucket'))
    .flatMap((m) => [m.replace(/_bucket$/, '_sum'), m.replace(/_bucket$/, '_count')]);
  const KNOWN = new Set([...API_METRICS, ...WORKER_METRICS, ...DEFAULT_METRICS, ...histogramSiblings]);

  const dashboard = JSON.parse(read(dashboardPath)) as Json;
  const panels = (dashboard.panels as Json[]).flatMap((p) => [p, ...((p.panels as Json[] | undefined) ?? [])]);
  const exprs = [
    ...panels.flatMap((p) => ((p.targets as Json[] | undefined) ?? []).map((t) => String(t.expr))),
    ...(obj(dashboard.templating).list as Json[]).map((v) => JSON.stringify(v.query ?? '')),
  ];
  const used = new Set(exprs.flatMap((e) => e.match(/\bdarkroom_[a-z0-9_]+/g) ?? []));

  it('is a Grafana dashboard on the provisioned Prometheus', () => {
    expect(dashboard).toMatchObject({ uid: 'darkroom', title: 'Darkroom' });
    expect(Number(dashboard.schemaVersion)).toBeGreaterThanOrEqual(36);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const dsVar = (obj(dashboard.templating).list as Json[]).find((v) => v.name === 'DS_PROMETHEUS');
    expect(dsVar).toMatchObject({ type: 'datasource', query: 'prometheus', current: { value: 'prometheus' } });
    for (const p of panels.filter((x) => x.type !== 'row')) {
      expect(obj(p.datasource).uid, String(p.title)).toBe(`\${DS_PROMETHEUS}`);
      expect(obj(p.gridPos).w, String(p.title)).toBeGreaterThan(0);
      expect(((p.targets as Json[] | undefined) ?? []).length, String(p.title)).toBeGreaterThan(0);
    }
  });

  it('queries only metrics the api and workers export, and every one of them', () => {
    expect([...used].filter((m) => !KNOWN.has(m))).toEqual([]);
    expect([...API_METRICS, ...WORKER_METRICS].filter((m) => !used.has(m))).toEqual([]);
    expect(used.has('darkroom_nodejs_eventloop_lag_p99_seconds') || used.has('darkroom_nodejs_eventloop_lag_seconds')).toBe(true);
  });

  it('has the panels operators need', () => {
    const all = exprs.join('\n');
    for (const q of ['0.5', '0.95', '0.99']) {
      expect(all).toContain(`histogram_quantile(${q}, sum by (le, route) (rate(darkroom_http_request_duration_seconds_bucket`);
    }
    expect(all).toContain('histogram_quantile(0.95, sum by (le, pipeline) (rate(darkroom_job_run_seconds_bucket');
    expect(all).toContain('histogram_quantile(0.95, sum by (le, pipeline) (rate(darkroom_job_queue_wait_seconds_bucket');
    expect(all).toMatch(/sum by \(pipeline\) \(darkroom_worker_busy_slots[^)]*\) \/ sum by \(pipeline\) \(darkroom_worker_slots/);
    expect(all).toContain('sum by (reason) (rate(darkroom_jobs_rejected_total');
    // Every histogram_quantile aggregates by le (else the quantile is wrong).
    for (const m of all.matchAll(/histogram_quantile\([^,]+, sum by \(([^)]*)\)/g)) expect(m[1]).toMatch(/\ble\b/);
  });
});
