import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './processes.ts';

/** The shared real-world and hostile images (see shared/fixtures/images/MANIFEST.md). */
export const FIXTURES_DIR = path.resolve(REPO_ROOT, '../shared/fixtures/images');

export function fixturePath(name: string): string {
  return path.join(FIXTURES_DIR, name);
}

export function fixture(name: string): Buffer {
  return fs.readFileSync(fixturePath(name));
}
