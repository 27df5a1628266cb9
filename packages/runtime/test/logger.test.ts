import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { prettyByDefault } from '../src/logger.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = path.join(here, 'fixtures/log-line.ts');
const hasScript = spawnSync('script', ['--version'], { stdio: 'ignore' }).status === 0;
// biome-ignore lint/suspicious/noControlCharactersInRegex: colour codes are what a terminal gets
const ANSI = /\x1b\[[0-9;]*m/g;

/** Runs the fixture with the given environment; on a pseudo-terminal (util-linux `script`) or piped. */
function logLine(env: Record<string, string>, tty: boolean): string {
  const node = [process.execPath, '--import', 'tsx', fixture].map((a) => `'${a}'`).join(' ');
  const child = tty
    ? spawnSync('script', ['-qec', node, '/dev/null'], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 })
    : spawnSync(process.execPath, ['--import', 'tsx', fixture], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  expect(child.status, child.stderr).toBe(0);
  return child.stdout.replace(ANSI, '').replaceAll('\r', '').trim();
}

describe('log format: readable on a terminal, JSON when piped', () => {
  const base = { NODE_ENV: 'development', DARKROOM_LOG_PRETTY: '' };

  it('decides by the terminal and NODE_ENV', () => {
    expect(prettyByDefault({ isTTY: true }, 'development')).toBe(true);
    expect(prettyByDefault({ isTTY: true }, undefined)).toBe(true);
    expect(prettyByDefault({ isTTY: false }, 'development')).toBe(false);
    expect(prettyByDefault({}, 'development')).toBe(false);
    expect(prettyByDefault({ isTTY: true }, 'production')).toBe(false);
  });

  it('prints JSON lines when piped', () => {
    const line = logLine(base, false);
    expect(JSON.parse(line)).toMatchObject({ level: 30, name: 'api', msg: 'listening', port: 8080 });
  });

  it.skipIf(!hasScript)('prints a readable line on a terminal (pnpm start passes its terminal to the api and worker)', () => {
    const out = logLine(base, true);
    expect(out).toMatch(/^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(api\): listening/m);
    expect(out).toMatch(/port: 8080/);
    expect(out).not.toMatch(/^\{/m);
    // pnpm start runs the api and worker on its own stdout, so they see the same terminal.
    const start = fs.readFileSync(path.join(here, '../../../scripts/start.ts'), 'utf8');
    expect(start).toMatch(/function startApp[\s\S]*?stdio: 'inherit'/);
  });

  it.skipIf(!hasScript)('prints JSON on a terminal in production, and DARKROOM_LOG_PRETTY overrides either way', () => {
    expect(JSON.parse(logLine({ NODE_ENV: 'production', DARKROOM_API_KEYS: 'a:b' }, true))).toMatchObject({ msg: 'listening' });
    expect(JSON.parse(logLine({ ...base, DARKROOM_LOG_PRETTY: 'false' }, true))).toMatchObject({ msg: 'listening' });
    expect(logLine({ ...base, DARKROOM_LOG_PRETTY: 'true' }, false)).toMatch(/INFO \(api\): listening/);
  });
});
