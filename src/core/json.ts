/**
 * Lossless JSON for provider payloads, and exact item slicing of provider pages.
 *
 * Providers send 64-bit ids as bare numbers (`"NewMsgId": 3876235366388279544`), which
 * `JSON.parse` rounds to the nearest double. Node 20 has no `JSON.parse` source-text access, and
 * the lossless libraries run at a quarter of `JSON.parse`'s speed (ADR 0002), so we quote every
 * integer literal of 16 or more digits before handing the text to the native parser: such
 * values arrive as decimal strings, everything else is untouched. Readers take ids through
 * {@link toDecimal}, which accepts both a safe number and a decimal string.
 *
 * The scanner works on bytes, not on decoded text: JSON's structural characters are ASCII and
 * no UTF-8 multi-byte sequence contains an ASCII byte, so item boundaries found in the raw body
 * are exact even when a string inside holds invalid UTF-8.
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const MINUS = 0x2d;
const ZERO = 0x30;
const NINE = 0x39;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

/** Integer literals with at least this many digits are parsed as decimal strings. */
const BIG_DIGITS = 16;

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Lenient = new TextDecoder('utf-8');

/** Thrown for text that is not JSON; `offset` is where the scanner gave up. */
export class JsonSyntaxError extends Error {
  readonly offset: number;

  constructor(message: string, offset: number) {
    super(`${message} at offset ${offset}`);
    this.name = 'JsonSyntaxError';
    this.offset = offset;
  }
}

/**
 * Thrown by {@link parseLossless} for a value nested deeper than its `maxDepth`. The text may be
 * valid JSON: `JSON.parse` reads any depth, but writing such a value out again
 * (`JSON.stringify`) recurses once per level and overflows the stack past ~10 000 levels.
 */
export class JsonDepthError extends Error {
  readonly maxDepth: number;

  constructor(maxDepth: number, offset: number) {
    super(`JSON nested deeper than ${maxDepth} levels at offset ${offset}`);
    this.name = 'JsonDepthError';
    this.maxDepth = maxDepth;
  }
}

/** Options of {@link parseLossless}. */
export interface ParseLosslessOptions {
  /** Deepest nesting of arrays and objects accepted (the top-level value is depth 1); default no cap. */
  readonly maxDepth?: number;
}

/** Index just past the string whose opening quote is at `start`. */
function skipStringText(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const close = text.indexOf('"', i);
    if (close < 0) throw new JsonSyntaxError('Unterminated string', start);
    let slashes = 0;
    for (let k = close - 1; text.charCodeAt(k) === BACKSLASH; k--) slashes++;
    if (slashes % 2 === 0) return close + 1;
    i = close + 1;
  }
}

/** @throws {JsonDepthError} when arrays and objects outside strings nest deeper than `maxDepth`. */
function checkDepth(text: string, maxDepth: number): void {
  let depth = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = skipStringText(text, i);
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (++depth > maxDepth) throw new JsonDepthError(maxDepth, i);
    } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
    }
    i++;
  }
}

function isDigit(c: number): boolean {
  return c >= ZERO && c <= NINE;
}

/**
 * Parses JSON text, keeping integers of 16+ digits exact as decimal strings.
 *
 * `{"NewMsgId": 3876235366388279544, "MsgType": 1}` parses to
 * `{ NewMsgId: '3876235366388279544', MsgType: 1 }`.
 *
 * A depth cap is checked on a pass of its own before anything is parsed, so `[[[[…` is refused
 * before `JSON.parse` builds it, and the provider pages (no cap) do not pay for the count: on the
 * same pass it cost 6–8 % of a GeWe page's parse.
 *
 * @throws {SyntaxError | JsonSyntaxError} when the text is not JSON.
 * @throws {JsonDepthError} when arrays and objects nest deeper than `options.maxDepth`.
 */
export function parseLossless(text: string, options: ParseLosslessOptions = {}): unknown {
  if (options.maxDepth !== undefined) checkDepth(text, options.maxDepth);
  let out: string[] | undefined;
  let last = 0;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = skipStringText(text, i);
      continue;
    }
    if (isDigit(c) || c === MINUS) {
      // One whole number token: -?int(.frac)?([eE][+-]?exp)?. Only a bare integer is quoted;
      // 0.30000000000000004 and 1e+1234567890123456 stay numbers.
      const start = i;
      i++;
      while (i < n && isDigit(text.charCodeAt(i))) i++;
      const intEnd = i;
      let integer = true;
      if (text.charCodeAt(i) === 0x2e) {
        integer = false;
        i++;
        while (i < n && isDigit(text.charCodeAt(i))) i++;
      }
      const e = text.charCodeAt(i);
      if (e === 0x65 || e === 0x45) {
        integer = false;
        i++;
        const sign = text.charCodeAt(i);
        if (sign === 0x2b || sign === MINUS) i++;
        while (i < n && isDigit(text.charCodeAt(i))) i++;
      }
      const digits = intEnd - start - (c === MINUS ? 1 : 0);
      // A leading zero is not JSON (`012`): left bare, JSON.parse refuses it as it would a short one.
      const leadingZero = text.charCodeAt(c === MINUS ? start + 1 : start) === 0x30;
      if (integer && digits >= BIG_DIGITS && !leadingZero) {
        out ??= [];
        out.push(text.slice(last, start), '"', text.slice(start, i), '"');
        last = i;
      }
      continue;
    }
    i++;
  }
  if (out === undefined) return JSON.parse(text);
  out.push(text.slice(last));
  return JSON.parse(out.join(''));
}

/**
 * The exact decimal text of an integer id that {@link parseLossless} produced: a safe integer
 * number, or a string of digits (with an optional minus). Anything else is `undefined`.
 */
export function toDecimal(value: unknown): string | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) ? String(value) : undefined;
  if (typeof value === 'string' && /^-?\d{1,20}$/.test(value)) return value;
  return undefined;
}

/** Decodes strict UTF-8; `undefined` when the bytes are not valid UTF-8. */
export function decodeUtf8(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

/** Decodes UTF-8, replacing invalid sequences with U+FFFD. */
export function decodeUtf8Lenient(bytes: Uint8Array): string {
  return utf8Lenient.decode(bytes);
}

// ---- byte-level scanning ------------------------------------------------------------------

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(buf: Uint8Array, i: number): number {
  while (i < buf.length && isSpace(buf[i] ?? 0)) i++;
  return i;
}

function skipStringBytes(buf: Uint8Array, start: number): number {
  let i = start + 1;
  for (;;) {
    const close = buf.indexOf(QUOTE, i);
    if (close < 0) throw new JsonSyntaxError('Unterminated string', start);
    let slashes = 0;
    for (let k = close - 1; buf[k] === BACKSLASH; k--) slashes++;
    if (slashes % 2 === 0) return close + 1;
    i = close + 1;
  }
}

/** Index just past the JSON value that starts at `start` (which must not be white space). */
function skipValue(buf: Uint8Array, start: number): number {
  const first = buf[start];
  if (first === undefined) throw new JsonSyntaxError('Unexpected end', start);
  if (first === QUOTE) return skipStringBytes(buf, start);
  if (first !== OPEN_BRACE && first !== OPEN_BRACKET) {
    // number, true, false, null: up to the next delimiter.
    let i = start;
    while (i < buf.length) {
      const c = buf[i] ?? 0;
      if (c === COMMA || c === CLOSE_BRACE || c === CLOSE_BRACKET || isSpace(c)) break;
      i++;
    }
    if (i === start) throw new JsonSyntaxError('Expected a value', start);
    return i;
  }
  let depth = 0;
  let i = start;
  while (i < buf.length) {
    const c = buf[i] ?? 0;
    if (c === QUOTE) {
      i = skipStringBytes(buf, i);
      continue;
    }
    if (c === OPEN_BRACE || c === OPEN_BRACKET) depth++;
    else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
      depth--;
      if (depth === 0) return i + 1;
    }
    i++;
  }
  throw new JsonSyntaxError('Unterminated container', start);
}

/** [start, end) of one JSON value in a byte buffer. */
export interface Span {
  readonly start: number;
  readonly end: number;
}

/**
 * Where the value of the member `key` starts, in the object whose `{` is at `objStart`; undefined
 * when the object has no such member. Only the members before it are scanned.
 */
function findMember(buf: Uint8Array, objStart: number, key: string): number | undefined {
  if (buf[objStart] !== OPEN_BRACE) return undefined;
  const keyBytes = Buffer.from(JSON.stringify(key));
  let i = skipSpace(buf, objStart + 1);
  if (buf[i] === CLOSE_BRACE) return undefined;
  for (;;) {
    if (buf[i] !== QUOTE) throw new JsonSyntaxError('Expected a member name', i);
    const keyEnd = skipStringBytes(buf, i);
    const matches = keyEnd - i === keyBytes.length && Buffer.compare(keyBytes, buf.subarray(i, keyEnd)) === 0;
    i = skipSpace(buf, keyEnd);
    if (buf[i] !== COLON) throw new JsonSyntaxError('Expected a colon', i);
    const valueStart = skipSpace(buf, i + 1);
    if (matches) return valueStart;
    i = skipSpace(buf, skipValue(buf, valueStart));
    if (buf[i] === CLOSE_BRACE) return undefined;
    if (buf[i] !== COMMA) throw new JsonSyntaxError('Expected a comma', i);
    i = skipSpace(buf, i + 1);
  }
}

/**
 * Where the value found at `path` in a JSON document starts, or `undefined` when a member on the
 * way is absent or not an object. The value itself is not scanned, so finding a page's item list
 * and then splitting it reads the page once.
 *
 * @throws {JsonSyntaxError} when the bytes on the way are not JSON.
 */
export function valueStart(buf: Uint8Array, path: readonly string[]): number | undefined {
  // A UTF-8 byte order mark may lead the document (RFC 8259 §8.1 lets parsers ignore it, and
  // TextDecoder drops it).
  const bom = buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  let at = skipSpace(buf, bom);
  for (const key of path) {
    const member = findMember(buf, at, key);
    if (member === undefined) return undefined;
    at = member;
  }
  return at;
}

const NULL_BYTES = Buffer.from('null');

/** True when the value starting at `at` is the literal `null`. */
export function isNullAt(buf: Uint8Array, at: number): boolean {
  if (Buffer.compare(NULL_BYTES, buf.subarray(at, at + NULL_BYTES.length)) !== 0) return false;
  const next = buf[at + NULL_BYTES.length];
  return next === undefined || next === COMMA || next === CLOSE_BRACE || next === CLOSE_BRACKET || isSpace(next);
}

/** An array's elements as exact byte spans, and the index just past its `]`. */
export interface ArrayScan {
  readonly items: Span[];
  readonly end: number;
}

/**
 * The exact byte spans of the elements of the array whose `[` is at `at`, and where the array
 * ends; `undefined` when the value there is not an array (`null`, say).
 *
 * @throws {JsonSyntaxError} when the array is not JSON (truncated, say).
 */
export function scanArray(buf: Uint8Array, at: number): ArrayScan | undefined {
  if (buf[at] !== OPEN_BRACKET) return undefined;
  const items: Span[] = [];
  let i = skipSpace(buf, at + 1);
  if (buf[i] === CLOSE_BRACKET) return { items, end: i + 1 };
  for (;;) {
    const end = skipValue(buf, i);
    items.push({ start: i, end });
    i = skipSpace(buf, end);
    if (buf[i] === CLOSE_BRACKET) return { items, end: i + 1 };
    if (buf[i] !== COMMA) throw new JsonSyntaxError('Expected a comma', i);
    i = skipSpace(buf, i + 1);
  }
}

/**
 * The exact byte spans of the elements of the array whose `[` is at `at`, or `undefined` when
 * the value there is not an array (`null`, say).
 *
 * @throws {JsonSyntaxError} when the array is not JSON (truncated, say).
 */
export function arraySpans(buf: Uint8Array, at: number): Span[] | undefined {
  return scanArray(buf, at)?.items;
}

/**
 * The exact byte spans of the elements of the array found at `path` in a JSON document.
 *
 * `itemSpans(body, ['data', 'list'])` on `{"ret":200,"data":{"list":[{…},{…}],"keyBuff":"…"}}`
 * gives one span per message item. Returns `undefined` when the path is absent or `null`, and
 * throws {@link JsonSyntaxError} when the bytes on the way are not JSON.
 */
export function itemSpans(buf: Uint8Array, path: readonly string[]): Span[] | undefined {
  const start = valueStart(buf, path);
  return start === undefined ? undefined : arraySpans(buf, start);
}
