import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FIXTURES_DIR, REPO_ROOT } from '../src/index.ts';

/*
 * A person who clones the repository has only the repository: no test, script or doc may read
 * or link to a folder beside it.
 */

const OUTSIDE = /\.\.\/shared\b|\.\.\/\.\.\/\.\.\/\.\.\/shared|(^|[^\w/.-])shared\/(fixtures|API\.md)/;
const TEXT = /\.(ts|js|cjs|mjs|json|md|ya?ml|sh|toml|txt|html|css)$|(^|\/)(Dockerfile|run)$/;

describe('the repository stands alone', () => {
  it('no tracked file reaches for a folder outside it', () => {
    const files = execFileSync('git', ['ls-files', '-z'], { cwd: REPO_ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
    expect(files.length).toBeGreaterThan(100);
    const offenders = files
      .filter((f) => TEXT.test(f) && f !== 'packages/testing/test/self-contained.test.ts')
      .filter((f) => fs.existsSync(path.join(REPO_ROOT, f)) && OUTSIDE.test(fs.readFileSync(path.join(REPO_ROOT, f), 'utf8')));
    expect(offenders).toEqual([]);
  });

  it('has the fixture images inside it, with their manifest', () => {
    expect(FIXTURES_DIR.startsWith(REPO_ROOT + path.sep)).toBe(true);
    const names = fs.readdirSync(FIXTURES_DIR);
    expect(names).toContain('MANIFEST.md');
    expect(names.length).toBeGreaterThan(20);
  });
});
