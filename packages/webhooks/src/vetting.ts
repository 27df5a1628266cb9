import { promises as dnsPromises } from 'node:dns';
import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/*
 * Webhook target vetting, the SSRF guard: a URL may be used only when its host, an IP literal or
 * every address its name resolves to, is public unicast. Checked at submit and again at delivery,
 * which then connects to the address that was checked.
 */

/** Same shape as `dns.promises.lookup(host, { all: true, verbatim: true })`; injectable for tests. */
export type LookupFn = (hostname: string, options: { all: true; verbatim: true }) => Promise<Array<{ address: string; family: number }>>;

export type WebhookTargetCheck = { ok: true; addresses: string[] } | { ok: false; reason: string };

// ---------------------------------------------------------------------------------------------
// Address classification

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR('2000::/3');
const NAT64_WELL_KNOWN = ipaddr.IPv6.parseCIDR('64:ff9b::/96');

function v4FromWords(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([(hi >> 8) & 0xff, hi & 0xff, (lo >> 8) & 0xff, lo & 0xff]);
}

function rangeOf(addr: ipaddr.IPv4 | ipaddr.IPv6): string {
  if (addr.kind() === 'ipv4') return (addr as ipaddr.IPv4).range();
  const v6 = addr as ipaddr.IPv6;
  const p = v6.parts as [number, number, number, number, number, number, number, number];
  const range = v6.range();
  switch (range) {
    // ::ffff:a.b.c.d and ::ffff:0:a.b.c.d (SIIT): judge the embedded IPv4 address.
    case 'ipv4Mapped':
    case 'rfc6145':
      return v4FromWords(p[6], p[7]).range();
    // NAT64: the well-known prefix embeds the IPv4 address in the last 32 bits; the local-use
    // prefix (64:ff9b:1::/48) belongs to a private network and is refused outright.
    case 'rfc6052':
      return v6.match(NAT64_WELL_KNOWN) ? v4FromWords(p[6], p[7]).range() : 'rfc6052';
    // 6to4: 2002:AABB:CCDD::/48 is the IPv4 address AA.BB.CC.DD.
    case '6to4':
      return v4FromWords(p[1], p[2]).range();
    // Teredo: server IPv4 in words 2-3, client IPv4 inverted in words 6-7; both must be public.
    case 'teredo': {
      const server = v4FromWords(p[2], p[3]).range();
      if (server !== 'unicast') return server;
      return v4FromWords(~p[6] & 0xffff, ~p[7] & 0xffff).range();
    }
    case 'unicast':
      // Only 2000::/3 is allocated global unicast; ipaddr.js calls the rest (e.g. the deprecated
      // IPv4-compatible ::a.b.c.d) 'unicast' too.
      return v6.match(GLOBAL_UNICAST_V6) ? 'unicast' : 'reserved';
    default:
      return range;
  }
}

/**
 * The ipaddr.js range name of an address as a webhook target, looking through IPv4-mapped,
 * SIIT, NAT64, 6to4 and Teredo wrappers; 'unicast' is the only public one. Unparseable input
 * gives 'invalid'.
 */
export function webhookAddressRange(address: string): string {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!ipaddr.isValid(bare) || isIP(bare.split('%')[0] ?? '') === 0) return 'invalid';
  try {
    return rangeOf(ipaddr.parse(bare));
  } catch {
    return 'invalid';
  }
}

/** True when the address is public unicast (not loopback, private, link-local, reserved, …). */
export function isPublicAddress(address: string): boolean {
  return webhookAddressRange(address) === 'unicast';
}

// ---------------------------------------------------------------------------------------------
// Target check

const MAX_URL_LENGTH = 2048;
const DEFAULT_LOOKUP_TIMEOUT_MS = 5_000;

const REASONS = {
  notUrl: 'must be an absolute http(s) URL',
  tooLong: `must be at most ${MAX_URL_LENGTH} characters`,
  scheme: 'must use http or https',
  credentials: 'must not carry credentials',
  unresolvable: 'the host name could not be resolved',
  lookupTimeout: 'the host name could not be resolved in time',
  forbidden: 'resolves to a loopback, private, link-local or reserved address, which is not allowed',
} as const;

/**
 * Why a target was refused: the URL itself (`url`), an address it resolves to (`address`), or
 * its name could not be resolved (`dns`).
 */
export type VetFailure = 'url' | 'address' | 'dns';

export type Vetted =
  | { ok: true; url: URL; host: string; addresses: string[] }
  | { ok: false; reason: string; transient: boolean; cause: VetFailure };

const defaultLookup: LookupFn = (hostname, options) => dnsPromises.lookup(hostname, options);

function refuse(reason: string, transient = false, cause: VetFailure = 'url'): Vetted {
  return { ok: false, reason, transient, cause };
}

export async function vetTarget(
  rawUrl: string,
  opts: {
    allowPrivate: boolean;
    /** Addresses let through besides public ones (tests); the rest stay refused. */
    allowAddress?: ((address: string) => boolean) | undefined;
    lookup?: LookupFn | undefined;
    timeoutMs?: number | undefined;
    signal?: AbortSignal | undefined;
  },
): Promise<Vetted> {
  if (typeof rawUrl !== 'string') return refuse(REASONS.notUrl);
  if (rawUrl.length > MAX_URL_LENGTH) return refuse(REASONS.tooLong);
  let url: URL;
  try {
    url = new URL(rawUrl);
  } catch {
    return refuse(REASONS.notUrl);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return refuse(REASONS.scheme);
  if (url.username !== '' || url.password !== '') return refuse(REASONS.credentials);
  // WHATWG URL parsing already normalised odd IPv4 spellings (0x7f.1, 2130706433) to dotted quads.
  const host = url.hostname.startsWith('[') && url.hostname.endsWith(']') ? url.hostname.slice(1, -1) : url.hostname;
  if (host === '') return refuse(REASONS.notUrl);

  let addresses: string[];
  if (isIP(host) !== 0) {
    addresses = [host];
  } else {
    const lookup = opts.lookup ?? defaultLookup;
    const timeoutMs = opts.timeoutMs ?? DEFAULT_LOOKUP_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let onAbort: (() => void) | undefined;
    try {
      const timedOut = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      const aborted = new Promise<'aborted'>((resolve) => {
        onAbort = () => resolve('aborted');
        if (opts.signal?.aborted) onAbort();
        else opts.signal?.addEventListener('abort', onAbort, { once: true });
      });
      const result = await Promise.race([lookup(host, { all: true, verbatim: true }), timedOut, aborted]);
      if (result === 'timeout' || result === 'aborted') return refuse(REASONS.lookupTimeout, true, 'dns');
      addresses = result.map((r) => r.address);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      // EAI_AGAIN / SERVFAIL / timeouts are worth another try; NXDOMAIN and friends are not.
      const transient = code === 'EAI_AGAIN' || code === 'ESERVFAIL' || code === 'ETIMEOUT' || code === 'ECONNREFUSED';
      return refuse(REASONS.unresolvable, transient, 'dns');
    } finally {
      if (timer) clearTimeout(timer);
      if (onAbort) opts.signal?.removeEventListener('abort', onAbort);
    }
    if (addresses.length === 0) return refuse(REASONS.unresolvable, false, 'dns');
  }

  for (const address of addresses) {
    if (isIP(address.split('%')[0] ?? '') === 0) return refuse(REASONS.unresolvable, false, 'dns');
    if (!opts.allowPrivate && !isPublicAddress(address) && !opts.allowAddress?.(address))
      return refuse(REASONS.forbidden, false, 'address');
  }
  return { ok: true, url, host, addresses };
}

/**
 * Whether a webhook URL may be used: an absolute http(s) URL without credentials whose host
 * (an IP literal, or every address its name resolves to) is public unicast, unless
 * `allowPrivate`. `reason` is short text fit for the station (no addresses or internals).
 * `timeoutMs` bounds the name lookup (default 5 s).
 */
export async function checkWebhookTarget(
  url: string,
  opts: { allowPrivate: boolean; lookup?: LookupFn; timeoutMs?: number },
): Promise<WebhookTargetCheck> {
  const vetted = await vetTarget(url, opts);
  return vetted.ok ? { ok: true, addresses: vetted.addresses } : { ok: false, reason: vetted.reason };
}
