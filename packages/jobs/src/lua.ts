import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';

/*
 * Darkroom's Lua scripts live in ./lua, one file each with a BullMQ-style header. They are read
 * once and registered on a connection as commands (EVALSHA, falling back to EVAL).
 */

const sources = new Map<string, string>();

function source(name: string): string {
  let text = sources.get(name);
  if (text === undefined) {
    text = readFileSync(new URL(`./lua/${name}.lua`, import.meta.url), 'utf8');
    sources.set(name, text);
  }
  return text;
}

/** The script `name` as a command on `redis`, defined on first use. */
export function luaCommand<Args extends (string | number)[]>(
  redis: Redis,
  name: string,
  numberOfKeys: number,
): (...args: Args) => Promise<unknown> {
  const command = `darkroom_${name.replace(/-/g, '_')}`;
  const r = redis as unknown as Record<string, (...args: Args) => Promise<unknown>>;
  if (typeof r[command] !== 'function') redis.defineCommand(command, { numberOfKeys, lua: source(name) });
  return (...args: Args) => r[command]!(...args);
}
