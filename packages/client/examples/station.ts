// A station in ten lines: submit a photo, wait for the result, save it. Run it with
// DARKROOM_URL=http://127.0.0.1:8080 DARKROOM_API_KEY=<key> npx tsx examples/station.ts photo.jpg out.webp
import { DarkroomClient } from '@darkroom/client';

const [photo = 'photo.jpg', out = 'out.webp'] = process.argv.slice(2);
const darkroom = new DarkroomClient(); // DARKROOM_URL and DARKROOM_API_KEY from the environment
const resize = { op: 'resize', width: 512 } as const;
const webp = { op: 'format', type: 'webp' } as const;
const job = await darkroom.submit({ image: photo, pipeline: 'edit', params: { operations: [resize, webp] } });
const done = await darkroom.waitFor(job.id, { onUpdate: (j) => console.log(j.status, j.position ?? j.progress?.percent ?? '') });
if (done.status !== 'completed') throw new Error(`${done.status}: ${done.error?.message ?? 'no result'}`);
await darkroom.download(done.id, out);
console.log(`saved ${out} (${done.result?.width}×${done.result?.height})`);
