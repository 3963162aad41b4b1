import { createRequire } from 'node:module';

import fc from 'fast-check';
import { Partitioners } from 'kafkajs';
import { describe, expect, it } from 'vitest';

import { javaCompatiblePartitioner, murmur2 } from '../../../src/kafka/client.ts';

// kafkajs's own murmur2 (64-bit Long arithmetic): the reference our 32-bit version must match.
const kafkajsMurmur2 = createRequire(import.meta.url)('kafkajs/src/producer/partitioners/default/murmur2.js') as (key: Buffer) => number;

describe('murmur2', () => {
  it("matches the Java client's values (Kafka's UtilsTest)", () => {
    const cases: [string, number][] = [
      ['21', -973932308],
      ['foobar', -790332482],
      ['a-little-bit-long-string', -985981536],
      ['a-little-bit-longer-string', -1486304829],
      ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
      ['abc', 479470107],
    ];
    for (const [key, hash] of cases) expect(murmur2(Buffer.from(key))).toBe(hash);
  });

  it('matches kafkajs on any bytes, every tail length included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
        expect(murmur2(bytes)).toBe(kafkajsMurmur2(Buffer.from(bytes)));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('javaCompatiblePartitioner', () => {
  const partitionMetadata = [0, 1, 2, 3, 4, 5].map((partitionId) => ({ partitionId, leader: partitionId === 2 ? -1 : 1, partitionErrorCode: 0, replicas: [1], isr: [1] }));

  it('puts a keyed record where kafkajs DefaultPartitioner puts it', () => {
    const ours = javaCompatiblePartitioner();
    const theirs = Partitioners.DefaultPartitioner();
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), fc.integer({ min: 1, max: 6 }), (key, n) => {
        const args = { topic: 't', partitionMetadata: partitionMetadata.slice(0, n), message: { key, value: null } };
        expect(ours(args)).toBe(theirs(args));
        expect(ours({ ...args, message: { key: Buffer.from(key), value: null } })).toBe(theirs(args));
      }),
    );
  });

  it('honours an explicit partition and spreads keyless records over partitions with a leader', () => {
    const ours = javaCompatiblePartitioner();
    expect(ours({ topic: 't', partitionMetadata, message: { key: 'k', partition: 4, value: null } })).toBe(4);
    const seen = new Set<number>();
    for (let i = 0; i < 50; i++) seen.add(ours({ topic: 't', partitionMetadata, message: { value: null } }));
    expect([...seen].sort()).toEqual([0, 1, 3, 4, 5]);
  });
});
