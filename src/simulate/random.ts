/**
 * Deterministic, index-addressable randomness for the simulators.
 *
 * A message stream must be reproducible (same seed → same bytes) and random-access (message
 * 700 000 can be built without building the 699 999 before it, so a benchmark can pull a million
 * messages and a restarted simulator can resume from any keyBuff). So every message draws from
 * its own tiny generator seeded by `hash(accountSeed, index)`, never from one long sequence.
 *
 * Everything here is 32-bit integer arithmetic (`Math.imul`): no BigInt on the hot path, and
 * 64-bit identifiers are composed as decimal strings.
 */

const HEX_PAIRS: readonly string[] = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, '0'));

/** The murmur3 / splitmix-style finaliser: a good avalanche for one 32-bit word. */
export function mix32(x: number): number {
  let h = x | 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d);
  h ^= h >>> 15;
  h = Math.imul(h, 0x846ca68b);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A 32-bit hash of (seed, index, salt): the seed of one message's private generator. */
export function hash3(seed: number, index: number, salt: number): number {
  return mix32(seed ^ mix32(Math.imul(index, 0x9e3779b1) ^ mix32(salt + 0x632be5ab)));
}

/** FNV-1a of a string, for turning an account id or a string seed into a 32-bit seed. */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

/**
 * A small resettable generator (mulberry32). One instance is reused for every message of a
 * stream: `reset(seed)` then draw, so building a message allocates no generator.
 */
export class Rng {
  private state = 0;

  constructor(seed = 0) {
    this.state = seed | 0;
  }

  reset(seed: number): this {
    this.state = seed | 0;
    return this;
  }

  /** A uniform 32-bit unsigned integer. */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform float in [0, 1). */
  float(): number {
    return this.u32() / 4294967296;
  }

  /** A uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** A uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + Math.floor(this.float() * (hi - lo + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  /** One element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new RangeError('pick() from an empty array');
    return item;
  }

  /** `n` lowercase hex digits. */
  hex(n: number): string {
    // Byte-to-pair table: hex ids and CDN urls are the bulk of generated media XML.
    let out = '';
    while (out.length < n) {
      const v = this.u32();
      out += `${HEX_PAIRS[v & 0xff] ?? ''}${HEX_PAIRS[(v >>> 8) & 0xff] ?? ''}${HEX_PAIRS[(v >>> 16) & 0xff] ?? ''}${HEX_PAIRS[v >>> 24] ?? ''}`;
    }
    return out.length === n ? out : out.slice(0, n);
  }

  /** `n` decimal digits (leading zeros allowed). */
  digits(n: number): string {
    let out = '';
    while (out.length < n) out += (this.u32() % 1_000_000_000).toString().padStart(9, '0');
    return out.slice(0, n);
  }

  /**
   * A signed int64 message id as an exact decimal string, 18 or 19 digits, at most
   * 9223372036854775807. Composed from a high part ≤ 9223372035 and nine low digits, so no
   * BigInt is needed and the value never passes int64 max.
   */
  int64Id(): string {
    // High part in [100_000_000, 9_223_372_035]: 18–19 digits overall, like real NewMsgIds.
    const high = 100_000_000 + Math.floor(this.float() * 9_123_372_036);
    return `${high}${this.digits(9)}`;
  }

  /**
   * A uint64 finder objectId as a decimal string. About half are above 2^63 (`14…`, 20 digits,
   * as in real feed shares), which overflows signed BIGINT and Java long.
   */
  uint64ObjectId(): string {
    return this.chance(0.5) ? `14${this.digits(18)}` : `${this.range(1, 9)}${this.digits(18)}`;
  }
}
