import fs from 'node:fs';
import { UsageError } from './io.ts';

/*
 * Params from the command line, merged in this order: `--params` (JSON text, or `@file.json`),
 * then each `--param key=value` (dotted keys nest: `a.b=1`), then each `--op name:k=v,k2=v2`
 * appended to `operations` (the edit pipeline's list). Values that read as numbers become
 * numbers, `true`/`false` booleans; anything else stays a string.
 */

export function buildParams(opts: { params?: string; param?: string[]; op?: string[] }): Record<string, unknown> | undefined {
  let params: Record<string, unknown> | undefined;
  if (opts.params !== undefined) params = parseJsonParams(opts.params);
  for (const p of opts.param ?? []) {
    const [key, value] = splitPair(p, '--param');
    params ??= {};
    setPath(params, key, coerce(value));
  }
  for (const o of opts.op ?? []) {
    params ??= {};
    params.operations ??= [];
    const list = params.operations;
    if (!Array.isArray(list)) throw new UsageError('--op adds to params.operations, which --params set to something that is not a list');
    list.push(parseOp(o));
  }
  return params;
}

/** `resize:width=512,fit=inside` → `{ op: 'resize', width: 512, fit: 'inside' }`; `flip` → `{ op: 'flip' }`. */
export function parseOp(text: string): Record<string, unknown> {
  const colon = text.indexOf(':');
  const name = (colon < 0 ? text : text.slice(0, colon)).trim();
  if (!/^[a-zA-Z][\w-]*$/.test(name)) throw new UsageError(`--op ${text}: expected name:key=value,key=value (e.g. resize:width=512)`);
  const op: Record<string, unknown> = { op: name };
  const args = colon < 0 ? '' : text.slice(colon + 1);
  for (const pair of args.split(',').filter((s) => s.trim() !== '')) {
    const [key, value] = splitPair(pair, `--op ${text}`);
    op[key] = coerce(value);
  }
  return op;
}

export function coerce(value: string): unknown {
  if (/^-?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i.test(value)) return Number(value);
  if (value === 'true') return true;
  if (value === 'false') return false;
  return value;
}

function splitPair(text: string, where: string): [string, string] {
  const eq = text.indexOf('=');
  const key = eq < 0 ? '' : text.slice(0, eq).trim();
  if (!key) throw new UsageError(`${where}: expected key=value, got "${text}"`);
  return [key, text.slice(eq + 1).trim()];
}

function parseJsonParams(text: string): Record<string, unknown> {
  let source = text;
  if (text.startsWith('@')) {
    try {
      source = fs.readFileSync(text.slice(1), 'utf8');
    } catch (err) {
      throw new UsageError(`--params ${text}: cannot read ${text.slice(1)} (${(err as NodeJS.ErrnoException).code ?? err})`);
    }
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(source);
  } catch (err) {
    throw new UsageError(`--params: not valid JSON (${(err as Error).message})`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError('--params: expected a JSON object');
  return parsed as Record<string, unknown>;
}

function setPath(target: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let node = target;
  for (const k of keys.slice(0, -1)) {
    const next = node[k];
    if (next === undefined) node = node[k] = {};
    else if (next && typeof next === 'object' && !Array.isArray(next)) node = next as Record<string, unknown>;
    else throw new UsageError(`--param ${dotted}: ${k} is already set to a value that is not an object`);
  }
  node[keys.at(-1)!] = value;
}

/** `a, b,c` → `['a', 'b', 'c']`; the API names any unknown entry. */
export function parseList(value: string | undefined, flag: string): string[] | undefined {
  if (value === undefined) return undefined;
  const items = value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (items.length === 0) throw new UsageError(`${flag}: expected a comma-separated list`);
  return items;
}
