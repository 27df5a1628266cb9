import { redisOptions } from '@darkroom/runtime';
import { describe, expect, it } from 'vitest';

describe('redisOptions', () => {
  it('takes host, port, credentials, database and TLS from the URL', () => {
    const o = redisOptions('rediss://user:p%40ss@cache.example:6380/2', 'producer');
    expect(o).toMatchObject({
      host: 'cache.example',
      port: 6380,
      username: 'user',
      password: 'p@ss',
      db: 2,
      tls: { servername: 'cache.example' },
    });
    expect(o.sentinels).toBeUndefined();
  });

  it('asks Sentinels for the master, with the URL giving only its credentials', () => {
    const o = redisOptions(
      {
        url: 'redis://:master-secret@unused:6379',
        sentinels: [{ host: '127.0.0.1', port: 26379 }],
        sentinelName: 'darkroom',
        sentinelPassword: 'sentinel-secret',
      },
      'blocking',
    );
    expect(o).toMatchObject({
      sentinels: [{ host: '127.0.0.1', port: 26379 }],
      name: 'darkroom',
      sentinelPassword: 'sentinel-secret',
      password: 'master-secret',
    });
    expect(o.host).toBeUndefined();
    expect(o.port).toBeUndefined();
  });

  it('fails fast for a producer and waits for a blocking reader', () => {
    expect(redisOptions('redis://127.0.0.1:6379', 'producer')).toMatchObject({ enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    expect(redisOptions('redis://127.0.0.1:6379', 'blocking').maxRetriesPerRequest).toBeNull();
  });

  it('reconnects (to whichever node is master now) when a write meets a demoted master', () => {
    const { reconnectOnError } = redisOptions('redis://127.0.0.1:6379', 'producer');
    expect(reconnectOnError?.(new Error("READONLY You can't write against a read only replica."))).toBe(1);
    expect(reconnectOnError?.(new Error('ERR something else'))).toBe(false);
  });
});
