/**
 * A broker killed (SIGKILL) and started again while a consumer group rebalances: the members of
 * the transform and sink consumer loops go on, and every record is handled and committed.
 *
 * kafkajs alone ends such members for good: the restarted broker no longer knows the member, and
 * the offset commit of the batch that was in flight fails with UNKNOWN_MEMBER_ID wrapped in a
 * KafkaJSNonRetriableError; a member whose JoinGroup was pending meets a broker refusing its
 * coordinator lookup (KafkaJSGroupCoordinatorNotFound, kafkajs#1630). Before the loop handled
 * them, 5 of 6 rounds like these ended a member.
 *
 * The test runs a broker of its own so it can kill it; the shared broker is never touched.
 */
import { randomUUID } from 'node:crypto';

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { createKafka, ROLE_RETRY } from '../../../src/kafka/client.ts';
import { type ConsumerLoop, startConsumerLoop } from '../../../src/kafka/consume.ts';
import { groupLag, uniqueTopic, useOwnBroker, createTopics } from '../../helpers/kafka.ts';
import { waitFor } from '../../helpers/msgpipe.ts';

const own = useOwnBroker();
const ROUNDS = 3;
const PER_ROUND = 8;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

describe('consumer loop on a broker that is killed', () => {
  it('keeps its members through a broker kill during a rebalance and handles every record', async () => {
    const log = pino({ level: 'silent' });
    const kafka = createKafka({ brokers: own.brokers, clientId: 'broker-kill-test', logger: log, retry: ROLE_RETRY });
    const topic = uniqueTopic('kill');
    const groupId = `kill-${randomUUID()}`;
    await createTopics(kafka, [{ topic, numPartitions: 4 }]);
    const producer = kafka.producer();
    await producer.connect();
    const send = (prefix: string): Promise<unknown> =>
      producer.send({ topic, acks: -1, messages: Array.from({ length: PER_ROUND }, (_, i) => ({ key: `k${String(i)}`, value: `${prefix}-${String(i)}` })) });

    const handled = new Set<string>();
    const failures: unknown[] = [];
    const loops: ConsumerLoop[] = [];
    const member = async (name: string): Promise<void> => {
      const loop = await startConsumerLoop({
        kafka,
        groupId,
        topics: [topic],
        log,
        maxRecords: 100,
        sessionTimeoutMs: 6000,
        handle: async (batch) => {
          // The first member holds a batch of slow records: a member joining meanwhile waits
          // for it in its JoinGroup, and the broker dies under that wait.
          if (name === 'first' && batch.messages.some((m) => String(m.value).startsWith('slow'))) await sleep(8000);
          for (const m of batch.messages) handled.add(String(m.value));
        },
      });
      loop.crashed.catch((err: unknown) => failures.push(err));
      loops.push(loop);
    };

    try {
      await member('first');
      for (let round = 0; round < ROUNDS; round++) {
        await send(`slow${String(round)}`);
        await sleep(1000);
        const joining = member(`joining${String(round)}`);
        await sleep(1500);
        await own.kill();
        await own.start();
        await joining;
        await send(`after${String(round)}`);
        const expected = ['slow', 'after'].flatMap((p) => Array.from({ length: PER_ROUND }, (_, i) => `${p}${String(round)}-${String(i)}`));
        await waitFor(() => expected.every((v) => handled.has(v)) || failures.length > 0, 120_000, `the records of round ${String(round)}`);
        expect(failures, 'members ended for good').toEqual([]);
      }
      await waitFor(async () => (await groupLag(kafka, groupId, [topic])) === 0, 120_000, 'every record to be committed');
      expect(handled.size).toBe(2 * ROUNDS * PER_ROUND);
      expect(failures).toEqual([]);
    } finally {
      for (const loop of loops) await loop.stop().catch(() => undefined);
      await producer.disconnect();
    }
  });
});
