import { describe, expect, it } from 'vitest';
import { isRedisUnavailable } from '../src/http/redis-errors.ts';

describe('isRedisUnavailable', () => {
  it.each([
    'Connection is closed.',
    'connect ECONNREFUSED 127.0.0.1:6379',
    'Command timed out',
    "READONLY You can't write against a read only replica.",
    'CLUSTERDOWN The cluster is down',
    'TRYAGAIN Multiple keys request during rehashing of slot',
    'Failed to refresh slots cache.',
    'None of startup nodes is available',
    'All sentinels are unreachable. Retrying from scratch after 1000ms.',
  ])('"%s" is Redis being away (503)', (message) => {
    expect(isRedisUnavailable(new Error(message))).toBe(true);
  });

  it.each(['ERR unknown command', "CROSSSLOT Keys in request don't hash to the same slot", 'WRONGTYPE Operation against a key'])(
    '"%s" is a fault (500)',
    (message) => {
      expect(isRedisUnavailable(new Error(message))).toBe(false);
    },
  );
});
