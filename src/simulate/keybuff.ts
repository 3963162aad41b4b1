/**
 * The simulated keyBuff: an opaque base64 cursor shaped like WeChat's `BypSyncKeyBuff`.
 *
 * Real keyBuffs are the base64 of a protobuf `BypSyncKeyBuff { repeated BypSyncKeyPair
 * syncKeyPairList = 1; bool reset = 2; }` with `BypSyncKeyPair { uint32 synckeyId = 1;
 * uint64 synckeyValue = 2; }`. The GeWe seed's cursor decodes to pairs for key ids 1–9 and 12
 * and then `reset = false`:
 *
 *   CgQIARABCgQIAhAACgQIAxAA…CgQIDBAAEAA=   →   {1:{1:1,2:1}}, {1:{1:2,2:0}}, …, {1:{1:12,2:0}}, 2:0
 *
 * We write the same layout, so a client that (wrongly) decodes, trims or re-encodes cursors sees
 * realistic bytes. The position lives in the values:
 *
 *   key 1  = base1 + generated position (next stream index to send; base1 is a large per-account
 *            number, like the 7452011593340239617 of real cursors)
 *   key 5  = base5 + injected position (how many injected items were sent)
 *   key 7  = epoch (bumped by a keyBuff reset: older cursors restart from the beginning)
 *   key 12 = a 32-bit check over the rest, so a mangled cursor is refused instead of silently
 *            resuming somewhere else
 */

import { Buffer } from 'node:buffer';

import { hash3, mix32 } from './random.ts';

/** Where a cursor points. */
export interface CursorPosition {
  /** The next index of the account's generated stream to send. */
  readonly generated: number;
  /** The number of injected (hostile) items already sent. */
  readonly injected: number;
  /** The account epoch the cursor was issued in. */
  readonly epoch: number;
}

/** The per-account constants that make one account's cursors unlike another's. */
export interface CursorKeys {
  readonly base1: bigint;
  readonly base5: bigint;
  readonly seed: number;
}

const KEY_IDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12] as const;

/** Derives the cursor constants of an account from its seed. */
export function cursorKeys(seed: number): CursorKeys {
  // 62-bit base1: large like real synckeyValues, with headroom for 2^31 positions.
  const hi = BigInt(mix32(seed ^ 0x51ed270b) & 0x3fffffff);
  const lo = BigInt(mix32(seed ^ 0x2545f491));
  return { base1: (hi << 32n) | lo, base5: BigInt(1_000_000 + (mix32(seed ^ 0x68e31da4) % 1_000_000)), seed };
}

function pushVarint(out: number[], value: bigint): void {
  let v = value;
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

function check(keys: CursorKeys, pos: CursorPosition): number {
  return hash3(keys.seed ^ pos.epoch, pos.generated, pos.injected);
}

/** Encodes a position as a keyBuff string. Deterministic: the same position gives the same string. */
export function encodeKeyBuff(keys: CursorKeys, pos: CursorPosition): string {
  const values = new Map<number, bigint>([
    [1, keys.base1 + BigInt(pos.generated)],
    [5, keys.base5 + BigInt(pos.injected)],
    [7, BigInt(pos.epoch)],
    [12, BigInt(check(keys, pos))],
  ]);
  const out: number[] = [];
  for (const id of KEY_IDS) {
    const pair: number[] = [0x08];
    pushVarint(pair, BigInt(id));
    pair.push(0x10);
    pushVarint(pair, values.get(id) ?? 0n);
    out.push(0x0a, pair.length, ...pair);
  }
  out.push(0x10, 0x00);
  return Buffer.from(out).toString('base64');
}

function readVarint(bytes: Uint8Array, at: { i: number }): bigint | undefined {
  let shift = 0n;
  let value = 0n;
  for (let n = 0; n < 10; n++) {
    const b = bytes[at.i++];
    if (b === undefined) return undefined;
    value |= BigInt(b & 0x7f) << shift;
    if ((b & 0x80) === 0) return value;
    shift += 7n;
  }
  return undefined;
}

/**
 * Decodes a keyBuff issued by {@link encodeKeyBuff} with the same keys. Returns undefined for
 * anything else: not base64, not the protobuf layout, another account's cursor, or a cursor whose
 * bytes were changed (the check value no longer matches).
 */
export function decodeKeyBuff(keys: CursorKeys, keyBuff: string): CursorPosition | undefined {
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(keyBuff) || keyBuff.length % 4 !== 0) return undefined;
  const bytes = Buffer.from(keyBuff, 'base64');
  const values = new Map<number, bigint>();
  const at = { i: 0 };
  while (at.i < bytes.length) {
    const tag = bytes[at.i++];
    if (tag === 0x10) {
      // `reset` flag: the last field.
      if (readVarint(bytes, at) === undefined) return undefined;
      continue;
    }
    if (tag !== 0x0a) return undefined;
    const len = bytes[at.i++];
    if (len === undefined) return undefined;
    const end = at.i + len;
    if (bytes[at.i++] !== 0x08) return undefined;
    const id = readVarint(bytes, at);
    if (bytes[at.i++] !== 0x10) return undefined;
    const value = readVarint(bytes, at);
    if (id === undefined || value === undefined || at.i !== end) return undefined;
    values.set(Number(id), value);
  }
  const v1 = values.get(1);
  const v5 = values.get(5);
  const v7 = values.get(7);
  const v12 = values.get(12);
  if (v1 === undefined || v5 === undefined || v7 === undefined || v12 === undefined) return undefined;
  if (v1 < keys.base1 || v5 < keys.base5 || v1 - keys.base1 > 0xffffffffn || v5 - keys.base5 > 0xffffffffn) {
    return undefined;
  }
  const pos: CursorPosition = {
    generated: Number(v1 - keys.base1),
    injected: Number(v5 - keys.base5),
    epoch: Number(v7),
  };
  if (BigInt(check(keys, pos)) !== v12) return undefined;
  return pos;
}
