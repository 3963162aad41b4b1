/**
 * Faster encoding of produced records, swapped into kafkajs 2.2.4 (docs/adr/0015).
 *
 * kafkajs builds every record through its general `Encoder`: a zero-filled 512-byte buffer per
 * record and per header, a fresh `Buffer` per varint, and `Long` arithmetic for the timestamp
 * delta. A raw record (about 1 KB, seven headers) took 13–18 µs to encode; that was the largest
 * single cost of the ingest process. Its CRC-32C runs one table lookup per byte.
 *
 * {@link installRecordEncoding} replaces the two kafkajs modules that do this, before kafkajs
 * first loads them (it loads them lazily, with the first produce request):
 * - `protocol/recordBatch/record/v0`: {@link encodeRecord} computes the record's size first and
 *   writes it into one buffer. The bytes are identical to kafkajs's (property-tested against it).
 *   Anything outside what it handles (a `Long` or fractional timestamp delta, a key of another
 *   type) goes to kafkajs's own encoder, so kafkajs's behaviour (and its errors) stay.
 * - `protocol/recordBatch/crc32C`: the `crc-32` package's CRC-32C (16 bytes per step).
 *
 * Only for kafkajs 2.2.4, whose internals are frozen (the project has published nothing since);
 * with any other version, or when kafkajs has already bound the modules, nothing is replaced.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The kafkajs version whose internal module layout this file knows. */
export const KAFKAJS_VERSION = '2.2.4';

const RECORD_MODULE = 'kafkajs/src/protocol/recordBatch/record/v0/index.js';
const CRC_MODULE = 'kafkajs/src/protocol/recordBatch/crc32C/index.js';
/** The modules that bind the two above when they load. */
const BINDING_MODULES = ['kafkajs/src/protocol/requests/produce/v3/request.js', 'kafkajs/src/protocol/recordBatch/v0/index.js'];

/** A record as kafkajs's produce request hands it to the record encoder. */
export interface RecordInput {
  readonly offsetDelta?: unknown;
  readonly timestampDelta?: unknown;
  readonly key?: unknown;
  readonly value?: unknown;
  readonly headers?: unknown;
}

/** What kafkajs's record batch needs of an encoded record (the shape of its `Encoder`). */
export interface EncodedRecord {
  readonly buf: Buffer;
  readonly buffer: Buffer;
}

export type RecordEncoder = (record: RecordInput) => EncodedRecord;

interface Crc32c {
  buf(data: Uint8Array, seed?: number): number;
}

const CRC32C = require('crc-32/crc32c.js') as Crc32c;

/** CRC-32C (Castagnoli) of `buffer`, as an unsigned 32-bit integer: what kafkajs's module returns. */
export function crc32c(buffer: Uint8Array): number {
  return CRC32C.buf(buffer) >>> 0;
}

/** Bytes of a zigzag varint of a 32-bit integer (Kafka's `varint`). */
function sizeOfVarInt(value: number): number {
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  let bytes = 1;
  while (zigzag >= 0x80) {
    bytes++;
    zigzag >>>= 7;
  }
  return bytes;
}

function writeVarInt(buf: Buffer, offset: number, value: number): number {
  let zigzag = ((value << 1) ^ (value >> 31)) >>> 0;
  while (zigzag >= 0x80) {
    buf[offset++] = (zigzag & 0x7f) | 0x80;
    zigzag >>>= 7;
  }
  buf[offset++] = zigzag;
  return offset;
}

/** Zigzag of a 64-bit integer known to lie within ±2^52, exact as a double. */
function zigzag64(value: number): number {
  return value >= 0 ? value * 2 : -value * 2 - 1;
}

function sizeOfUVarLong(value: number): number {
  let bytes = 1;
  while (value >= 0x80) {
    bytes++;
    value = Math.floor(value / 0x80);
  }
  return bytes;
}

function writeUVarLong(buf: Buffer, offset: number, value: number): number {
  while (value >= 0x80) {
    buf[offset++] = (value % 0x80) | 0x80;
    value = Math.floor(value / 0x80);
  }
  buf[offset++] = value;
  return offset;
}

/** Key, value or header value: bytes, UTF-8 text, or null. */
type Field = Buffer | string | null;

/** A header value: kafkajs takes bytes or text (it fails on null while sizing the record). */
function isHeaderValue(value: unknown): value is Buffer | string {
  return typeof value === 'string' || Buffer.isBuffer(value);
}

/** A key or value: a header value, or null. */
function isField(value: unknown): value is Field {
  return value === null || isHeaderValue(value);
}

function byteLength(value: Buffer | string): number {
  return typeof value === 'string' ? Buffer.byteLength(value, 'utf8') : value.length;
}

/** Bytes of a length-prefixed field; null is the length -1 alone. */
function sizeOfField(value: Field): number {
  if (value === null) return 1;
  const length = byteLength(value);
  return sizeOfVarInt(length) + length;
}

function writeField(buf: Buffer, offset: number, value: Field): number {
  if (value === null) return writeVarInt(buf, offset, -1);
  if (typeof value === 'string') {
    const length = Buffer.byteLength(value, 'utf8');
    offset = writeVarInt(buf, offset, length);
    return offset + buf.write(value, offset, length, 'utf8');
  }
  offset = writeVarInt(buf, offset, value.length);
  return offset + value.copy(buf, offset);
}

const MAX_INT32 = 0x7fffffff;
/** Timestamp deltas within ±2^52 keep their zigzag exact in a double. */
const MAX_DELTA = 2 ** 52;

/**
 * The headers as kafkajs lists them (an array value gives one header per element), or undefined
 * when one is of a kind only kafkajs's own encoder handles (or rejects).
 */
function headerList(headers: unknown): [string, Field][] | undefined {
  if (headers === undefined) return [];
  if (typeof headers !== 'object' || headers === null) return undefined;
  const list: [string, Field][] = [];
  for (const [key, value] of Object.entries(headers as Record<string, unknown>)) {
    if (Array.isArray(value)) {
      for (const item of value as unknown[]) {
        if (!isHeaderValue(item)) return undefined;
        list.push([key, item]);
      }
    } else {
      if (!isHeaderValue(value)) return undefined;
      list.push([key, value]);
    }
  }
  return list;
}

/**
 * A record encoder producing kafkajs's bytes (Kafka record format v2: length, attributes,
 * timestamp delta, offset delta, key, value, headers) in one buffer. Inputs it does not handle
 * go to `fallback`, kafkajs's own encoder.
 */
export function recordEncoder(fallback: RecordEncoder): RecordEncoder {
  return (record) => {
    const { offsetDelta = 0, timestampDelta = 0, key, value, headers } = record;
    const list = headerList(headers);
    if (
      list === undefined ||
      typeof offsetDelta !== 'number' ||
      !Number.isInteger(offsetDelta) ||
      Math.abs(offsetDelta) > MAX_INT32 ||
      typeof timestampDelta !== 'number' ||
      !Number.isInteger(timestampDelta) ||
      Math.abs(timestampDelta) > MAX_DELTA ||
      !(key === undefined || isField(key)) ||
      !(value === undefined || isField(value))
    ) {
      return fallback(record);
    }
    const keyField = key ?? null;
    const valueField = value ?? null;
    const timestamp = zigzag64(timestampDelta);
    let body = 1 + sizeOfUVarLong(timestamp) + sizeOfVarInt(offsetDelta) + sizeOfField(keyField) + sizeOfField(valueField);
    body += sizeOfVarInt(list.length);
    for (const [name, field] of list) body += sizeOfField(name) + sizeOfField(field);
    const buf = Buffer.allocUnsafe(sizeOfVarInt(body) + body);
    let offset = writeVarInt(buf, 0, body);
    buf[offset++] = 0; // attributes: none are used on records
    offset = writeUVarLong(buf, offset, timestamp);
    offset = writeVarInt(buf, offset, offsetDelta);
    offset = writeField(buf, offset, keyField);
    offset = writeField(buf, offset, valueField);
    offset = writeVarInt(buf, offset, list.length);
    for (const [name, field] of list) {
      offset = writeField(buf, offset, name);
      offset = writeField(buf, offset, field);
    }
    return { buf, buffer: buf };
  };
}

/** kafkajs's own record encoder, kept when it is replaced. */
let originalRecord: RecordEncoder | undefined;

/** kafkajs's own record encoder and CRC-32C, also once replaced; for tests and benches. */
export function kafkajsOriginals(): { encodeRecord: RecordEncoder; crc32c: (buffer: Buffer) => number } {
  originalRecord ??= require(RECORD_MODULE) as RecordEncoder;
  return {
    encodeRecord: originalRecord,
    // The table implementation behind kafkajs's crc32C/index.js, which only adds `>>> 0`.
    crc32c: require(require.resolve(CRC_MODULE).replace(/index\.js$/, 'crc32C.js')) as (buffer: Buffer) => number,
  };
}

/** What {@link installRecordEncoding} did. */
export type InstallResult = 'installed' | 'already' | 'other-version' | 'bound';

let installed = false;

/**
 * Puts {@link recordEncoder} and {@link crc32c} in place of kafkajs's modules for this process.
 * Call it before the first produce request; `createKafka` does. Returns what it did: nothing
 * for another kafkajs version (`other-version`) or when kafkajs already bound the modules
 * (`bound`); kafkajs then works as it always did, only slower.
 */
export function installRecordEncoding(): InstallResult {
  if (installed) return 'already';
  const { version } = require('kafkajs/package.json') as { version: string };
  if (version !== KAFKAJS_VERSION) return 'other-version';
  if (BINDING_MODULES.some((m) => require.cache[require.resolve(m)] !== undefined)) return 'bound';
  const recordPath = require.resolve(RECORD_MODULE);
  const crcPath = require.resolve(CRC_MODULE);
  const original = (originalRecord ??= require(recordPath) as RecordEncoder);
  require(crcPath);
  const recordModule = require.cache[recordPath];
  const crcModule = require.cache[crcPath];
  if (recordModule === undefined || crcModule === undefined) return 'bound';
  recordModule.exports = recordEncoder(original);
  crcModule.exports = crc32c;
  installed = true;
  return 'installed';
}
