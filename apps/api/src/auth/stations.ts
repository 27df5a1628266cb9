import crypto, { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import { isAbove, Priority } from '@darkroom/contracts';
import type { Station } from '@darkroom/jobs';
import type { Config } from '@darkroom/runtime';
import { z } from 'zod';

/*
 * Stations and their keys. Keys are kept only as sha256 digests and compared in constant time;
 * a station's limits come from the stations file, else the operator's defaults.
 */

export type { Station };

const StationEntry = z.strictObject({
  name: z
    .string()
    .min(1)
    .max(64)
    .regex(/^[A-Za-z0-9_.@-]+$/, 'letters, digits, _ . @ - only'),
  key: z.string().min(16, 'keys must be at least 16 characters'),
  maxPriority: Priority.optional(),
  defaultPriority: Priority.optional(),
  maxPending: z.int().min(1).nullable().optional(),
  requestsPerMinute: z.int().min(1).nullable().optional(),
  webhookSecret: z.string().min(16).optional(),
  /** Turns against other stations at the same priority, in proportion (default 1). */
  weight: z.number().min(0.01).max(1024).optional(),
  /** Device seconds per UTC day; null or absent: no budget. */
  gpuSecondsPerDay: z.number().positive().nullable().optional(),
});
// The two accepted shapes, picked by the JSON's own shape: a z.union would hide the field at fault
// behind a bare "Invalid input" whenever both shapes fail (a misspelt priority, say).
const StationsFile = z.array(StationEntry);
const StationsFileObject = z.strictObject({ stations: z.array(StationEntry) });

// crypto.hash (Node ≥ 20.12) is the one-shot form, several times cheaper per call than a Hash object.
const digest: (s: string) => Buffer =
  typeof crypto.hash === 'function' ? (s) => crypto.hash('sha256', s, 'buffer') : (s) => createHash('sha256').update(s, 'utf8').digest();

/** Compares two secrets in constant time (digests first, so lengths leak nothing either). */
export function constantTimeEqual(given: string | undefined, expected: string): boolean {
  return given !== undefined && timingSafeEqual(digest(given), digest(expected));
}

export class StationRegistry {
  readonly #entries: { digest: Buffer; station: Station }[];
  readonly #adminDigest: Buffer | undefined;
  /** No keys configured: every request is the `default` station (never in production). */
  readonly open: boolean;
  readonly #openStation: Station;

  constructor(config: Config, entries: { key: string; station: Station }[]) {
    this.#entries = entries.map((e) => ({ digest: digest(e.key), station: e.station }));
    this.#adminDigest = config.adminToken ? digest(config.adminToken) : undefined;
    this.open = entries.length === 0;
    this.#openStation = defaultStation(config, 'default');
  }

  get hasAdmin(): boolean {
    return this.#adminDigest !== undefined;
  }

  get stations(): Station[] {
    return this.#entries.map((e) => e.station);
  }

  /** The station a key belongs to, checking every entry so the time taken does not depend on which matched. */
  byKey(key: string | undefined): Station | undefined {
    if (this.open) return this.#openStation;
    if (!key) return undefined;
    const d = digest(key);
    let found: Station | undefined;
    for (const e of this.#entries) {
      if (timingSafeEqual(e.digest, d)) found = e.station;
    }
    return found;
  }

  isAdmin(token: string | undefined): boolean {
    if (!token || !this.#adminDigest) return false;
    return timingSafeEqual(this.#adminDigest, digest(token));
  }
}

/** An inherited default never exceeds the station's maximum: a plain submit must not be refused. */
function capped(defaultPriority: Priority, maxPriority: Priority): Priority {
  return isAbove(defaultPriority, maxPriority) ? maxPriority : defaultPriority;
}

function defaultStation(config: Config, name: string): Station {
  return {
    name,
    maxPriority: config.limits.stationMaxPriority,
    defaultPriority: capped(config.limits.stationDefaultPriority, config.limits.stationMaxPriority),
    maxPending: config.limits.stationMaxPending,
    requestsPerMinute: null,
    webhookSecret: undefined,
    weight: 1,
    gpuSecondsPerDay: null,
  };
}

export class StationConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StationConfigError';
  }
}

/** Reads DARKROOM_API_KEYS (`station:key,…`) and DARKROOM_STATIONS_FILE. Throws on any mistake. */
export function loadStations(config: Config): StationRegistry {
  const entries: { key: string; station: Station }[] = [];
  for (const pair of config.apiKeys
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const idx = pair.indexOf(':');
    if (idx <= 0 || idx === pair.length - 1) {
      throw new StationConfigError('DARKROOM_API_KEYS: each entry must be station:key');
    }
    entries.push({ key: pair.slice(idx + 1), station: defaultStation(config, pair.slice(0, idx)) });
  }
  if (config.stationsFile) {
    let raw: unknown;
    try {
      raw = JSON.parse(fs.readFileSync(config.stationsFile, 'utf8'));
    } catch (err) {
      throw new StationConfigError(`DARKROOM_STATIONS_FILE: cannot read ${config.stationsFile}: ${(err as Error).message}`);
    }
    const parsed = Array.isArray(raw) ? StationsFile.safeParse(raw) : StationsFileObject.safeParse(raw);
    if (!parsed.success) {
      const lines = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      throw new StationConfigError(`DARKROOM_STATIONS_FILE: ${lines}`);
    }
    for (const s of Array.isArray(parsed.data) ? parsed.data : parsed.data.stations) {
      const base = defaultStation(config, s.name);
      const maxPriority = s.maxPriority ?? base.maxPriority;
      if (s.defaultPriority && isAbove(s.defaultPriority, maxPriority)) {
        throw new StationConfigError(
          `DARKROOM_STATIONS_FILE: station ${s.name}: defaultPriority ${s.defaultPriority} is above its maxPriority ${maxPriority}`,
        );
      }
      entries.push({
        key: s.key,
        station: {
          ...base,
          maxPriority,
          defaultPriority: s.defaultPriority ?? capped(config.limits.stationDefaultPriority, maxPriority),
          maxPending: s.maxPending === undefined ? base.maxPending : s.maxPending,
          requestsPerMinute: s.requestsPerMinute ?? null,
          webhookSecret: s.webhookSecret,
          weight: s.weight ?? 1,
          gpuSecondsPerDay: s.gpuSecondsPerDay ?? null,
        },
      });
    }
  }
  const keys = new Set<string>();
  for (const e of entries) {
    if (keys.has(e.key)) throw new StationConfigError(`the same key is configured twice (station ${e.station.name})`);
    keys.add(e.key);
  }
  if (entries.length === 0 && config.production) {
    throw new StationConfigError('NODE_ENV=production needs station keys: set DARKROOM_API_KEYS or DARKROOM_STATIONS_FILE');
  }
  return new StationRegistry(config, entries);
}
