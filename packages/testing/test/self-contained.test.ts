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
/** The contract and design notes the project started from live beside it; inside, the contract is docs/contract.md. */
const OUTSIDE_DOC = /(^|[^\w/.-])(API|DESIGN|STYLE|STACK)\.md\b/;
/** Absolute paths of one checkout (a home or work directory): nobody else has them. */
const ABSOLUTE = /(^|[\s'"`(=:])(\/work|\/home\/[\w.-]+|\/Users\/[\w.-]+|\/root)\/[\w.-]/m;
/*
 * The docs, code and bench output speak of the project and its measurements, not of the
 * computers it was written on or how the work was organised.
 */
// The words are kept ROT13-encoded, so that this file does not itself carry what it refuses.
const rot13 = (s: string) =>
  s.replace(/[a-z]/gi, (c) => String.fromCharCode(((c.toLowerCase().charCodeAt(0) - 97 + 13) % 26) + (c <= 'Z' ? 65 : 97)));
/** A phrase as a pattern whose first letter may be either case. */
const phrase = (encoded: string) => {
  const p = rot13(encoded);
  return `\\b[${p[0]!.toUpperCase()}${p[0]!.toLowerCase()}]${p.slice(1)}`;
};
const PROCESS_WORDS = new RegExp(
  [
    `${phrase('vffhr')}\\s*#?\\d+`,
    `${phrase('znpuvar')} [AB]\\b`,
    ...['Guvf IZ', 'Gurfr znpuvarf', 'Guvf frffvba', 'Sverpenpxre'].map((w) => `${phrase(w)}\\b`),
    `\\b${rot13('gur PRB')}\\b`,
  ].join('|'),
);
const TEXT = /\.(ts|js|cjs|mjs|json|md|ya?ml|sh|toml|txt|html|css|svg|py|example)$|(^|\/)(Dockerfile|run)$/;

const SELF = 'packages/testing/test/self-contained.test.ts';

/** Tracked text files (this one aside) with their contents. */
function trackedText(): { file: string; text: string }[] {
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: REPO_ROOT, encoding: 'utf8' }).split('\0').filter(Boolean);
  expect(files.length).toBeGreaterThan(100);
  return files
    .filter((f) => TEXT.test(f) && f !== SELF && fs.existsSync(path.join(REPO_ROOT, f)))
    .map((file) => ({ file, text: fs.readFileSync(path.join(REPO_ROOT, file), 'utf8') }));
}

/** `file:line: text` for each line of the tracked text files that matches. */
function linesMatching(re: RegExp): string[] {
  return trackedText().flatMap(({ file, text }) =>
    text.split('\n').flatMap((line, i) => (re.test(line) ? [`${file}:${i + 1}: ${line.trim().slice(0, 160)}`] : [])),
  );
}

describe('the repository stands alone', () => {
  it('no tracked file reaches for a folder outside it', () => {
    const offenders = trackedText()
      .filter(({ text }) => OUTSIDE.test(text))
      .map(({ file }) => file);
    expect(offenders).toEqual([]);
  });

  it('no tracked file refers to a document that is not in it', () => {
    expect(linesMatching(OUTSIDE_DOC)).toEqual([]);
  });

  it('no tracked file names an absolute path of one checkout', () => {
    expect(linesMatching(ABSOLUTE)).toEqual([]);
  });

  it('every relative link in the Markdown files points inside the repository, at a file that exists', () => {
    const broken: string[] = [];
    for (const { file, text } of trackedText().filter(({ file }) => file.endsWith('.md'))) {
      for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        if (/^([a-z][a-z0-9+.-]*:|#|\/\/)/i.test(target!)) continue;
        const resolved = path.resolve(REPO_ROOT, path.dirname(file), decodeURI(target!.split('#')[0]!));
        if (!resolved.startsWith(REPO_ROOT + path.sep) || !fs.existsSync(resolved)) broken.push(`${file}: ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('the docs link out of the repository only to public project pages, never to a host the contract depends on', () => {
    // Stations read these pages on closed networks: everything they build against is in the repository or served by the api.
    const PUBLIC_PAGES = new Set(['www.standardwebhooks.com', 'localhost']);
    const outside: string[] = [];
    for (const { file, text } of trackedText().filter(({ file }) => file === 'README.md' || /^docs\/[^/]+\.md$/.test(file))) {
      for (const m of text.matchAll(/\]\((\w[\w+.-]*:[^)\s]*)\)|<(https?:\/\/[^>\s]+)>/g)) {
        const target = m[1] ?? m[2] ?? '';
        const host = /^https?:\/\/([^/:?#]+)/i.exec(target)?.[1];
        if (!host || !PUBLIC_PAGES.has(host.toLowerCase())) outside.push(`${file}: ${target}`);
      }
    }
    expect(outside).toEqual([]);
  });

  it('no tracked file speaks of the computers the project was built on or of how the work was organised', () => {
    expect(linesMatching(PROCESS_WORDS)).toEqual([]);
  });

  it('has the fixture images inside it, with their manifest', () => {
    expect(FIXTURES_DIR.startsWith(REPO_ROOT + path.sep)).toBe(true);
    const names = fs.readdirSync(FIXTURES_DIR);
    expect(names).toContain('MANIFEST.md');
    expect(names.length).toBeGreaterThan(20);
  });
});
