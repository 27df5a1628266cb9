/*
 * The HTTP floor: the least any Node HTTP front end to BullMQ can do per submit, in a process of
 * its own, so the cost of HTTP itself on the host shows beside Darkroom's. node:http, no
 * framework, no auth, no validation, no logging: read the body, (multipart) write it to a file,
 * Queue.add the job the api would add, answer 202 with a small JSON body. No Darkroom code runs
 * here beyond building the same job.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { queueOptions } from '../../packages/jobs/src/index.ts';
import { loadConfig } from '../../packages/runtime/src/index.ts';
import { apiEquivalentJob, EDIT_PARAMS, type JSON_SUBMIT } from './context.ts';
import { Queue, Redis } from './deps.ts';

const url = process.env.BENCH_REDIS_URL!;
const prefix = process.env.BENCH_PREFIX!;
const dir = process.env.BENCH_DATA_DIR!;
const config = loadConfig({ ...process.env, REDIS_URL: url });
const connection = new Redis(url, { maxRetriesPerRequest: null });
const queues = {
  edit: new Queue('edit', { ...queueOptions(config, connection as never), prefix }),
  synthetic: new Queue('synthetic', { ...queueOptions(config, connection as never), prefix }),
};
await fs.mkdir(dir, { recursive: true });

const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    void (async () => {
      const body = Buffer.concat(chunks);
      const multipart = (req.headers['content-type'] ?? '').startsWith('multipart/');
      let job: ReturnType<typeof apiEquivalentJob>;
      if (multipart) {
        job = apiEquivalentJob(config, 'edit', EDIT_PARAMS, { bytes: body.length, width: 105, height: 105 });
        await fs.writeFile(path.join(dir, job.opts.jobId), body);
      } else {
        const parsed = JSON.parse(body.toString('utf8')) as typeof JSON_SUBMIT;
        job = apiEquivalentJob(config, 'synthetic', parsed.params);
      }
      await queues[job.name as 'edit' | 'synthetic'].add(job.name, job.data as never, job.opts);
      const out = JSON.stringify({ id: job.opts.jobId, status: 'queued', requestId: randomUUID() });
      res.writeHead(202, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(out) });
      res.end(out);
    })().catch((err: Error) => {
      res.writeHead(500);
      res.end(err.message);
    });
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  const addr = server.address() as { port: number };
  process.stdout.write(`ready ${addr.port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  void Promise.all(Object.values(queues).map((q) => q.close())).then(() => {
    connection.disconnect();
    process.exit(0);
  });
});
