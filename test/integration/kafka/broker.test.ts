/**
 * Round trip through a real broker (test/helpers/kafka.ts): topic creation, an idempotent
 * producer, and a consumer group on eachBatch that resolves and commits offsets itself.
 */
import { randomUUID } from 'node:crypto';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createIdempotentProducer, createKafka, ensureTopics } from '../../../src/kafka/client.ts';
import type { Admin, Kafka } from '../../../src/kafka/client.ts';
import { getBroker, uniqueTopic } from '../../helpers/kafka.ts';
import type { TestBroker } from '../../helpers/kafka.ts';

const COUNT = 1000;
const PARTITIONS = 2;

interface Received {
  readonly key: string;
  readonly value: string;
  readonly partition: number;
  readonly offset: bigint;
}

describe('kafka broker', () => {
  let broker: TestBroker;
  let kafka: Kafka;
  let admin: Admin;

  beforeAll(async () => {
    const started = Date.now();
    broker = await getBroker();
    console.log(`kafka broker from ${broker.source} at ${broker.brokers.join(',')} in ${Date.now() - started} ms`);
    kafka = createKafka({ brokers: broker.brokers, clientId: 'msgpipe-test', logger: pino({ level: 'warn' }) });
    admin = kafka.admin();
    await admin.connect();
  }, 180_000);

  afterAll(async () => {
    await admin.disconnect();
    await broker.stop();
  }, 60_000);

  it('delivers 1000 keyed messages exactly once through a consumer group and commits the end offsets', async () => {
    const topic = uniqueTopic('broker');
    const groupId = `group-${randomUUID()}`;

    const first = await ensureTopics(admin, [{ topic, numPartitions: PARTITIONS }]);
    expect(first).toEqual({ created: [topic], existing: [] });
    const again = await ensureTopics(admin, [{ topic, numPartitions: PARTITIONS }]);
    expect(again).toEqual({ created: [], existing: [topic] });
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(metadata.topics[0]?.partitions).toHaveLength(PARTITIONS);

    // Produce in batches of 100 with the idempotent producer.
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    try {
      for (let start = 0; start < COUNT; start += 100) {
        const messages = Array.from({ length: 100 }, (_, j) => ({ key: `key-${start + j}`, value: `value-${start + j}` }));
        const result = await producer.send({ topic, acks: -1, messages });
        expect(result.every((r) => r.errorCode === 0)).toBe(true);
      }
    } finally {
      await producer.disconnect();
    }

    const ends = await admin.fetchTopicOffsets(topic);
    expect(ends).toHaveLength(PARTITIONS);
    const endByPartition = new Map(ends.map((p) => [p.partition, BigInt(p.high)]));
    // Both partitions got messages, and the log holds exactly what was sent.
    expect([...endByPartition.values()].every((high) => high > 0n)).toBe(true);
    expect([...endByPartition.values()].reduce((a, b) => a + b, 0n)).toBe(BigInt(COUNT));

    // Consume with explicit resolveOffset + commitOffsets.
    const received: Received[] = [];
    let commits = 0;
    const consumer = kafka.consumer({ groupId, sessionTimeout: 10_000, heartbeatInterval: 1_000 });
    await consumer.connect();
    let done!: () => void;
    const allReceived = new Promise<void>((resolve) => (done = resolve));
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatchAutoResolve: false,
        eachBatch: async (payload) => {
          const { batch } = payload;
          let last: string | undefined;
          for (const message of batch.messages) {
            if (!payload.isRunning() || payload.isStale()) break;
            received.push({
              key: message.key?.toString('utf8') ?? '',
              value: message.value?.toString('utf8') ?? '',
              partition: batch.partition,
              offset: BigInt(message.offset),
            });
            payload.resolveOffset(message.offset);
            last = message.offset;
          }
          if (last !== undefined) {
            await consumer.commitOffsets([{ topic, partition: batch.partition, offset: (BigInt(last) + 1n).toString() }]);
            commits += 1;
          }
          await payload.heartbeat();
          if (received.length >= COUNT) done();
        },
      });
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(() => {
          reject(new Error(`only ${received.length} of ${COUNT} messages arrived`));
        }, 30_000).unref(),
      );
      await Promise.race([allReceived, timeout]);
      // Give a redelivery (a duplicate) the chance to show up before stopping.
      await new Promise((resolve) => setTimeout(resolve, 500));
    } finally {
      await consumer.disconnect();
    }

    expect(commits).toBeGreaterThan(0);
    expect(received).toHaveLength(COUNT);
    const keys = new Set(received.map((r) => r.key));
    expect(keys.size).toBe(COUNT);
    for (let i = 0; i < COUNT; i += 1) expect(keys.has(`key-${i}`)).toBe(true);
    for (const r of received) expect(r.value).toBe(r.key.replace('key-', 'value-'));

    // Per partition: every offset from 0 to the end exactly once, in order, and each key in one partition.
    for (const [partition, high] of endByPartition) {
      const offsets = received.filter((r) => r.partition === partition).map((r) => r.offset);
      expect(offsets).toEqual(Array.from({ length: Number(high) }, (_, i) => BigInt(i)));
    }

    const committed = await admin.fetchOffsets({ groupId, topics: [topic] });
    const committedByPartition = new Map(committed[0]?.partitions.map((p) => [p.partition, BigInt(p.offset)]) ?? []);
    expect(committedByPartition).toEqual(endByPartition);

    await admin.deleteTopics({ topics: [topic] });
  });
});
