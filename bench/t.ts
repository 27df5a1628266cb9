import { startRedis } from '../packages/testing/src/index.ts';
import { Queue, Redis } from './lib/deps.ts';
import { randomUUID } from 'node:crypto';
const r = await startRedis({ needPrivate: true });
for (const variant of ['plain', 'plain', 'plain']) {
  const q = new Queue('x' + Math.random(), { connection: new Redis(r.url, { maxRetriesPerRequest: null }) as never, prefix: 'p' });
  await q.waitUntilReady();
  let n = 0; const end = performance.now() + 3000;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: 64 }, async () => { while (performance.now() < end) { await q.add('edit', { a: 'x'.repeat(300), id: randomUUID() }, { priority: 4, jobId: randomUUID() }); n++; } }));
  console.log(variant, Math.round(n / ((performance.now() - t0) / 1000)));
  await q.close();
}
await r.stop();
