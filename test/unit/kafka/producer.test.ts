/**
 * The send discipline of msgpipe's idempotent producer, on kafkajs stand-ins that record what
 * they are asked (test/integration/kafka/producer.test.ts shows the loss it prevents on a real
 * broker): sends run one at a time, and after a failed send the next one goes out on a new
 * producer, whose sequence numbers no written-but-unacknowledged batch can collide with.
 */
import { describe, expect, it } from 'vitest';

import { createIdempotentProducer, type Kafka, type Producer } from '../../../src/kafka/client.ts';

interface StandIn {
  readonly id: number;
  readonly calls: string[];
  failNext: boolean;
}

function standInKafka(): { kafka: Kafka; made: StandIn[]; log: string[] } {
  const made: StandIn[] = [];
  const log: string[] = [];
  const producer = (): Producer => {
    const me: StandIn = { id: made.length, calls: [], failNext: false };
    made.push(me);
    const send = async (what: string): Promise<never[]> => {
      log.push(`start ${what} on ${String(me.id)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      log.push(`end ${what} on ${String(me.id)}`);
      if (me.failNext) {
        me.failNext = false;
        throw new Error('request timed out');
      }
      return [];
    };
    return {
      connect: () => { me.calls.push('connect'); return Promise.resolve(); },
      disconnect: () => { me.calls.push('disconnect'); return Promise.resolve(); },
      send: (record: { topic: string }) => send(record.topic),
      sendBatch: (batch: { topicMessages?: { topic: string }[] }) => send(batch.topicMessages?.[0]?.topic ?? ''),
      events: {},
    } as unknown as Producer;
  };
  return { kafka: { producer } as unknown as Kafka, made, log };
}

describe('createIdempotentProducer', () => {
  it('runs sends one at a time', async () => {
    const { kafka, log } = standInKafka();
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    await Promise.all([
      producer.send({ topic: 'a', messages: [] }),
      producer.sendBatch({ topicMessages: [{ topic: 'b', messages: [] }] }),
      producer.send({ topic: 'c', messages: [] }),
    ]);
    expect(log).toEqual(['start a on 0', 'end a on 0', 'start b on 0', 'end b on 0', 'start c on 0', 'end c on 0']);
  });

  it('sends on a new producer after a send failed, and on the same one after a success', async () => {
    const { kafka, made, log } = standInKafka();
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    made[0]!.failNext = true;
    const failed = producer.send({ topic: 'a', messages: [] });
    const next = producer.send({ topic: 'b', messages: [] });
    await expect(failed).rejects.toThrow('request timed out');
    await next;
    await producer.send({ topic: 'c', messages: [] });
    expect(log).toEqual(['start a on 0', 'end a on 0', 'start b on 1', 'end b on 1', 'start c on 1', 'end c on 1']);
    expect(made.map((m) => m.calls)).toEqual([['connect', 'disconnect'], ['connect']]);
    await producer.disconnect();
    await expect(producer.send({ topic: 'd', messages: [] })).rejects.toThrow('disconnected');
  });
});
