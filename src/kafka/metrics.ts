/**
 * Kafka series of the distributed mode, on the process's {@link Metrics} registry (DESIGN §8):
 *
 * - `msgpipe_kafka_consumer_lag{group,topic,partition}`: records on the partition after the
 *   group's committed offset, read from the broker at scrape time for the groups this process
 *   belongs to (every member of a group reports the same lag);
 * - `msgpipe_kafka_consumed_records_total{group,topic}`: records this process handled and
 *   committed (its throughput: `rate()` of it);
 * - `msgpipe_kafka_produced_records_total{topic}`: records this process produced and had
 *   acknowledged;
 * - `msgpipe_kafka_consumer_reconnects_total{group}`: attempts to connect again a consumer of
 *   this process that kafkajs ended for good (the broker away, or its member forgotten;
 *   src/kafka/consume.ts). A rate above zero for long means the group cannot join.
 */
import type { Logger } from 'pino';

import type { Metrics } from '../ops/metrics.ts';
import { createKafka, type Admin } from './client.ts';

/** A consumer group whose lag this process reports. */
export interface WatchedGroup {
  readonly groupId: string;
  readonly topics: readonly string[];
}

/** The counters the roles call; the lag gauge reads the broker itself. */
export interface KafkaMetrics {
  consumed(group: string, topic: string, records: number): void;
  produced(topic: string, records: number): void;
  reconnected(group: string): void;
  watchGroup(group: WatchedGroup): void;
  close(): Promise<void>;
}

/** Records each group has not committed, per topic and partition. */
export async function fetchLag(admin: Admin, group: WatchedGroup): Promise<{ topic: string; partition: number; lag: number }[]> {
  const out: { topic: string; partition: number; lag: number }[] = [];
  const committed = await admin.fetchOffsets({ groupId: group.groupId, topics: [...group.topics] });
  for (const topic of group.topics) {
    const ends = await admin.fetchTopicOffsets(topic);
    const offsets = committed.find((c) => c.topic === topic)?.partitions ?? [];
    for (const end of ends) {
      const at = offsets.find((p) => p.partition === end.partition)?.offset ?? '-1';
      const from = at === '-1' ? BigInt(end.low) : BigInt(at);
      out.push({ topic, partition: end.partition, lag: Number(BigInt(end.high) - from) });
    }
  }
  return out;
}

/** Registers the Kafka series on `metrics`; lag is read through a client of its own with short retries. */
export function registerKafkaMetrics(metrics: Metrics, brokers: readonly string[], log: Logger): KafkaMetrics {
  const groups: WatchedGroup[] = [];
  let admin: Admin | undefined;
  let connecting: Promise<Admin> | undefined;
  const connect = async (): Promise<Admin> => {
    if (admin !== undefined) return admin;
    connecting ??= (async () => {
      const kafka = createKafka({ brokers, clientId: 'msgpipe-metrics', logger: log, requestTimeout: 5000, retry: { retries: 1 } });
      const a = kafka.admin();
      await a.connect();
      admin = a;
      return a;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  };

  const consumed = metrics.counter({
    name: 'msgpipe_kafka_consumed_records_total',
    help: 'Records this process handled and committed, by consumer group and topic.',
    labelNames: ['group', 'topic'],
  });
  const produced = metrics.counter({
    name: 'msgpipe_kafka_produced_records_total',
    help: 'Records this process produced and the broker acknowledged, by topic.',
    labelNames: ['topic'],
  });
  const reconnects = metrics.counter({
    name: 'msgpipe_kafka_consumer_reconnects_total',
    help: 'Attempts to connect again a consumer of this process that kafkajs had ended, by consumer group.',
    labelNames: ['group'],
  });
  metrics.gauge({
    name: 'msgpipe_kafka_consumer_lag',
    help: 'Records after the committed offset of a consumer group this process belongs to, per partition.',
    labelNames: ['group', 'topic', 'partition'],
    async collect() {
      this.reset();
      if (groups.length === 0) return;
      try {
        const a = await connect();
        for (const group of groups) {
          for (const p of await fetchLag(a, group)) this.set({ group: group.groupId, topic: p.topic, partition: String(p.partition) }, p.lag);
        }
      } catch (err) {
        log.warn({ err }, 'Consumer lag could not be read from the broker.');
      }
    },
  });
  return {
    consumed: (group, topic, records) => { consumed.inc({ group, topic }, records); },
    produced: (topic, records) => { produced.inc({ topic }, records); },
    reconnected: (group) => { reconnects.inc({ group }); },
    watchGroup: (group) => { groups.push(group); },
    close: async () => {
      const a = admin;
      admin = undefined;
      if (a !== undefined) await a.disconnect();
    },
  };
}
