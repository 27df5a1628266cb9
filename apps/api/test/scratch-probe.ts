import { startSystem } from '@darkroom/testing';
import { field, filePart, multipartBody, rawRequest } from './hostile-arbitraries.ts';

const sys = await startSystem({ workers: 0, env: { DARKROOM_MAX_UPLOAD_BYTES: String(1280 * 1024), DARKROOM_STATION_MAX_PENDING: 'off' } });
const port = Number(new URL(sys.url).port);
const B = 'BOUND';
const body = multipartBody(B, [field('pipeline', 'edit'), filePart('image', Buffer.from([0]), 'image/png', Buffer.alloc(0))]);
const t0 = Date.now();
const r = await rawRequest(
  port,
  [
    `POST /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alpha-key-0123456789abcdef\r\nContent-Type: multipart/form-data; boundary=${B}\r\nContent-Length: ${body.length}\r\n\r\n`,
    body,
  ],
  { after: 'wait', timeoutMs: 3000 },
);
console.log(
  Date.now() - t0,
  JSON.stringify(r.responses.map((x) => [x.status, x.headers, x.body.toString()])),
  r.closed,
  r.timedOut,
  r.garbage,
);
const t1 = Date.now();
try {
  const res = await fetch(sys.url + '/v1/jobs', {
    method: 'POST',
    headers: { authorization: 'Bearer alpha-key-0123456789abcdef', 'content-type': `multipart/form-data; boundary=${B}` },
    body,
    signal: AbortSignal.timeout(3000),
  });
  console.log('fetch', res.status, await res.text(), Date.now() - t1);
} catch (e) {
  console.log('fetch err', (e as Error).message, Date.now() - t1);
}
await sys.stop();
