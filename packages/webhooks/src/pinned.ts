import type { LookupAddress, LookupOptions } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { type LookupFn, vetTarget } from './vetting.ts';

/*
 * Outbound HTTP to a vetted target: the connection goes to the addresses the SSRF guard checked
 * (a custom `lookup` pins them, so a second DNS answer cannot rebind it), while the Host header
 * and TLS servername stay the URL's host, so certificates verify as usual. Webhook delivery
 * (POST) and input images fetched by URL (GET) both go through here.
 */

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void;

/**
 * A `lookup` for `http(s).request` that answers only with the vetted addresses, whatever name is
 * asked. Node calls it instead of DNS for a named host; IP literals connect directly and were
 * vetted as such.
 */
export function pinnedLookup(addresses: readonly string[]) {
  const pinned: LookupAddress[] = addresses.map((address) => ({ address, family: isIP(address.split('%')[0] ?? '') }));
  return (_hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const family = options.family === 4 || options.family === 6 ? options.family : 0;
    const list = family === 0 ? pinned : pinned.filter((a) => a.family === family);
    const first = list[0];
    if (!first) {
      const err: NodeJS.ErrnoException = new Error('no vetted address of the requested family');
      err.code = 'ENOTFOUND';
      callback(err, '', 0);
      return;
    }
    if (options.all) callback(null, list);
    else callback(null, first.address, first.family);
  };
}

/** Request options that connect only to `addresses` (the vetted ones of `url`), on a fresh connection. */
export function pinnedRequestOptions(
  url: URL,
  host: string,
  addresses: readonly string[],
  init: { method: string; headers: Record<string, string>; signal: AbortSignal },
): https.RequestOptions {
  const isHttps = url.protocol === 'https:';
  return {
    method: init.method,
    host,
    port: url.port === '' ? (isHttps ? 443 : 80) : Number(url.port),
    path: `${url.pathname}${url.search}`,
    headers: { ...init.headers, Host: url.host },
    lookup: pinnedLookup(addresses) as unknown as https.RequestOptions['lookup'],
    agent: false, // no pooled socket from an earlier resolution
    signal: init.signal,
    ...(isHttps && isIP(host) === 0 ? { servername: host } : {}),
  };
}

/** Sends a request built from pinnedRequestOptions over http or https, as the URL says. */
export function pinnedRequest(url: URL, options: https.RequestOptions): http.ClientRequest {
  return url.protocol === 'https:' ? https.request(options) : http.request(options);
}

/** Why a vetted GET failed: the guard refused a target (`refused`), or no usable answer came (`unreachable`). */
export class VettedGetError extends Error {
  override name = 'VettedGetError';
  readonly kind: 'refused' | 'unreachable';
  constructor(kind: 'refused' | 'unreachable', message: string) {
    super(message);
    this.kind = kind;
  }
}

export const DEFAULT_MAX_REDIRECTS = 3;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export interface VettedGetOptions {
  allowPrivate: boolean;
  /** Bounds the whole exchange; when it aborts, its reason (an Error) is thrown. */
  signal: AbortSignal;
  /** Redirects followed, each target vetted again; more is `unreachable`. Default 3. */
  maxRedirects?: number;
  headers?: Record<string, string>;
  /** For tests; defaults to DNS. */
  lookup?: LookupFn;
  /** For tests: addresses let through besides public ones (a test's own server), while others stay refused. */
  allowAddress?: (address: string) => boolean;
}

/**
 * GETs a URL through the SSRF guard and resolves with a 2xx response, its body not yet read (the
 * caller reads it, and destroys it when done early). Every redirect's target is vetted like the
 * first. Messages name no address and no redirect target: the caller knows only its own URL.
 */
export async function vettedGet(rawUrl: string, opts: VettedGetOptions): Promise<http.IncomingMessage> {
  const maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS;
  let current = rawUrl;
  for (let hop = 0; ; hop++) {
    const vetted = await vetTarget(current, {
      allowPrivate: opts.allowPrivate,
      allowAddress: opts.allowAddress,
      lookup: opts.lookup,
      signal: opts.signal,
    });
    throwIfAborted(opts.signal);
    if (!vetted.ok) {
      // DNS reasons read "the host name could not be resolved…"; the others are predicates.
      if (vetted.cause === 'dns')
        throw new VettedGetError('unreachable', hop === 0 ? vetted.reason : vetted.reason.replace(/^the /, "a redirect's "));
      const where = hop === 0 ? (vetted.cause === 'url' ? 'the URL' : 'the host') : "a redirect's target";
      throw new VettedGetError('refused', `${where} ${vetted.reason}`);
    }
    const res = await get(vetted.url, vetted.host, vetted.addresses, opts);
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return res;
    res.destroy();
    const location = res.headers.location;
    if (!REDIRECTS.has(status) || !location) throw new VettedGetError('unreachable', `the server answered ${status}`);
    if (hop >= maxRedirects) throw new VettedGetError('unreachable', `more than ${maxRedirects} redirects`);
    try {
      current = new URL(location, vetted.url).href;
    } catch {
      throw new VettedGetError('unreachable', `the server answered ${status} with an unusable Location`);
    }
  }
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw signal.reason instanceof Error ? signal.reason : new VettedGetError('unreachable', 'interrupted');
}

function get(url: URL, host: string, addresses: string[], opts: VettedGetOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    let req: http.ClientRequest;
    try {
      req = pinnedRequest(
        url,
        pinnedRequestOptions(url, host, addresses, { method: 'GET', headers: opts.headers ?? {}, signal: opts.signal }),
      );
    } catch {
      reject(new VettedGetError('unreachable', 'the request could not be built'));
      return;
    }
    req.on('error', (err) => {
      if (opts.signal.aborted) return reject(opts.signal.reason instanceof Error ? opts.signal.reason : err);
      const code = (err as { code?: unknown }).code;
      reject(new VettedGetError('unreachable', `could not reach the server${typeof code === 'string' ? ` (${code})` : ''}`));
    });
    req.on('response', resolve);
    req.end();
  });
}
