import { createRequire } from 'node:module';

import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';

import {
  crc32c,
  encodeProduceRequest,
  installRecordEncoding,
  kafkajsOriginals,
  type ProduceRequestInput,
  type ProduceRequestModule,
  produceRequest,
  recordEncoder,
  type RecordInput,
} from '../../../src/kafka/record-encoding.ts';

const require = createRequire(import.meta.url);
const original = kafkajsOriginals();
/**
 * kafkajs's produce request module as kafkajs ships it, with its own record encoder and CRC-32C
 * bound: loaded before any install, then taken out of the module cache so that the install
 * still happens (it loads the module again and binds the replacements into that one).
 */
const untouchedProduce = ((): ProduceRequestModule => {
  const paths = ['kafkajs/src/protocol/requests/produce/v3/request.js', 'kafkajs/src/protocol/recordBatch/v0/index.js'].map((p) => require.resolve(p));
  const module = require(paths[0]!) as ProduceRequestModule;
  for (const path of paths) Reflect.deleteProperty(require.cache, path);
  return module;
})();
/** Inputs the encoder handed to kafkajs's own: the property test checks which. */
let fellBack = 0;
const encode = recordEncoder((input) => {
  fellBack++;
  return original.encodeRecord(input);
});
const Long = require('kafkajs/src/utils/long.js') as { fromString(text: string): unknown; fromNumber(value: number): unknown };

/** Key, value or header value as a producer may give it; with `undefined` for key and value. */
const field = fc.oneof(
  fc.constant(null),
  fc.string({ unit: 'binary', maxLength: 40 }),
  // Lone surrogates: both encoders write U+FFFD (3 bytes) for each.
  fc.constantFrom('\ud800', 'a\udc00b', '\udbff\udfff\ud800'),
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  // ASCII around the length up to which strings are copied by hand (64).
  fc.string({ minLength: 60, maxLength: 70 }),
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  // A length of three varint bytes.
  fc.constantFrom(16_383, 16_384, 20_000).map((n) => Buffer.alloc(n, 7)),
);

const record: fc.Arbitrary<RecordInput> = fc.record(
  {
    offsetDelta: fc.oneof(fc.nat(5000), fc.integer({ min: -(2 ** 31) + 1, max: 2 ** 31 - 1 })),
    timestampDelta: fc.oneof(fc.integer({ min: -5000, max: 5000 }), fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(2 ** 52, -(2 ** 52), 2 ** 31, -(2 ** 31) - 1)),
    key: fc.oneof(field, fc.constant(undefined)),
    value: fc.oneof(field, fc.constant(undefined)),
    headers: fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.oneof(field, fc.array(field, { maxLength: 3 })), { maxKeys: 8 }),
  },
  { requiredKeys: [] },
);

/** The bytes an encoder writes, or the error it throws. */
function outcome(encoder: (input: RecordInput) => { buffer: Buffer }, input: RecordInput): string {
  try {
    return encoder(input).buffer.toString('hex');
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`;
  }
}

describe('recordEncoder', () => {
  it('writes the bytes kafkajs writes (or fails as it fails), for any key, value, headers and deltas', () => {
    let fast = 0;
    fc.assert(
      fc.property(record, (input) => {
        const before = fellBack;
        const ours = outcome(encode, input);
        expect(ours).toBe(outcome(original.encodeRecord, input));
        // Only what kafkajs rejects (a null header value) and deltas past ±2^52 go to kafkajs.
        const headerValues = Object.values((input.headers ?? {}) as Record<string, unknown>).flat();
        const expectFallback = headerValues.includes(null) || Math.abs(input.timestampDelta as number) > 2 ** 52;
        expect(fellBack - before).toBe(expectFallback ? 1 : 0);
        if (!expectFallback) fast++;
      }),
      { numRuns: 3000 },
    );
    expect(fast).toBeGreaterThan(1000);
  });

  it('writes a raw record of the ingest (seven headers, 1 KB of JSON) as kafkajs does', () => {
    const input: RecordInput = {
      offsetDelta: 17,
      timestampDelta: 3,
      key: 'gewe-main:wxid_5f1m2k3j4',
      value: Buffer.from(JSON.stringify({ NewMsgId: '3876235366388279544', Content: '请问这款还有现货吗？😂'.repeat(30) })),
      headers: { source: 'gewe-main', 'source-type': 'gewe', account: 'acct-1', tenant: 't1', stream: 'main', cursor: 'kb-000123', 'fetched-at': '1732406400000' },
    };
    const before = fellBack;
    const ours = encode(input);
    expect(fellBack).toBe(before);
    expect(ours.buf).toBe(ours.buffer);
    expect(ours.buffer.equals(original.encodeRecord(input).buffer)).toBe(true);
  });

  it('leaves what it does not handle to kafkajs: a Long delta encodes as kafkajs does, a bad header fails as kafkajs fails', () => {
    const long: RecordInput = { offsetDelta: 0, timestampDelta: Long.fromString('9007199254740993'), key: 'k', value: 'v' };
    expect(encode(long).buffer.equals(original.encodeRecord(long).buffer)).toBe(true);
    const bad: RecordInput = { key: 'k', value: 'v', headers: { n: 42 } };
    expect(() => original.encodeRecord(bad)).toThrow(TypeError);
    expect(() => encode(bad)).toThrow(TypeError);
  });
});

/** A produce request as kafkajs's producer builds it: topics, partitions, their messages. */
const produceInput: fc.Arbitrary<ProduceRequestInput> = fc.record({
  acks: fc.constantFrom(-1, 0, 1),
  timeout: fc.constantFrom(30_000, 1),
  transactionalId: fc.constantFrom(undefined, null, '', 'msgpipe-tx', 'tx-事务'),
  // kafkajs's idempotent producer passes its producer id as a decimal string.
  producerId: fc.oneof(fc.constantFrom(-1, 0, '9223372036854775807'), fc.nat().map(String), fc.nat().map((n) => Long.fromNumber(n * 1000 + 7))),
  producerEpoch: fc.nat(32_767),
  topicData: fc.array(
    fc.record({
      topic: fc.string({ minLength: 1, maxLength: 30 }),
      partitions: fc.array(
        fc.record({
          partition: fc.nat(50),
          firstSequence: fc.nat(2 ** 31 - 1),
          messages: fc.array(
            fc.record(
              {
                key: fc.oneof(field, fc.constant(undefined)),
                value: fc.oneof(field, fc.constant(undefined)),
                headers: fc.dictionary(fc.string({ unit: 'grapheme', maxLength: 12 }), fc.oneof(field.filter((f) => f !== null), fc.array(field.filter((f) => f !== null), { maxLength: 3 })), { maxKeys: 8 }),
              },
              { requiredKeys: [] },
            ),
            { maxLength: 6 },
          ),
        }),
        { maxLength: 4 },
      ),
    }),
    { maxLength: 3 },
  ),
});

describe('encodeProduceRequest', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** kafkajs's own payload of a produce request (its own record encoder and CRC), at the frozen time. */
  async function kafkajsPayload(input: ProduceRequestInput): Promise<Buffer> {
    return (await untouchedProduce(input).encode()).buffer;
  }

  it('writes the bytes kafkajs writes for any topics, partitions, records and producer state', async () => {
    expect(['installed', 'already']).toContain(installRecordEncoding());
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_795_513_734_574);
    await fc.assert(
      fc.asyncProperty(produceInput, async (input) => {
        const ours = encodeProduceRequest(input, Date.now());
        expect(ours).toBeDefined();
        expect(ours?.buffer.toString('hex')).toBe((await kafkajsPayload(input)).toString('hex'));
      }),
      { numRuns: 400 },
    );
  });

  it('leaves compression, message timestamps and what the record encoder leaves to kafkajs', async () => {
    expect(['installed', 'already']).toContain(installRecordEncoding());
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(1_795_513_734_574);
    const input = (messages: ProduceRequestInput['topicData'][number]['partitions'][number]['messages'], extra = {}): ProduceRequestInput => ({
      acks: -1,
      timeout: 30_000,
      ...extra,
      topicData: [{ topic: 't', partitions: [{ partition: 0, firstSequence: 3, messages }] }],
    });
    const withTimestamp = input([{ key: 'k', value: 'v', timestamp: 1_795_513_700_000 }, { key: 'k', value: 'w' }]);
    const gzip = input([{ key: 'k', value: 'v' }], { compression: 1 });
    const nullHeader = input([{ key: 'k', value: 'v', headers: { h: null } }]);
    for (const unhandled of [withTimestamp, gzip, nullHeader]) expect(encodeProduceRequest(unhandled, Date.now())).toBeUndefined();
    // Through the module, they are kafkajs's: the same bytes, or the same failure.
    const wrapped = produceRequest((i) => {
      const module = kafkajsOriginals().produceRequest;
      if (module === undefined) throw new Error('not installed');
      return module(i);
    });
    expect((await wrapped(withTimestamp).encode()).buffer.equals(await kafkajsPayload(withTimestamp))).toBe(true);
    expect((await wrapped(gzip).encode()).buffer.equals(await kafkajsPayload(gzip))).toBe(true);
    await expect(wrapped(nullHeader).encode()).rejects.toThrow(TypeError);
    await expect(kafkajsPayload(nullHeader)).rejects.toThrow(TypeError);
    const badProducer = input([{ key: 'k', value: 'v' }], { producerId: 'not a number' });
    await expect(wrapped(badProducer).encode()).rejects.toThrow(SyntaxError);
    await expect(kafkajsPayload(badProducer)).rejects.toThrow(SyntaxError);
  });

  it('keeps the request kafkajs makes: api key, version, whether a response is expected', () => {
    expect(['installed', 'already']).toContain(installRecordEncoding());
    const loaded = require('kafkajs/src/protocol/requests/produce/v3/request.js') as ProduceRequestModule;
    expect(loaded).not.toBe(kafkajsOriginals().produceRequest);
    const request = loaded({ acks: 0, timeout: 1000, topicData: [] });
    expect(request).toMatchObject({ apiKey: 0, apiVersion: 3, apiName: 'Produce' });
    expect(request.expectResponse()).toBe(false);
    expect(loaded({ acks: -1, timeout: 1000, topicData: [] }).expectResponse()).toBe(true);
  });
});

describe('crc32c', () => {
  it('gives the CRC-32C check value and kafkajs’s checksum on any bytes', () => {
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283);
    expect(crc32c(Buffer.alloc(0))).toBe(0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (bytes) => {
        const buffer = Buffer.from(bytes);
        expect(crc32c(buffer)).toBe(original.crc32c(buffer));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('installRecordEncoding', () => {
  it('replaces the modules kafkajs loads for produce requests, once', () => {
    expect(['installed', 'already']).toContain(installRecordEncoding());
    expect(installRecordEncoding()).toBe('already');
    const loaded = require('kafkajs/src/protocol/recordBatch/record/v0/index.js') as typeof original.encodeRecord;
    const loadedCrc = require('kafkajs/src/protocol/recordBatch/crc32C/index.js') as (b: Buffer) => number;
    expect(loaded).not.toBe(original.encodeRecord);
    expect(loadedCrc).toBe(crc32c);
    // And kafkajs's own modules, loaded as its produce path loads them, got them.
    const children = (path: string): unknown[] => (require.cache[require.resolve(path)]?.children ?? []).map((c) => c.exports as unknown);
    require('kafkajs/src/protocol/requests/produce/v3/request.js');
    expect(children('kafkajs/src/protocol/requests/produce/v3/request.js')).toContain(loaded);
    expect(children('kafkajs/src/protocol/recordBatch/v0/index.js')).toContain(crc32c);
    const input: RecordInput = { offsetDelta: 1, timestampDelta: 0, key: 'k', value: 'v', headers: { h: 'x' } };
    expect(loaded(input).buffer.equals(original.encodeRecord(input).buffer)).toBe(true);
  });
});
