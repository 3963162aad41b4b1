/**
 * The Kafka sink's queue gauge on a real broker and a real chDB store: while the store holds an
 * insert, `msgpipe_sink_queue_rows` counts the rows the sink took from the topics and has not
 * stored; once the insert goes through it falls back to zero and the rows are in `messages`.
 */

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import type { Kafka } from '../../../src/kafka/client.ts';
import { startKafkaSink } from '../../../src/kafka/sink.ts';
import { topicNames, topicSpecs } from '../../../src/kafka/topics.ts';
import { Metrics } from '../../../src/ops/metrics.ts';
import { wrapStore } from '../../../src/sink/clickhouse.ts';
import { newSinkStats } from '../../../src/sink/writer.ts';
import { createTopics, produceTextMessages, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { parseMetrics, sampleValue } from '../../helpers/metrics.ts';
import { waitFor } from '../../helpers/msgpipe.ts';
import { openTempStore } from '../../unit/sink/helpers.ts';

let kafka: Kafka;
useTestBroker((_broker, k) => {
  kafka = k;
});

const log = pino({ level: 'warn' });

describe('kafka sink queue gauge', () => {
  it('counts the rows taken from the topics and not yet stored, and returns to zero once they are', async () => {
    const topics = topicNames(uniqueTopic('queue'));
    await createTopics(kafka, topicSpecs(topics, 1));

    const temp = await openTempStore();
    const inner = temp.store;
    try {
      // The store holds every insert into `messages` until the test lets it go.
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      let held = 0;
      const store = wrapStore(inner, {
        insert: async (table, rows, options) => {
          if (table === 'messages') {
            held += 1;
            await gate;
          }
          return inner.insert(table, rows, options);
        },
      });

      const rows = await produceTextMessages(kafka, topics.messages, 25, 'queued');

      const writerStats = newSinkStats();
      const metrics = new Metrics({ defaultMetrics: false });
      metrics.watchSink(writerStats);
      const queueRows = async (): Promise<number> => sampleValue(parseMetrics(await metrics.text()), 'msgpipe_sink_queue_rows');
      expect(await queueRows()).toBe(0);

      const sink = await startKafkaSink({ kafka, topics, store, consumers: 1, partitions: 1, sessionTimeoutMs: 10_000, log, writerStats });
      try {
        await waitFor(() => held > 0, 60_000, 'the sink to start its insert into messages');
        // Every record is fetched before the insert starts; they are all held now.
        expect(await queueRows()).toBe(rows.length);
        release();
        await waitFor(async () => (await queueRows()) === 0, 60_000, 'the queue gauge to fall back to zero');
        const stored = await inner.query<{ n: string }>('SELECT toString(count()) AS n FROM messages');
        expect(stored[0]?.n).toBe(String(rows.length));
      } finally {
        release();
        await sink.stop();
      }
    } finally {
      await temp.dispose();
    }
  });
});
