/**
 * msgpipe's idempotent producer when a produce response is lost after the broker wrote the
 * batch (a request timeout, a broker killed after the write): kafkajs 2.2.4 takes back the
 * sequence numbers of the failed request, and a second send in flight on the same producer used
 * to reuse them. With as many records it was acknowledged as a duplicate of the first and never
 * written: one source's page lost while its cursor was saved.
 */
import { connect, type Socket } from 'node:net';

import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';

import { createIdempotentProducer, ensureTopics, ROLE_RETRY } from '../../../src/kafka/client.ts';
import { sendInChunks } from '../../../src/kafka/send.ts';
import { type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';

let broker: TestBroker;
useTestBroker((b) => {
  broker = b;
});

/** Produce (API key 0) requests whose response is to be dropped, when `dropNext` is set. */
interface Dropper {
  dropNext: boolean;
  dropped: number;
}

/** A kafkajs socket factory whose connections drop the response to a marked produce request. */
function droppingSockets(dropper: Dropper) {
  return ({ host, port, onConnect }: { host: string; port: number; onConnect: () => void }): Socket => {
    const socket = connect({ host, port }, onConnect);
    const drop = new Set<number>();
    const write = socket.write.bind(socket);
    socket.write = (chunk: Buffer): boolean => {
      // A request: size (4), api key (2), api version (2), correlation id (4). kafkajs writes
      // each request whole, in one call with no callback.
      if (dropper.dropNext && chunk.length >= 12 && chunk.readInt16BE(4) === 0) {
        dropper.dropNext = false;
        drop.add(chunk.readInt32BE(8));
      }
      return write(chunk);
    };
    let pending = Buffer.alloc(0);
    const emit = socket.emit.bind(socket) as (event: string, ...args: unknown[]) => boolean;
    socket.emit = ((event: string, ...args: unknown[]) => {
      if (event !== 'data') return emit(event, ...args);
      pending = Buffer.concat([pending, args[0] as Buffer]);
      // Responses: size (4), correlation id (4).
      while (pending.length >= 8 && pending.length >= 4 + pending.readInt32BE(0)) {
        const frame = pending.subarray(0, 4 + pending.readInt32BE(0));
        pending = pending.subarray(frame.length);
        if (drop.delete(frame.readInt32BE(4))) {
          dropper.dropped++;
          continue;
        }
        emit('data', Buffer.from(frame));
      }
      return true;
    }) as Socket['emit'];
    return socket;
  };
}

describe('idempotent producer', () => {
  it('loses no record of two sends in flight when the response to the first is lost', async () => {
    const dropper: Dropper = { dropNext: false, dropped: 0 };
    const kafka = new Kafka({
      brokers: broker.brokers,
      clientId: 'producer-test',
      logLevel: logLevel.NOTHING,
      requestTimeout: 1500,
      retry: ROLE_RETRY,
      socketFactory: droppingSockets(dropper),
    });
    const topic = uniqueTopic('lost-ack');
    const admin = kafka.admin();
    await admin.connect();
    const producer = createIdempotentProducer(kafka);
    try {
      await ensureTopics(admin, [{ topic, numPartitions: 1 }]);
      await producer.connect();
      await sendInChunks(producer, [{ topic, messages: [{ key: 'a:s1', value: 'warm-up' }] }], 1 << 20);
      dropper.dropNext = true;
      // Two sources' pages, one record each, on one partition.
      const first = sendInChunks(producer, [{ topic, messages: [{ key: 'a:s1', value: 'page of source a' }] }], 1 << 20);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const second = sendInChunks(producer, [{ topic, messages: [{ key: 'b:s9', value: 'page of source b' }] }], 1 << 20);
      await Promise.all([first, second]);
      expect(dropper.dropped).toBe(1);

      const [offsets] = await admin.fetchTopicOffsets(topic);
      const consumer = kafka.consumer({ groupId: `${topic}-g` });
      await consumer.connect();
      const values: string[] = [];
      try {
        await consumer.subscribe({ topic, fromBeginning: true });
        const end = Number(offsets?.high ?? 0);
        await new Promise<void>((resolve) => {
          void consumer.run({
            eachMessage: ({ message }) => {
              values.push(message.value?.toString() ?? '');
              if (Number(message.offset) + 1 >= end) resolve();
              return Promise.resolve();
            },
          });
        });
      } finally {
        await consumer.disconnect();
      }
      // Each page once: the first is resent under the same sequence (the broker drops the
      // copy), the second goes out after it.
      expect(values).toEqual(['warm-up', 'page of source a', 'page of source b']);
    } finally {
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    }
  }, 60_000);
});
