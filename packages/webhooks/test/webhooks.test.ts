import { createHmac } from 'node:crypto';
import {
  checkWebhookTarget,
  isPublicAddress,
  type LookupFn,
  signWebhook,
  verifyWebhookSignature,
  WEBHOOK_QUEUE,
  webhookAddressRange,
  webhookJobId,
  webhookJobOptions,
} from '@darkroom/webhooks';
import { describe, expect, it } from 'vitest';

const FORBIDDEN = 'resolves to a loopback, private, link-local or reserved address, which is not allowed';

/** A lookup that answers from a table and records what it was asked. */
function tableLookup(table: Record<string, string[]>): LookupFn & { calls: Array<{ host: string; options: unknown }> } {
  const calls: Array<{ host: string; options: unknown }> = [];
  const fn = async (host: string, options: { all: true; verbatim: true }) => {
    calls.push({ host, options });
    const addresses = table[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(fn, { calls });
}

const noLookup: LookupFn = async () => {
  throw new Error('lookup must not be called for an IP literal');
};

describe('address classification', () => {
  it.each([
    // IPv4
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'carrierGradeNat'],
    ['100.127.255.254', 'carrierGradeNat'],
    ['169.254.169.254', 'linkLocal'],
    ['169.254.1.1', 'linkLocal'],
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['255.255.255.255', 'broadcast'],
    ['240.0.0.1', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    // IPv6
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'linkLocal'],
    ['fe80::1%eth0', 'linkLocal'],
    ['fc00::1', 'uniqueLocal'],
    ['fd12:3456::1', 'uniqueLocal'],
    ['ff02::1', 'multicast'],
    ['2001:db8::1', 'reserved'],
    ['fec0::1', 'deprecatedSiteLocal'],
    ['::7f00:1', 'reserved'], // deprecated IPv4-compatible ::127.0.0.1
    // IPv6 wrappers around IPv4: judged by the IPv4 inside
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:169.254.169.254', 'linkLocal'],
    ['::ffff:0:7f00:1', 'loopback'], // SIIT
    ['64:ff9b::a00:1', 'private'], // NAT64 of 10.0.0.1
    ['64:ff9b::7f00:1', 'loopback'], // NAT64 of 127.0.0.1
    ['64:ff9b:1::1', 'rfc6052'], // local-use NAT64 prefix
    ['2002:c0a8:101::1', 'private'], // 6to4 of 192.168.1.1
    ['2002:7f00:1::', 'loopback'], // 6to4 of 127.0.0.1
    ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'reserved'], // Teredo, client 192.0.2.45
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'loopback'], // Teredo, client 127.0.0.1
    ['not-an-ip', 'invalid'],
    ['0x7f.1', 'invalid'],
    ['', 'invalid'],
  ])('%s is refused (%s)', (address, range) => {
    expect(webhookAddressRange(address)).toBe(range);
    expect(isPublicAddress(address)).toBe(false);
  });

  it.each([
    '93.184.216.34',
    '8.8.8.8',
    '1.1.1.1',
    '172.32.0.1',
    '100.128.0.1',
    '169.255.0.1',
    '2606:4700::1111',
    '2001:4860:4860::8888',
    '[2606:4700::1111]',
    '::ffff:93.184.216.34',
    '64:ff9b::5db8:d822', // NAT64 of 93.184.216.34
    '2002:5db8:d822::1', // 6to4 of 93.184.216.34
    '2001:0:4136:e378:8000:63bf:a247:27dd', // Teredo, server 65.54.227.120, client 93.184.216.34
  ])('%s is public', (address) => {
    expect(webhookAddressRange(address)).toBe('unicast');
    expect(isPublicAddress(address)).toBe(true);
  });
});

describe('checkWebhookTarget', () => {
  it.each([
    ['not a url', 'must be an absolute http(s) URL'],
    ['/hooks/relative', 'must be an absolute http(s) URL'],
    ['ftp://example.com/hook', 'must use http or https'],
    ['file:///etc/passwd', 'must use http or https'],
    ['javascript:alert(1)', 'must use http or https'],
    ['https://user:pw@example.com/hook', 'must not carry credentials'],
    ['https://user@example.com/hook', 'must not carry credentials'],
    [`https://example.com/${'a'.repeat(2048)}`, 'must be at most 2048 characters'],
  ])('refuses %s', async (url, reason) => {
    expect(await checkWebhookTarget(url, { allowPrivate: true, lookup: noLookup })).toEqual({ ok: false, reason });
  });

  it.each([
    'http://127.0.0.1/hook',
    'http://10.1.2.3:8080/hook',
    'http://172.20.0.5/hook',
    'http://192.168.0.10/hook',
    'http://100.64.1.1/hook',
    'http://169.254.169.254/latest/meta-data/',
    'http://0.0.0.0:8080/',
    'http://224.0.0.1/',
    'http://[::1]:8080/hook',
    'http://[::ffff:127.0.0.1]/hook',
    'http://[fe80::1]/hook',
    'http://[fc00::1]/hook',
    'http://0x7f.1/hook', // WHATWG URL turns these odd spellings into 127.0.0.1
    'http://2130706433/hook',
    'http://0177.0.0.1/hook',
  ])('refuses the IP literal in %s without a lookup', async (url) => {
    expect(await checkWebhookTarget(url, { allowPrivate: false, lookup: noLookup })).toEqual({ ok: false, reason: FORBIDDEN });
  });

  it('accepts public IP literals, v4 and v6', async () => {
    expect(await checkWebhookTarget('https://93.184.216.34/hook', { allowPrivate: false, lookup: noLookup })).toEqual({
      ok: true,
      addresses: ['93.184.216.34'],
    });
    expect(await checkWebhookTarget('https://[2606:4700::1111]:8443/hook', { allowPrivate: false, lookup: noLookup })).toEqual({
      ok: true,
      addresses: ['2606:4700::1111'],
    });
  });

  it('accepts private IP literals when allowed', async () => {
    expect(await checkWebhookTarget('http://127.0.0.1:3000/hook', { allowPrivate: true, lookup: noLookup })).toEqual({
      ok: true,
      addresses: ['127.0.0.1'],
    });
  });

  it('resolves names with all: true, verbatim: true and returns every address', async () => {
    const lookup = tableLookup({ 'hooks.example.com': ['93.184.216.34', '2606:4700::1111'] });
    expect(await checkWebhookTarget('https://hooks.example.com/x?y=1', { allowPrivate: false, lookup })).toEqual({
      ok: true,
      addresses: ['93.184.216.34', '2606:4700::1111'],
    });
    expect(lookup.calls).toEqual([{ host: 'hooks.example.com', options: { all: true, verbatim: true } }]);
  });

  it('refuses a name when any one of its addresses is private, without naming it', async () => {
    for (const bad of ['10.0.0.7', '169.254.169.254', '::ffff:127.0.0.1', 'fd00::5']) {
      const lookup = tableLookup({ 'mixed.example.com': ['93.184.216.34', bad] });
      const result = await checkWebhookTarget('https://mixed.example.com/hook', { allowPrivate: false, lookup });
      expect(result).toEqual({ ok: false, reason: FORBIDDEN });
      if (!result.ok) expect(result.reason).not.toContain(bad);
    }
  });

  it('accepts the mixed name when private addresses are allowed', async () => {
    const lookup = tableLookup({ 'mixed.example.com': ['93.184.216.34', '10.0.0.7'] });
    expect(await checkWebhookTarget('https://mixed.example.com/hook', { allowPrivate: true, lookup })).toEqual({
      ok: true,
      addresses: ['93.184.216.34', '10.0.0.7'],
    });
  });

  it('refuses localhost (real resolver) unless private addresses are allowed', async () => {
    expect(await checkWebhookTarget('http://localhost:9999/hook', { allowPrivate: false })).toEqual({ ok: false, reason: FORBIDDEN });
    const allowed = await checkWebhookTarget('http://localhost:9999/hook', { allowPrivate: true });
    expect(allowed.ok).toBe(true);
    if (allowed.ok) {
      expect(allowed.addresses.length).toBeGreaterThan(0);
      for (const a of allowed.addresses) expect(['loopback']).toContain(webhookAddressRange(a));
    }
  });

  it('refuses an unresolvable name with a clear reason', async () => {
    const lookup = tableLookup({});
    expect(await checkWebhookTarget('https://nowhere.invalid/hook', { allowPrivate: false, lookup })).toEqual({
      ok: false,
      reason: 'the host name could not be resolved',
    });
    const empty = tableLookup({ 'empty.example.com': [] });
    expect(await checkWebhookTarget('https://empty.example.com/hook', { allowPrivate: true, lookup: empty })).toEqual({
      ok: false,
      reason: 'the host name could not be resolved',
    });
  });

  it('gives up on a lookup that never answers', async () => {
    const hang: LookupFn = () => new Promise(() => {});
    expect(await checkWebhookTarget('https://slow.example.com/hook', { allowPrivate: false, lookup: hang, timeoutMs: 50 })).toEqual({
      ok: false,
      reason: 'the host name could not be resolved in time',
    });
  });

  it('refuses a lookup answer that is not an IP address', async () => {
    const lookup = tableLookup({ 'weird.example.com': ['not-an-address'] });
    expect((await checkWebhookTarget('https://weird.example.com/', { allowPrivate: true, lookup })).ok).toBe(false);
  });
});

describe('signWebhook / verifyWebhookSignature', () => {
  const secret = 'whsec_0123456789abcdef';
  const body = '{"id":"edit_abc","status":"completed"}';

  it('signs t.body with HMAC-SHA256 in hex', () => {
    const expected = createHmac('sha256', secret).update(`1700000000.${body}`).digest('hex');
    expect(signWebhook(secret, body, 1700000000)).toBe(`t=1700000000,v1=${expected}`);
  });

  it('uses the current unix time by default', () => {
    const before = Math.floor(Date.now() / 1000);
    const header = signWebhook(secret, body);
    const t = Number(/^t=(\d+),v1=[0-9a-f]{64}$/.exec(header)?.[1]);
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(before + 5);
    expect(verifyWebhookSignature(secret, header, body)).toBe(true);
  });

  it('round-trips and rejects tampering', () => {
    const header = signWebhook(secret, body, 1700000000);
    const now = 1700000000;
    expect(verifyWebhookSignature(secret, header, body, { now })).toBe(true);
    expect(verifyWebhookSignature(secret, header, `${body} `, { now })).toBe(false);
    expect(verifyWebhookSignature('another-secret-value', header, body, { now })).toBe(false);
    expect(verifyWebhookSignature(secret, header.replace('t=1700000000', 't=1700000001'), body, { now })).toBe(false);
    // The v1 value upper-cased is the same signature.
    expect(
      verifyWebhookSignature(
        secret,
        header.replace(/v1=(\w+)/, (_m, h: string) => `v1=${h.toUpperCase()}`),
        body,
        { now },
      ),
    ).toBe(true);
  });

  it('enforces the tolerance in both directions (default 300 s)', () => {
    const t = 1700000000;
    const header = signWebhook(secret, body, t);
    expect(verifyWebhookSignature(secret, header, body, { now: t + 300 })).toBe(true);
    expect(verifyWebhookSignature(secret, header, body, { now: t + 301 })).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, { now: t - 301 })).toBe(false);
    expect(verifyWebhookSignature(secret, header, body, { now: t + 1000, toleranceSeconds: 1000 })).toBe(true);
    expect(verifyWebhookSignature(secret, header, body, { now: t + 61, toleranceSeconds: 60 })).toBe(false);
  });

  it('accepts any one matching v1 among several', () => {
    const t = 1700000000;
    const good = signWebhook(secret, body, t).split(',v1=')[1];
    const header = `t=${t},v1=${'0'.repeat(64)},v1=${good}`;
    expect(verifyWebhookSignature(secret, header, body, { now: t })).toBe(true);
  });

  it.each([
    [undefined],
    [''],
    ['garbage'],
    ['t=1700000000'],
    [`v1=${'a'.repeat(64)}`],
    [`t=abc,v1=${'a'.repeat(64)}`],
    [`t=1700000000,v1=${'a'.repeat(63)}`],
    [`t=1700000000,v1=${'z'.repeat(64)}`],
    [`t=1700000000,t=1700000000,v1=${'a'.repeat(64)}`],
  ])('rejects malformed header %j', (header) => {
    expect(verifyWebhookSignature(secret, header, body, { now: 1700000000 })).toBe(false);
  });
});

describe('webhook queue options', () => {
  it('names the dedicated queue and the job id', () => {
    expect(WEBHOOK_QUEUE).toBe('webhooks');
    expect(webhookJobId('edit_abc')).toBe('wh_edit_abc');
  });

  it('defaults to 6 attempts with exponential backoff over about 15 minutes', () => {
    const o = webhookJobOptions();
    expect(o.attempts).toBe(6);
    expect(o.backoff).toEqual({ type: 'exponential', delay: 30_000 });
    // BullMQ exponential: delay * 2^(attemptsMade - 1) before retry n.
    const waits = Array.from({ length: 5 }, (_v, i) => 30_000 * 2 ** i);
    expect(waits).toEqual([30_000, 60_000, 120_000, 240_000, 480_000]);
    const totalMinutes = waits.reduce((a, b) => a + b, 0) / 60_000;
    expect(totalMinutes).toBeGreaterThan(14);
    expect(totalMinutes).toBeLessThan(17);
    expect(o.removeOnComplete).toEqual({ age: 86_400 });
    expect(o.removeOnFail).toEqual({ age: 86_400 });
  });

  it('takes the configured attempts, backoff and retention', () => {
    expect(webhookJobOptions({ attempts: 3, backoffMs: 1000, retentionSeconds: 60 })).toEqual({
      attempts: 3,
      backoff: { type: 'exponential', delay: 1000 },
      removeOnComplete: { age: 60 },
      removeOnFail: { age: 60 },
    });
  });
});
