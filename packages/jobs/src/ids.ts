import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case

/**
 * `<pipeline>_<24 base32 chars>`: 120 random bits, and the pipeline in the id lets a lookup go
 * straight to its queue with no index to keep in sync.
 */
export function newJobId(pipeline: string): string {
  let s = '';
  for (let i = 0; i < 24; i++) s += ALPHABET[nextRandomByte() & 31];
  return `${pipeline}_${s}`;
}

// Random bytes drawn from the CSPRNG 6 KB at a time: one call per 256 ids instead of one per id.
const POOL_SIZE = 24 * 256;
let pool = Buffer.alloc(0);
let poolAt = 0;
function nextRandomByte(): number {
  if (poolAt >= pool.length) {
    pool = randomBytes(POOL_SIZE);
    poolAt = 0;
  }
  return pool[poolAt++]!;
}

export function pipelineOfJobId(id: string): string {
  return id.slice(0, id.lastIndexOf('_'));
}
