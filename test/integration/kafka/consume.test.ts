/**
 * The consumer loop of the transform and sink roles keeps its group membership while a handler
 * works for longer than the session timeout (a sink insert retrying): the partition is not
 * handed to another member mid-batch, so its records are handled once.
 */
import { randomUUID } from 'node:crypto';

import { KafkaJSGroupCoordinatorNotFound, KafkaJSNonRetriableError } from 'kafkajs';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { ensureTopics, type Kafka } from '../../../src/kafka/client.ts';
import { type ConsumerLoop, startConsumerLoop } from '../../../src/kafka/consume.ts';
import { groupLag, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { waitFor } from '../../helpers/msgpipe.ts';

let kafka: Kafka;
useTestBroker((_broker, k) => {
  kafka = k;
});

/** A new topic with `partitions` partitions holding `records` keyed records (`k0`/`v0`, …). */
async function topicHolding(name: string, partitions: number, records: number): Promise<string> {
  const topic = uniqueTopic(name);
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, [{ topic, numPartitions: partitions }]);
  } finally {
    await admin.disconnect();
  }
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: Array.from({ length: records }, (_, i) => ({ key: `k${String(i)}`, value: `v${String(i)}` })) });
  await producer.disconnect();
  return topic;
}

describe('consumer loop', () => {
  it('heartbeats during a batch longer than the session timeout, so no other member takes its records', async () => {
    const topic = await topicHolding('hb', 1, 1);
    const groupId = `hb-${randomUUID()}`;

    const handled: string[] = [];
    let slowStarted = false;
    const log = pino({ level: 'error' });
    const loop = (name: string, holdMs: number): Promise<ConsumerLoop> =>
      startConsumerLoop({
        kafka,
        groupId,
        topics: [topic],
        log,
        maxRecords: 100,
        sessionTimeoutMs: 6000,
        handle: async (batch) => {
          for (const m of batch.messages) handled.push(`${name}@${m.offset}`);
          slowStarted = true;
          // Three session timeouts without returning to kafkajs.
          await new Promise((r) => setTimeout(r, holdMs));
        },
      });
    const a = await loop('a', 20_000);
    let b: ConsumerLoop | undefined;
    try {
      await waitFor(() => slowStarted, 60_000, 'the first member to start its batch');
      // A second member joins while the first one is inside its long batch.
      b = await loop('b', 0);
      await waitFor(async () => (await groupLag(kafka, groupId, [topic])) === 0, 120_000, 'the record to be committed');
      // Long enough for a member evicted at 6 s to have lost the partition to the other one.
      await new Promise((r) => setTimeout(r, 3000));
      expect(handled).toEqual(['a@0']);
    } finally {
      await b?.stop();
      await a.stop();
    }
  });

  it('commits the batches in flight when it stops (kafkajs alone drops those commits)', async () => {
    const topic = await topicHolding('drain', 3, 30);
    const groupId = `drain-${randomUUID()}`;

    let started = 0;
    let finished = 0;
    const loop = await startConsumerLoop({
      kafka,
      groupId,
      topics: [topic],
      log: pino({ level: 'error' }),
      maxRecords: 100,
      sessionTimeoutMs: 10_000,
      concurrency: 3,
      handle: async () => {
        started++;
        await new Promise((r) => setTimeout(r, 1500));
        finished++;
      },
    });
    await waitFor(() => started > 0, 60_000, 'a batch to start');
    await loop.stop();
    expect(finished).toBe(started);
    // Every batch that was handled is committed: the group has nothing left to read.
    expect(await groupLag(kafka, groupId, [topic])).toBe(0);
  });

  it('runs a consumer kafkajs ended for good again when the error is one the broker coming back cures', async () => {
    const topic = await topicHolding('crash', 2, 20);
    const groupId = `crash-${randomUUID()}`;
    const handled = new Set<string>();
    let failures = 0;
    const loop = await startConsumerLoop({
      kafka,
      groupId,
      topics: [topic],
      log: pino({ level: 'silent' }),
      maxRecords: 100,
      sessionTimeoutMs: 6000,
      handle: (batch) => {
        // The first two batches fail with what kafkajs's retrier throws when every broker
        // refused the coordinator lookup (kafkajs#1630): kafkajs itself does not restart then.
        if (failures < 2) {
          failures += 1;
          const NotFound = KafkaJSGroupCoordinatorNotFound as unknown as new (message: string) => Error;
          const cause = new NotFound('Failed to find group coordinator');
          return Promise.reject(Object.assign(new KafkaJSNonRetriableError(cause), { cause }));
        }
        for (const m of batch.messages) handled.add(String(m.value));
        return Promise.resolve();
      },
    });
    let crashed: unknown;
    loop.crashed.catch((err: unknown) => {
      crashed = err;
    });
    try {
      await waitFor(async () => (await groupLag(kafka, groupId, [topic])) === 0, 60_000, 'every record to be committed');
      expect(failures).toBe(2);
      expect(handled.size).toBe(20);
      expect(crashed).toBeUndefined();
    } finally {
      await loop.stop();
    }
  });

  it('stops cleanly when the consumer is already down (a crash), and once when asked twice', async () => {
    const topic = await topicHolding('down', 1, 1);
    const loop = await startConsumerLoop({
      kafka,
      groupId: `down-${randomUUID()}`,
      topics: [topic],
      log: pino({ level: 'error' }),
      maxRecords: 100,
      sessionTimeoutMs: 10_000,
      handle: () => Promise.resolve(),
    });
    // What kafkajs does to a consumer that crashed: it disconnects it, and pausing it then throws.
    await loop.consumer.disconnect();
    expect(() => { loop.consumer.pause([{ topic }]); }).toThrow();
    const first = loop.stop();
    expect(loop.stop()).toBe(first);
    await expect(first).resolves.toBeUndefined();
  });
});
