import fs from 'node:fs';
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
