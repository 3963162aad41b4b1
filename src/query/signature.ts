/**
 * Request signatures of the query API (DESIGN §6).
 *
 * The signed string is every parameter except `signature`, sorted by name, joined as
 * `k=v&k=v`. Two spellings of the values are accepted, both from the seed
 * (seeds/msg-server-api.md):
 *
 * - raw values, as the seed's JavaScript example joins them:
 *   `ext_corp_id=corp123&keyword=产品 介绍&page=1`
 * - values URL-encoded the way Python's `urlencode` does (`quote_plus`: space → `+`, every byte
 *   outside `A-Za-z0-9_.-~` → `%XX` upper-case), as the seed's Python example signs:
 *   `ext_corp_id=corp123&keyword=%E4%BA%A7%E5%93%81+%E4%BB%8B%E7%BB%8D&page=1`
 *
 * The MAC is HMAC-SHA256 with the tenant's own secret, lower-case hex. `ext_corp_id` is one of
 * the signed parameters, so a signature made for one tenant never opens another (msg-server left
 * it out, W-S2). Comparison is constant-time; a failed check says nothing about why.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Query or body parameters as the client sent them (values decoded, one value per name). */
export type Params = Readonly<Record<string, string>>;

const SAFE_BYTE = /^[A-Za-z0-9_.\-~]$/;

/** Python's `urllib.parse.quote_plus` (what `urlencode` applies to keys and values). */
export function quotePlus(value: string): string {
  let out = '';
  for (const byte of Buffer.from(value, 'utf8')) {
    const ch = String.fromCharCode(byte);
    if (byte < 0x80 && SAFE_BYTE.test(ch)) out += ch;
    else if (byte === 0x20) out += '+';
    else out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function sortedNames(params: Params): string[] {
  // Byte-wise order of the names (the seed's `Object.keys(...).sort()` and Python's `sorted`
  // agree on ASCII names, which every parameter of the API has).
  return Object.keys(params)
    .filter((k) => k !== 'signature')
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The seed's JavaScript canonical string: sorted `k=v` with raw values. */
export function canonicalRaw(params: Params): string {
  return sortedNames(params)
    .map((k) => `${k}=${params[k] ?? ''}`)
    .join('&');
}

/** The seed's Python canonical string: `urlencode(sorted(params.items()))`. */
export function canonicalEncoded(params: Params): string {
  return sortedNames(params)
    .map((k) => `${quotePlus(k)}=${quotePlus(params[k] ?? '')}`)
    .join('&');
}

/** HMAC-SHA256 of `data` with `secret`, lower-case hex. */
export function hmacHex(secret: string, data: string): string {
  return createHmac('sha256', secret).update(data, 'utf8').digest('hex');
}

/** The signature a client computes (raw variant) for `params`. */
export function sign(params: Params, secret: string): string {
  return hmacHex(secret, canonicalRaw(params));
}

const HEX64 = /^[0-9a-fA-F]{64}$/;

function equalMac(expectedHex: string, given: Buffer): boolean {
  return timingSafeEqual(Buffer.from(expectedHex, 'hex'), given);
}

/**
 * True when `params.signature` is the HMAC of either canonical spelling of `params` under
 * `secret`. Both MACs are always computed and compared, so the time taken does not depend on
 * which spelling (if any) matched.
 */
export function verifySignature(params: Params, secret: string): boolean {
  const given = params['signature'] ?? '';
  if (secret === '' || !HEX64.test(given)) return false;
  const mac = Buffer.from(given, 'hex');
  const raw = equalMac(hmacHex(secret, canonicalRaw(params)), mac);
  const encoded = equalMac(hmacHex(secret, canonicalEncoded(params)), mac);
  return raw || encoded;
}

/**
 * `msgpipe sign`: the URL of `target` (`/path?k=v&…`, or a full URL) with `signature` appended.
 * Parameters keep their order; values are signed raw, as the seed's JavaScript example does.
 */
export function signUrl(target: string, secret: string, options: { tenant?: string; timestamp?: number; nonce?: string } = {}): string {
  const url = new URL(target, 'http://placeholder.invalid');
  url.searchParams.delete('signature');
  if (options.tenant !== undefined && !url.searchParams.has('ext_corp_id')) url.searchParams.set('ext_corp_id', options.tenant);
  if (options.timestamp !== undefined) url.searchParams.set('timestamp', String(options.timestamp));
  if (options.nonce !== undefined) url.searchParams.set('nonce', options.nonce);
  const params = Object.create(null) as Record<string, string>;
  for (const [k, v] of url.searchParams) params[k] = v;
  url.searchParams.append('signature', sign(params, secret));
  const query = url.search;
  return target.startsWith('http://') || target.startsWith('https://') ? url.toString() : `${url.pathname}${query}`;
}

/**
 * Single-use nonces of strict mode, remembered per tenant for as long as their timestamp could
 * still be accepted. Bounded: at most `maxPerTenant` live nonces per tenant; beyond that, new
 * nonces are refused. The query app records a nonce only for a request its rate limit let
 * through, and sizes the bound from that limit, so honest traffic never reaches it.
 */
export class NonceCache {
  private readonly seen = new Map<string, Map<string, number>>();
  private readonly ttlMs: number;
  private readonly maxPerTenant: number;

  constructor(ttlMs: number, maxPerTenant = 200_000) {
    this.ttlMs = ttlMs;
    this.maxPerTenant = maxPerTenant;
  }

  /** Whether `nonce` was used and has not expired yet; records nothing. */
  used(tenant: string, nonce: string, now: number): boolean {
    const exp = this.seen.get(tenant)?.get(nonce);
    return exp !== undefined && exp > now;
  }

  /** Gives `nonce` back: its request was refused before it was answered, so it may come again. */
  release(tenant: string, nonce: string): void {
    this.seen.get(tenant)?.delete(nonce);
  }

  /** Records `nonce`; false if it was already used (or the tenant's cache is full). */
  use(tenant: string, nonce: string, now: number): boolean {
    let nonces = this.seen.get(tenant);
    if (nonces === undefined) {
      nonces = new Map();
      this.seen.set(tenant, nonces);
    }
    // Insertion order is expiry order (the TTL is fixed): drop the expired head first.
    for (const [k, exp] of nonces) {
      if (exp > now) break;
      nonces.delete(k);
    }
    if (nonces.has(nonce)) return false;
    if (nonces.size >= this.maxPerTenant) return false;
    nonces.set(nonce, now + this.ttlMs);
    return true;
  }
}
