import { randomBytes } from 'node:crypto';

const ALPHABET = '0123456789abcdefghjkmnpqrstvwxyz'; // Crockford base32, lower case

/**
 * `<pipeline>_<24 base32 chars>`: 120 random bits, and the pipeline in the id lets a lookup go
 * straight to its queue with no index to keep in sync.
 */
export function newJobId(pipeline: string): string {
  const bytes = randomBytes(24);
  let s = '';
  for (const b of bytes) s += ALPHABET[b & 31];
  return `${pipeline}_${s}`;
}

export function pipelineOfJobId(id: string): string {
  return id.slice(0, id.lastIndexOf('_'));
}
