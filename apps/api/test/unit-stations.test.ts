import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '@darkroom/runtime';
import { afterAll, describe, expect, it } from 'vitest';
import { loadStations, type Station, StationConfigError } from '../src/auth/stations.ts';

const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-'));
afterAll(() => fs.rmSync(tmpDir, { recursive: true, force: true }));

let fileCount = 0;
/** Writes `content` (JSON-encoded unless a string) to a fresh stations file and returns its path. */
function stationsFile(content: unknown): string {
  const p = path.join(tmpDir, `stations-${++fileCount}.json`);
  fs.writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
}

function stationError(env: Record<string, string>): StationConfigError {
  try {
    loadStations(loadConfig(env));
  } catch (err) {
    expect(err).toBeInstanceOf(StationConfigError);
    expect((err as Error).name).toBe('StationConfigError');
    return err as StationConfigError;
  }
  throw new Error(`expected loadStations to throw for ${JSON.stringify(env)}`);
}

const KEY_A = 'alpha-key-0123456789';
const KEY_B = 'beta-key-0123456789';

/** A station with the operator defaults of loadConfig({}). */
const defaults = (name: string): Station => ({
  name,
  maxPriority: 'critical',
  defaultPriority: 'normal',
  maxPending: 100,
  requestsPerMinute: null,
  webhookSecret: undefined,
  weight: 1,
  gpuSecondsPerDay: null,
});

describe('DARKROOM_API_KEYS', () => {
  it('reads station:key pairs with the operator defaults', () => {
    const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: 'a:key1,b:key2' }));
    expect(reg.open).toBe(false);
    expect(reg.stations).toEqual([defaults('a'), defaults('b')]);
    expect(reg.byKey('key1')?.name).toBe('a');
    expect(reg.byKey('key2')?.name).toBe('b');
  });

  it('splits at the first colon only, so keys may hold colons', () => {
    const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: 'a:k:e:y,b:x:' + 'y' }));
    expect(reg.byKey('k:e:y')?.name).toBe('a');
    expect(reg.byKey('x:y')?.name).toBe('b');
    expect(reg.byKey('k')).toBeUndefined();
    expect(reg.byKey('a:k:e:y')).toBeUndefined();
  });

  it('trims blanks and skips empty entries', () => {
    const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: ' a:key1 , ,b:key2,' }));
    expect(reg.stations.map((s) => s.name)).toEqual(['a', 'b']);
    expect(reg.byKey('key1')?.name).toBe('a');
  });

  it('takes the operator limits from the config', () => {
    const reg = loadStations(
      loadConfig({
        DARKROOM_API_KEYS: 'a:key1',
        DARKROOM_STATION_MAX_PRIORITY: 'high',
        DARKROOM_STATION_DEFAULT_PRIORITY: 'low',
        DARKROOM_STATION_MAX_PENDING: 'off',
      }),
    );
    expect(reg.byKey('key1')).toEqual({ ...defaults('a'), maxPriority: 'high', defaultPriority: 'low', maxPending: null });
  });

  it.each(['nokey', ':key', 'a:', 'a:key1,broken', 'a:key1,:x'])('refuses the malformed entry list %j', (value) => {
    expect(stationError({ DARKROOM_API_KEYS: value }).message).toBe('DARKROOM_API_KEYS: each entry must be station:key');
  });

  it('refuses the same key twice', () => {
    expect(stationError({ DARKROOM_API_KEYS: 'a:same,b:same' }).message).toBe('the same key is configured twice (station b)');
  });

  it('allows one station several keys', () => {
    const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: 'a:old-key,a:new-key' }));
    expect([reg.byKey('old-key')?.name, reg.byKey('new-key')?.name]).toEqual(['a', 'a']);
  });
});

describe('byKey', () => {
  const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: `alpha:${KEY_A},beta:${KEY_B}` }));

  it('finds the station of a right key', () => {
    expect(reg.byKey(KEY_A)).toEqual(defaults('alpha'));
    expect(reg.byKey(KEY_B)).toEqual(defaults('beta'));
  });

  it('finds nothing for a wrong, near or missing key', () => {
    expect(reg.byKey('wrong')).toBeUndefined();
    expect(reg.byKey(`${KEY_A} `)).toBeUndefined();
    expect(reg.byKey(KEY_A.slice(0, -1))).toBeUndefined();
    expect(reg.byKey(KEY_A.toUpperCase())).toBeUndefined();
    expect(reg.byKey('')).toBeUndefined();
    expect(reg.byKey(undefined)).toBeUndefined();
  });
});

describe('DARKROOM_STATIONS_FILE', () => {
  it('reads a JSON array with per-station limits', () => {
    const file = stationsFile([
      {
        name: 'lab-pc',
        key: KEY_A,
        maxPriority: 'high',
        defaultPriority: 'low',
        maxPending: 5,
        requestsPerMinute: 60,
        webhookSecret: 'lab-secret-0123456789',
        weight: 2.5,
        gpuSecondsPerDay: 3600,
      },
      { name: 'kiosk', key: KEY_B },
    ]);
    const reg = loadStations(loadConfig({ DARKROOM_STATIONS_FILE: file }));
    expect(reg.byKey(KEY_A)).toEqual({
      name: 'lab-pc',
      maxPriority: 'high',
      defaultPriority: 'low',
      maxPending: 5,
      requestsPerMinute: 60,
      webhookSecret: 'lab-secret-0123456789',
      weight: 2.5,
      gpuSecondsPerDay: 3600,
    });
    expect(reg.byKey(KEY_B)).toEqual(defaults('kiosk'));
  });

  it('reads the {stations: […]} form', () => {
    const file = stationsFile({ stations: [{ name: 'kiosk', key: KEY_B, maxPending: null }] });
    const reg = loadStations(loadConfig({ DARKROOM_STATIONS_FILE: file }));
    expect(reg.byKey(KEY_B)).toEqual({ ...defaults('kiosk'), maxPending: null });
  });

  it('combines the file with DARKROOM_API_KEYS', () => {
    const file = stationsFile([{ name: 'kiosk', key: KEY_B }]);
    const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: `alpha:${KEY_A}`, DARKROOM_STATIONS_FILE: file }));
    expect(reg.stations.map((s) => s.name)).toEqual(['alpha', 'kiosk']);
  });

  it('refuses a key configured both in the environment and the file', () => {
    const file = stationsFile([{ name: 'kiosk', key: KEY_A }]);
    expect(stationError({ DARKROOM_API_KEYS: `alpha:${KEY_A}`, DARKROOM_STATIONS_FILE: file }).message).toBe(
      'the same key is configured twice (station kiosk)',
    );
  });

  it('refuses the same key twice in the file', () => {
    const file = stationsFile([
      { name: 'one', key: KEY_A },
      { name: 'two', key: KEY_A },
    ]);
    expect(stationError({ DARKROOM_STATIONS_FILE: file }).message).toBe('the same key is configured twice (station two)');
  });

  it('refuses a missing file and bad JSON', () => {
    const missing = path.join(tmpDir, 'missing.json');
    expect(stationError({ DARKROOM_STATIONS_FILE: missing }).message).toMatch(
      new RegExp(`^DARKROOM_STATIONS_FILE: cannot read ${missing.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: ENOENT`),
    );
    expect(stationError({ DARKROOM_STATIONS_FILE: stationsFile('[{"name": "a",') }).message).toMatch(
      /^DARKROOM_STATIONS_FILE: cannot read /,
    );
  });

  it.each([
    ['a short key', [{ name: 'a', key: 'short' }], '0.key: keys must be at least 16 characters'],
    ['a bad name', [{ name: 'has space', key: KEY_A }], '0.name: letters, digits, _ . @ - only'],
    ['an unknown field', [{ name: 'a', key: KEY_A, maxPrio: 'low' }], 'Unrecognized key'],
    ['a bad priority', [{ name: 'a', key: KEY_A, maxPriority: 'urgent' }], '0.maxPriority: Invalid option'],
    ['a zero maxPending', [{ name: 'a', key: KEY_A, maxPending: 0 }], '0.maxPending'],
    ['a short webhook secret', [{ name: 'a', key: KEY_A, webhookSecret: 'short' }], '0.webhookSecret'],
    [
      'a bad priority in the object form',
      { stations: [{ name: 'a', key: KEY_A, defaultPriority: 'asap' }] },
      'stations.0.defaultPriority: Invalid option',
    ],
    ['an object without stations', { station: [] }, 'stations: '],
    ['null', 'null', 'expected object, received null'],
  ])('refuses %s', (_what, content, fragment) => {
    const err = stationError({ DARKROOM_STATIONS_FILE: stationsFile(content) });
    expect(err.message.startsWith('DARKROOM_STATIONS_FILE: ')).toBe(true);
    expect(err.message).toContain(fragment);
  });
});

describe('open mode and production', () => {
  it('without keys outside production every request is the default station', () => {
    const reg = loadStations(loadConfig({}));
    expect(reg.open).toBe(true);
    expect(reg.stations).toEqual([]);
    expect(reg.byKey(undefined)).toEqual(defaults('default'));
    expect(reg.byKey('anything')).toEqual(defaults('default'));
  });

  it('refuses to run without keys in production', () => {
    expect(stationError({ NODE_ENV: 'production' }).message).toBe(
      'NODE_ENV=production needs station keys: set DARKROOM_API_KEYS or DARKROOM_STATIONS_FILE',
    );
    expect(stationError({ NODE_ENV: 'production', DARKROOM_STATIONS_FILE: stationsFile([]) }).message).toMatch(/^NODE_ENV=production/);
  });

  it('runs closed in production with keys', () => {
    const reg = loadStations(loadConfig({ NODE_ENV: 'production', DARKROOM_API_KEYS: `alpha:${KEY_A}` }));
    expect(reg.open).toBe(false);
    expect(reg.byKey(undefined)).toBeUndefined();
    expect(reg.byKey(KEY_A)?.name).toBe('alpha');
  });
});

describe('isAdmin', () => {
  it('accepts only the admin token', () => {
    const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: `alpha:${KEY_A}`, DARKROOM_ADMIN_TOKEN: 'admin-token-0123456789' }));
    expect(reg.hasAdmin).toBe(true);
    expect(reg.isAdmin('admin-token-0123456789')).toBe(true);
    expect(reg.isAdmin('admin-token-012345678')).toBe(false);
    expect(reg.isAdmin(KEY_A)).toBe(false);
    expect(reg.isAdmin('')).toBe(false);
    expect(reg.isAdmin(undefined)).toBe(false);
  });

  it('accepts nobody when no admin token is configured', () => {
    const reg = loadStations(loadConfig({ DARKROOM_API_KEYS: `alpha:${KEY_A}` }));
    expect(reg.hasAdmin).toBe(false);
    expect(reg.isAdmin('')).toBe(false);
    expect(reg.isAdmin('anything')).toBe(false);
    expect(reg.isAdmin(undefined)).toBe(false);
  });

  it('does not treat a station key as admin in open mode', () => {
    const reg = loadStations(loadConfig({ DARKROOM_ADMIN_TOKEN: 'admin-token-0123456789' }));
    expect(reg.isAdmin('anything')).toBe(false);
    expect(reg.isAdmin('admin-token-0123456789')).toBe(true);
  });
});

describe('default priority within the maximum', () => {
  it('caps an inherited default at the station maximum and refuses an explicit one above it', async () => {
    const { loadConfig } = await import('@darkroom/runtime');
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const { loadStations, StationConfigError } = await import('../src/auth/stations.ts');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'darkroom-stations-'));
    try {
      const file = path.join(dir, 's.json');
      fs.writeFileSync(file, JSON.stringify([{ name: 'slow', key: 'slow-key-0123456789abcdef', maxPriority: 'low' }]));
      const reg = loadStations(loadConfig({ DARKROOM_STATIONS_FILE: file }));
      expect(reg.byKey('slow-key-0123456789abcdef')).toMatchObject({ maxPriority: 'low', defaultPriority: 'low' });
      const env = loadConfig({
        DARKROOM_API_KEYS: 'a:key-a-0123456789abcdef',
        DARKROOM_STATION_MAX_PRIORITY: 'high',
        DARKROOM_STATION_DEFAULT_PRIORITY: 'critical',
      });
      expect(loadStations(env).byKey('key-a-0123456789abcdef')).toMatchObject({ maxPriority: 'high', defaultPriority: 'high' });
      fs.writeFileSync(
        file,
        JSON.stringify([{ name: 'bad', key: 'bad-key-0123456789abcdef', maxPriority: 'low', defaultPriority: 'high' }]),
      );
      expect(() => loadStations(loadConfig({ DARKROOM_STATIONS_FILE: file }))).toThrow(StationConfigError);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
