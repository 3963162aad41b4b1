/**
 * Faster encoding of produced records, swapped into kafkajs 2.2.4 (docs/adr/0015).
 *
 * kafkajs builds every record through its general `Encoder`: a zero-filled 512-byte buffer per
 * record and per header, a fresh `Buffer` per varint, and `Long` arithmetic for the timestamp
 * delta. A raw record (about 1 KB, seven headers) took 13–18 µs to encode; that was the largest
 * single cost of the ingest process. Its CRC-32C runs one table lookup per byte.
 *
 * Each produce request was then copied through a chain of such encoders, level by level, about
 * 10 MB allocated for a 0.5 MB request. {@link installRecordEncoding} replaces the kafkajs
 * modules that do this, before kafkajs first loads them (it loads them lazily, with the first
 * produce request):
 * - `protocol/recordBatch/record/v0`: {@link recordEncoder} computes the record's size first and
 *   writes it into one buffer. The bytes are identical to kafkajs's (property-tested against it).
 *   Anything outside what it handles (a `Long` or fractional timestamp delta, a key of another
 *   type) goes to kafkajs's own encoder, so kafkajs's behaviour (and its errors) stay.
 * - `protocol/recordBatch/crc32C`: the `crc-32` package's CRC-32C (16 bytes per step).
 * - `protocol/requests/produce/v3/request` (also behind v4 to v7): {@link encodeProduceRequest}
 *   writes a produce request's payload, every record batch in place, in one buffer.
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
const PRODUCE_MODULE = 'kafkajs/src/protocol/requests/produce/v3/request.js';
/** The kafkajs modules that bind the record and CRC modules when they load: once loaded, nothing can be replaced. */
const BINDING_MODULES = [PRODUCE_MODULE, 'kafkajs/src/protocol/recordBatch/v0/index.js'];

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

/** Strings up to this length are checked for ASCII and copied by hand: header names and values, keys. */
const SHORT_STRING = 64;

/** Whether `value` is short and all ASCII: then its UTF-8 bytes are its char codes. */
function isShortAscii(value: string): boolean {
  if (value.length > SHORT_STRING) return false;
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) > 0x7f) return false;
  return true;
}

/** UTF-8 bytes of a string (`Buffer.byteLength`, whose call costs more than a short string's loop). */
function utf8Length(value: string): number {
  return isShortAscii(value) ? value.length : Buffer.byteLength(value, 'utf8');
}

function byteLength(value: Buffer | string): number {
  return typeof value === 'string' ? utf8Length(value) : value.length;
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
    if (isShortAscii(value)) {
      offset = writeVarInt(buf, offset, value.length);
      for (let i = 0; i < value.length; i++) buf[offset++] = value.charCodeAt(i);
      return offset;
    }
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

/** A record the one-pass encoder writes: its fields, checked, and its size. */
interface RecordPlan {
  readonly offsetDelta: number;
  /** The zigzag of the timestamp delta. */
  readonly timestamp: number;
  readonly key: Field;
  readonly value: Field;
  readonly headers: readonly [string, Field][];
  /** Bytes after the length prefix. */
  readonly body: number;
  /** Bytes of the whole record, its length prefix included. */
  readonly size: number;
}

/** The plan of a record, or undefined when one of its parts is of a kind only kafkajs's encoder handles. */
function planRecord(offsetDelta: unknown, timestampDelta: unknown, key: unknown, value: unknown, headers: unknown): RecordPlan | undefined {
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
    return undefined;
  }
  const keyField = key ?? null;
  const valueField = value ?? null;
  const timestamp = zigzag64(timestampDelta);
  let body = 1 + sizeOfUVarLong(timestamp) + sizeOfVarInt(offsetDelta) + sizeOfField(keyField) + sizeOfField(valueField);
  body += sizeOfVarInt(list.length);
  for (const [name, field] of list) body += sizeOfField(name) + sizeOfField(field);
  return { offsetDelta, timestamp, key: keyField, value: valueField, headers: list, body, size: sizeOfVarInt(body) + body };
}

/** Writes a planned record at `offset`; returns the offset after it. */
function writeRecord(buf: Buffer, offset: number, plan: RecordPlan): number {
  offset = writeVarInt(buf, offset, plan.body);
  buf[offset++] = 0; // attributes: none are used on records
  offset = writeUVarLong(buf, offset, plan.timestamp);
  offset = writeVarInt(buf, offset, plan.offsetDelta);
  offset = writeField(buf, offset, plan.key);
  offset = writeField(buf, offset, plan.value);
  offset = writeVarInt(buf, offset, plan.headers.length);
  for (const [name, field] of plan.headers) {
    offset = writeField(buf, offset, name);
    offset = writeField(buf, offset, field);
  }
  return offset;
}

/**
 * A record encoder producing kafkajs's bytes (Kafka record format v2: length, attributes,
 * timestamp delta, offset delta, key, value, headers) in one buffer. Inputs it does not handle
 * go to `fallback`, kafkajs's own encoder.
 */
export function recordEncoder(fallback: RecordEncoder): RecordEncoder {
  return (record) => {
    const { offsetDelta = 0, timestampDelta = 0, key, value, headers } = record;
    const plan = planRecord(offsetDelta, timestampDelta, key, value, headers);
    if (plan === undefined) return fallback(record);
    const buf = Buffer.allocUnsafe(plan.size);
    writeRecord(buf, 0, plan);
    return { buf, buffer: buf };
  };
}

/** A produced message as kafkajs's producer hands it to the produce request. */
export interface ProduceMessage {
  readonly key?: unknown;
  readonly value?: unknown;
  readonly headers?: unknown;
  readonly timestamp?: unknown;
}

/** The arguments of kafkajs's produce request (`protocol/requests/produce/v3/request.js`). */
export interface ProduceRequestInput {
  readonly acks: number;
  readonly timeout: number;
  readonly transactionalId?: unknown;
  readonly producerId?: unknown;
  readonly producerEpoch?: unknown;
  readonly compression?: unknown;
  readonly topicData: readonly {
    readonly topic: unknown;
    readonly partitions: readonly { readonly partition: unknown; readonly firstSequence?: unknown; readonly messages: readonly ProduceMessage[] }[];
  }[];
}

/** What kafkajs's produce request module returns: the request its connection sends. */
export interface ProduceRequest {
  readonly apiKey: number;
  readonly apiVersion: number;
  readonly apiName: string;
  expectResponse(): boolean;
  encode(): Promise<EncodedRecord>;
}

export type ProduceRequestModule = (input: ProduceRequestInput) => ProduceRequest;

interface Long {
  getHighBits(): number;
  getLowBits(): number;
}

interface LongClass {
  fromValue(value: unknown): Long;
}

/** kafkajs's 64-bit integers, loaded with the first request (after the version check of the install). */
let LongType: LongClass | undefined;

/**
 * Bytes of a record batch before the part its CRC covers: first offset (8), batch length (4),
 * partition leader epoch (4), magic byte (1), CRC (4). The batch length counts from the epoch on.
 */
const BATCH_HEAD = 8 + 4 + 4 + 1 + 4;
/** Bytes of a batch's first offset and length, which its length does not count. */
const BATCH_OFFSET_AND_LENGTH = 8 + 4;
/** Bytes of the batch fields the CRC covers, before the records: attributes … record count. */
const BATCH_BODY_HEAD = 2 + 4 + 8 + 8 + 8 + 2 + 4 + 4;
/** The transactional bit of a record batch's attributes. */
const TRANSACTIONAL = 16;
const MAGIC_BYTE = 2;

function isInt(value: unknown, bits: 16 | 32): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= -(2 ** (bits - 1)) && value < 2 ** (bits - 1);
}

function writeLong(buf: Buffer, offset: number, value: Long): number {
  buf.writeInt32BE(value.getHighBits(), offset);
  buf.writeInt32BE(value.getLowBits(), offset + 4);
  return offset + 8;
}

/** Writes an int16-prefixed string (kafkajs's `writeString`), -1 for null. */
function writeString(buf: Buffer, offset: number, value: string | null): number {
  if (value === null) return buf.writeInt16BE(-1, offset);
  const length = Buffer.byteLength(value, 'utf8');
  offset = buf.writeInt16BE(length, offset);
  return offset + buf.write(value, offset, length, 'utf8');
}

/**
 * The payload of a produce request (v3 to v7: transactional id, acks, timeout, topics, their
 * partitions and one record batch each), written in one buffer with the bytes kafkajs's request
 * module writes. Undefined for what only kafkajs handles: compression, message timestamps,
 * a record {@link planRecord} leaves to kafkajs, or a field of an unexpected type.
 *
 * kafkajs writes the same bytes through a chain of growing, zero-filled `Encoder`s: each level
 * (record batch, partition, topic, request) copies the level below into a new buffer of the next
 * power of two, about 10 MB allocated for a 0.5 MB request.
 */
export function encodeProduceRequest(input: ProduceRequestInput, now: number): EncodedRecord | undefined {
  const { acks, timeout, transactionalId = null, producerId = -1, producerEpoch = 0, compression = 0, topicData } = input;
  if (compression !== 0 || !(transactionalId === null || typeof transactionalId === 'string')) return undefined;
  if (!isInt(acks, 16) || !isInt(timeout, 32) || !isInt(producerEpoch, 16)) return undefined;
  LongType ??= require('kafkajs/src/utils/long.js') as LongClass;
  let producer: Long;
  let timestamp: Long;
  try {
    producer = LongType.fromValue(producerId);
    timestamp = LongType.fromValue(now);
  } catch {
    return undefined; // kafkajs decides (it fails on the id only when it writes a batch)
  }
  let size = 2 + (transactionalId === null ? 0 : Buffer.byteLength(transactionalId, 'utf8')) + 2 + 4 + 4;
  const topics: { topic: string; partitions: { partition: number; firstSequence: number; records: RecordPlan[]; bytes: number }[] }[] = [];
  for (const { topic, partitions } of topicData) {
    if (typeof topic !== 'string') return undefined;
    size += 2 + Buffer.byteLength(topic, 'utf8') + 4;
    const planned: (typeof topics)[number]['partitions'] = [];
    for (const { partition, firstSequence = 0, messages } of partitions) {
      if (!isInt(partition, 32) || !isInt(firstSequence, 32)) return undefined;
      const records: RecordPlan[] = [];
      let bytes = 0;
      for (let i = 0; i < messages.length; i++) {
        const m = messages[i];
        if (m === undefined || (m.timestamp !== undefined && m.timestamp !== null)) return undefined;
        const plan = planRecord(i, 0, m.key, m.value, m.headers);
        if (plan === undefined) return undefined;
        records.push(plan);
        bytes += plan.size;
      }
      planned.push({ partition, firstSequence, records, bytes });
      size += 4 + 4 + BATCH_HEAD + BATCH_BODY_HEAD + bytes; // partition, batch size, batch
    }
    topics.push({ topic, partitions: planned });
  }
  const attributes = transactionalId ? TRANSACTIONAL : 0;
  const buf = Buffer.allocUnsafe(size);
  let offset = writeString(buf, 0, transactionalId);
  offset = buf.writeInt16BE(acks, offset);
  offset = buf.writeInt32BE(timeout, offset);
  offset = buf.writeInt32BE(topics.length, offset);
  for (const { topic, partitions } of topics) {
    offset = writeString(buf, offset, topic);
    offset = buf.writeInt32BE(partitions.length, offset);
    for (const { partition, firstSequence, records, bytes } of partitions) {
      const batchLength = BATCH_HEAD - BATCH_OFFSET_AND_LENGTH + BATCH_BODY_HEAD + bytes;
      offset = buf.writeInt32BE(partition, offset);
      offset = buf.writeInt32BE(BATCH_OFFSET_AND_LENGTH + batchLength, offset);
      offset = buf.writeInt32BE(0, offset); // first offset, an int64 0
      offset = buf.writeInt32BE(0, offset);
      offset = buf.writeInt32BE(batchLength, offset);
      offset = buf.writeInt32BE(0, offset); // partition leader epoch
      offset = buf.writeInt8(MAGIC_BYTE, offset);
      const crcAt = offset;
      const bodyAt = offset + 4;
      offset = buf.writeInt16BE(attributes, bodyAt);
      offset = buf.writeInt32BE(records.length - 1, offset); // last offset delta
      offset = writeLong(buf, offset, timestamp); // first timestamp
      offset = writeLong(buf, offset, timestamp); // max timestamp
      offset = writeLong(buf, offset, producer);
      offset = buf.writeInt16BE(producerEpoch, offset);
      offset = buf.writeInt32BE(firstSequence, offset);
      offset = buf.writeInt32BE(records.length, offset);
      for (const plan of records) offset = writeRecord(buf, offset, plan);
      buf.writeUInt32BE(crc32c(buf.subarray(bodyAt, offset)), crcAt);
    }
  }
  return { buf, buffer: buf };
}

/**
 * kafkajs's produce request module with {@link encodeProduceRequest} as its payload encoder;
 * what that leaves undefined is encoded by `original`, kafkajs's own module.
 */
export function produceRequest(original: ProduceRequestModule, clock: () => number = () => Date.now()): ProduceRequestModule {
  return (input) => {
    const request = original(input);
    return {
      ...request,
      // async: a producer id that is no integer rejects the promise, as kafkajs's encode does.
      encode: async () => encodeProduceRequest(input, clock()) ?? (await request.encode()),
    };
  };
}

/** kafkajs's own record encoder and produce request module, kept when they are replaced. */
let originalRecord: RecordEncoder | undefined;
let originalProduce: ProduceRequestModule | undefined;

/**
 * kafkajs's own record encoder, CRC-32C and produce request module, also once replaced; for
 * tests and benches. The produce request module is there once {@link installRecordEncoding} ran
 * (loading it earlier would bind kafkajs's own record modules into it).
 */
export function kafkajsOriginals(): {
  encodeRecord: RecordEncoder;
  crc32c: (buffer: Buffer) => number;
  produceRequest: ProduceRequestModule | undefined;
} {
  originalRecord ??= require(RECORD_MODULE) as RecordEncoder;
  return {
    encodeRecord: originalRecord,
    // The table implementation behind kafkajs's crc32C/index.js, which only adds `>>> 0`.
    crc32c: require(require.resolve(CRC_MODULE).replace(/index\.js$/, 'crc32C.js')) as (buffer: Buffer) => number,
    produceRequest: originalProduce,
  };
}

/** What {@link installRecordEncoding} did. */
export type InstallResult = 'installed' | 'already' | 'other-version' | 'bound';

let installed = false;

/**
 * Puts {@link recordEncoder}, {@link crc32c} and {@link produceRequest} in place of kafkajs's
 * modules for this process. Call it before the first produce request; `createKafka` does.
 * Returns what it did: nothing for another kafkajs version (`other-version`) or when kafkajs
 * already bound the modules (`bound`); kafkajs then works as it always did, only slower.
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
  // Loaded now, kafkajs's produce request module binds the two above (for what it still encodes).
  const producePath = require.resolve(PRODUCE_MODULE);
  originalProduce = require(producePath) as ProduceRequestModule;
  const produceModule = require.cache[producePath];
  if (produceModule !== undefined) produceModule.exports = produceRequest(originalProduce);
  installed = true;
  return 'installed';
}
