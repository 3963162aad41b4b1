/**
 * Small value readers shared by the per-kind transforms: integers from XML text, exact decimal
 * ids, well-formed strings, searchable-text joining, JSON payload text.
 */

interface WellFormedString {
  isWellFormed(): boolean;
  toWellFormed(): string;
}

/**
 * Deepest nesting of arrays and objects accepted in JSON embedded in an item (Yunhu buttons and
 * forms, a status notify's `arg`, a finder item's `extinfo`). Real ones are 1–3 levels. The value
 * is written out again with `JSON.stringify`, which recurses per level: past a few thousand
 * levels it overflows the stack, at a depth that depends on the thread (about 1 MB of stack on
 * the main thread, 4 MB in a worker). A fixed cap keeps the result the same everywhere.
 */
export const MAX_EMBEDDED_JSON_DEPTH = 64;

/**
 * Whether arrays and objects in a parsed JSON value nest deeper than `maxDepth` (the value itself
 * is depth 1). Walks without recursion, so any depth is measured.
 */
export function nestsDeeperThan(value: unknown, maxDepth: number): boolean {
  // Most values met here are text: nothing to walk, nothing to allocate.
  if (typeof value !== 'object' || value === null) return false;
  const pending: { value: unknown; depth: number }[] = [{ value, depth: 1 }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (typeof next.value !== 'object' || next.value === null) continue;
    if (next.depth > maxDepth) return true;
    for (const child of Object.values(next.value)) pending.push({ value: child, depth: next.depth + 1 });
  }
  return false;
}

/**
 * The string as a valid Unicode scalar sequence: lone surrogates become U+FFFD.
 *
 * JSON escapes can carry them (`"\ud83d"` left over from a server-side cut in the middle of 😂),
 * and UTF-8 (ClickHouse, Kafka, protobuf) cannot, so they are replaced once, here.
 */
export function usv(text: string): string {
  const s = text as unknown as WellFormedString;
  return s.isWellFormed() ? text : s.toWellFormed();
}

/**
 * The leading integer of an XML text or attribute, `0` when there is none.
 *
 * Examples: `" 57 "` → 57 (`<type> 57 </type>`), `"10>>"` → 10 (`videoPlayDuration` seen as
 * `10&gt;&gt;`), `"2001"` from `<type><![CDATA[2001]]></type>`, `"-1"` → -1, `""` → 0.
 * Values past 2^53 are not sizes or counts; they give 0 rather than a rounded number.
 */
export function leadingInt(text: string): number {
  // All the digits, so a 20-digit value is past 2^53 (0), not its first 16 digits.
  const m = /^\s*([+-]?\d+)/.exec(text);
  if (m === null) return 0;
  const n = Number(m[1]);
  return Number.isSafeInteger(n) ? n : 0;
}

/**
 * A type number as an Int32 column stores it: `value`, or -1 when it does not fit (a modified
 * client can send `<type>4294967296</type>`; ClickHouse would wrap it, so the sink refuses it).
 */
export function int32OrMinusOne(value: number): number {
  return Number.isSafeInteger(value) && value >= -(2 ** 31) && value <= 2 ** 31 - 1 ? value : -1;
}

/**
 * A decimal float from XML text (`x="31.230416"`), `0` when it is not a finite number.
 */
export function decimalNumber(text: string): number {
  const t = text.trim();
  if (t === '') return 0;
  const n = Number(t);
  return Number.isFinite(n) ? n : 0;
}

const UINT64_MAX = '18446744073709551615';

/**
 * An unsigned 64-bit id as exact decimal text, or `''` when the text is not one.
 *
 * Ids inside XML are strings and may exceed 2^63 (`<objectId>14395017722846300161</objectId>`),
 * so they are compared as text, never through a Number.
 */
export function uint64Text(text: string): string {
  const t = text.trim();
  if (!/^\d{1,20}$/.test(t)) return '';
  const s = t.length > 1 ? t.replace(/^0+(?=\d)/, '') : t;
  if (s.length === 20 && s > UINT64_MAX) return '';
  return s;
}

/**
 * A 64-bit integer id as unsigned exact decimal text, or `undefined` when out of range.
 *
 * `AddMsg.newMsgId` is declared int64; a provider that prints it signed would send ids past
 * 2^63 as negatives (`-8446744073709551616`). The stored id is the same 64 bits read unsigned.
 */
export function toUint64Decimal(decimal: string): string | undefined {
  if (decimal.startsWith('-')) {
    const n = BigInt(decimal);
    if (n < -(2n ** 63n)) return undefined;
    return BigInt.asUintN(64, n).toString();
  }
  const s = uint64Text(decimal);
  return s === '' ? undefined : s;
}

/**
 * Joins the non-empty, distinct parts with a newline: the searchable text of a message made of
 * several fields (appmsg title + description). Parts are trimmed.
 */
export function joinText(...parts: readonly string[]): string {
  const seen: string[] = [];
  for (const p of parts) {
    const t = p.trim();
    if (t !== '' && !seen.includes(t)) seen.push(t);
  }
  return seen.join('\n');
}

/** A typed payload as the JSON object text stored in `content` (keys in insertion order). */
export type Payload = Record<string, unknown>;

/** Whether `text` takes more than `bytes` bytes as UTF-8 (at most 3 per UTF-16 unit). */
function utf8LongerThan(text: string, bytes: number): boolean {
  if (text.length * 3 <= bytes) return false;
  return text.length > bytes || Buffer.byteLength(text, 'utf8') > bytes;
}

/**
 * The UTF-8 size of the first of `texts` longer than `max` bytes, or undefined when all fit: the
 * check that keeps a row parsed from a small item within what a Kafka record carries.
 */
export function oversizedBytes(max: number, ...texts: readonly string[]): number | undefined {
  const grown = texts.find((text) => utf8LongerThan(text, max));
  return grown === undefined ? undefined : Buffer.byteLength(grown, 'utf8');
}
