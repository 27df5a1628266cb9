import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { REPO_ROOT } from './processes.ts';

/** Real-world and hostile images the tests use (packages/testing/fixtures/images/MANIFEST.md says what each does). */
export const FIXTURES_DIR = path.resolve(REPO_ROOT, 'packages/testing/fixtures/images');

export function fixturePath(name: string): string {
  return path.join(FIXTURES_DIR, name);
}

export function fixture(name: string): Buffer {
  return fs.readFileSync(fixturePath(name));
}

export interface FixtureServer {
  /** `http://127.0.0.1:<port>`: `${url}/<fixture name>` answers that image, anything else 404. */
  url: string;
  close(): Promise<void>;
}

/** A plain HTTP server on loopback with the fixture images, for submits by `imageUrl` (the api needs DARKROOM_INPUT_URL_ALLOW_PRIVATE=true to reach it). */
export async function serveFixtures(): Promise<FixtureServer> {
  const server = http.createServer((req, res) => {
    const name = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
    // Only a bare file name of the fixtures directory: nothing above it is served.
    const file = name && path.basename(name) === name ? fixturePath(name) : undefined;
    fs.readFile(file ?? FIXTURES_DIR, (err, bytes) => {
      if (err) {
        res.writeHead(404, { 'Content-Type': 'text/plain' });
        res.end('no such image');
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': bytes.length });
      res.end(bytes);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
