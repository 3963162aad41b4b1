/**
 * The Kafka series on a real broker: consumer lag read at scrape time follows the group's
 * committed offsets, and the throughput counters count what they are told.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { createIdempotentProducer, ensureTopics, type Kafka } from '../../../src/kafka/client.ts';
import { registerKafkaMetrics } from '../../../src/kafka/metrics.ts';
import { Metrics } from '../../../src/ops/metrics.ts';
import { type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { parseMetrics, sampleValue, sumSamples } from '../../helpers/metrics.ts';

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

describe('kafka metrics', () => {
  it('reports consumer lag per partition from the committed offsets, and throughput counters', async () => {
    const topic = uniqueTopic('lag');
    const groupId = uniqueTopic('group');
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopics(admin, [{ topic, numPartitions: 2 }]);
      const producer = createIdempotentProducer(kafka);
      await producer.connect();
      await producer.send({ topic, messages: [0, 0, 0, 1, 1].map((partition, i) => ({ partition, value: `v${i}` })) });
      await producer.disconnect();

      const metrics = new Metrics({ defaultMetrics: false });
      const km = registerKafkaMetrics(metrics, broker.brokers, pino({ level: 'silent' }));
      try {
        km.watchGroup({ groupId, topics: [topic] });
        let samples = parseMetrics(await metrics.text());
        // Nothing committed yet: everything is lag.
        expect(sampleValue(samples, 'msgpipe_kafka_consumer_lag', { group: groupId, topic, partition: '0' })).toBe(3);
        expect(sampleValue(samples, 'msgpipe_kafka_consumer_lag', { group: groupId, topic, partition: '1' })).toBe(2);

        await admin.setOffsets({ groupId, topic, partitions: [{ partition: 0, offset: '2' }, { partition: 1, offset: '2' }] });
        km.consumed(groupId, topic, 4);
        km.produced('out', 7);
        km.reconnected(groupId);
        km.reconnected(groupId);
        samples = parseMetrics(await metrics.text());
        expect(sampleValue(samples, 'msgpipe_kafka_consumer_lag', { group: groupId, topic, partition: '0' })).toBe(1);
        expect(sampleValue(samples, 'msgpipe_kafka_consumer_lag', { group: groupId, topic, partition: '1' })).toBe(0);
        expect(sumSamples(samples, 'msgpipe_kafka_consumed_records_total', { group: groupId })).toBe(4);
        expect(sampleValue(samples, 'msgpipe_kafka_produced_records_total', { topic: 'out' })).toBe(7);
        expect(sampleValue(samples, 'msgpipe_kafka_consumer_reconnects_total', { group: groupId })).toBe(2);
      } finally {
        await km.close();
      }
    } finally {
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    }
  });
});
