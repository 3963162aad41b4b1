/**
 * The distributed mode (`kafka.brokers` set): each role of `msgpipe run --role …` joins its
 * part of the pipeline through the topics of DESIGN §4. Any comma list of roles may run in one
 * process; processes of a role share the work through their consumer group (`<p>.transform`,
 * `<p>.sink`). The ingest role runs every configured source: split the sources between
 * configurations to run several ingest processes.
 */
import { hostname } from 'node:os';

import type { Logger } from 'pino';

import type { Config, SourceConfig } from '../core/config.ts';
import { type CursorUpdate, Wakeups } from '../core/pipeline.ts';
import { createSource } from '../ingest/registry.ts';
import type { OpsDeps } from '../ops/server.ts';
import type { Store } from '../sink/clickhouse.ts';
import { newSinkStats } from '../sink/writer.ts';
import { createKafka, ensureTopics, type Kafka, retryKafka } from './client.ts';
import { createSyncPublisher, startSyncListener, type SyncPublisher } from './control.ts';
import { type IngestStats, runKafkaIngest } from './ingest.ts';
import { type KafkaMetrics, registerKafkaMetrics } from './metrics.ts';
import { type KafkaSink, startKafkaSink } from './sink.ts';
import { topicNames, topicSpecs, type Topics } from './topics.ts';
import { type KafkaTransform, startKafkaTransform, transformedTypes } from './transform.ts';

export type DistributedRole = 'ingest' | 'transform' | 'sink' | 'query';

export interface DistributedOptions {
  readonly config: Config;
  readonly roles: readonly DistributedRole[];
  readonly log: Logger;
  readonly signal: AbortSignal;
  /** Opens the store for the sink (and query) role. */
  readonly openStore: () => Promise<Store>;
  /** Metrics and readiness of the process. */
  readonly ops?: OpsDeps;
  /**
   * Starts the query API of the query role over the store, with `sync` publishing to the
   * control topic. What it returns is closed on stop, before the store.
   */
  readonly startQuery?: (store: Store, sync: SyncPublisher) => Promise<{ close(): Promise<void> }>;
}

const NO_METRICS: KafkaMetrics = {
  consumed: () => undefined,
  produced: () => undefined,
  watchGroup: () => undefined,
  close: () => Promise.resolve(),
};

/** A running distributed process. */
export interface DistributedRun {
  readonly kafka: Kafka;
  readonly topics: Topics;
  /** The store, when this process holds the sink or query role. */
  readonly store: Store | undefined;
  /** Publishes sync requests to the control topic (query role). */
  readonly sync: SyncPublisher | undefined;
  readonly ingest: IngestStats | undefined;
  readonly transform: KafkaTransform | undefined;
  readonly sink: KafkaSink | undefined;
  /** Settles when every role has drained and stopped; rejects with the first fatal error. */
  readonly done: Promise<void>;
}

/** The upstream account of a source: appId, else wId, else its name. */
function accountOf(source: SourceConfig): string {
  const fields = source as Readonly<Record<string, unknown>>;
  for (const field of ['appId', 'wId']) {
    const value = fields[field];
    if (typeof value === 'string') return value;
  }
  return source.name;
}

/** Starts the roles and returns once they run; they stop when `signal` aborts. */
export async function startDistributed(options: DistributedOptions): Promise<DistributedRun> {
  const { config, roles, log, signal, ops } = options;
  const kafkaConfig = config.kafka;
  if (kafkaConfig === undefined) throw new Error('startDistributed needs kafka.brokers.');
  const topics = topicNames(kafkaConfig.topicPrefix);
  ops?.readiness.require('kafka');
  if (roles.includes('sink') || roles.includes('query')) ops?.readiness.require('store');
  if (roles.includes('sink') || roles.includes('transform')) ops?.readiness.require('consumers');
  if (roles.includes('ingest') && config.sources.length > 0) ops?.readiness.require('sources');
  const metrics = ops === undefined ? NO_METRICS : registerKafkaMetrics(ops.metrics, kafkaConfig.brokers, log.child({ component: 'kafka.metrics' }));
  const kafka = createKafka({
    brokers: kafkaConfig.brokers,
    clientId: `msgpipe-${roles.join('+')}-${hostname()}-${process.pid}`,
    logger: log,
    // Ride out a broker restart (tens of seconds) instead of failing the role.
    retry: { retries: 60, initialRetryTime: 300, maxRetryTime: 5_000 },
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    // Any failure is tried again for 60 s: creating topics is idempotent, and while the broker
    // restarts kafkajs 2.2.4 can fail with its own TypeError (listTopics reading the metadata
    // of a request the dropped connection answered with nothing), not a retriable error.
    const { created } = await retryKafka(() => ensureTopics(admin, topicSpecs(topics, kafkaConfig.partitions)), log, 120, 500, () => true);
    if (created.length > 0) log.info({ created }, 'Kafka topics created.');
  } finally {
    await admin.disconnect();
  }
  ops?.readiness.met('kafka');

  const cleanups: (() => Promise<void>)[] = [() => metrics.close()];
  const failures: Promise<never>[] = [];
  let store: Store | undefined;
  let sync: SyncPublisher | undefined;
  let ingestStats: IngestStats | undefined;
  let transform: KafkaTransform | undefined;
  let sink: KafkaSink | undefined;
  let ingestDone: Promise<void> | undefined;
  // Stops the ingest role on the stop signal, and also when another role of this process failed.
  const halt = new AbortController();
  const onStop = (): void => { halt.abort(signal.reason); };
  if (signal.aborted) onStop();
  else signal.addEventListener('abort', onStop, { once: true });
  try {
    if (roles.includes('sink') || roles.includes('query')) {
      store = await options.openStore();
      const opened = store;
      cleanups.push(() => opened.close());
      ops?.readiness.met('store');
    }
    if (roles.includes('sink') && store !== undefined) {
      const group = `${topics.prefix}.sink`;
      const writerStats = newSinkStats();
      ops?.metrics.watchSink(writerStats);
      metrics.watchGroup({ groupId: group, topics: [topics.messages, topics.events, topics.dlq] });
      const running = await startKafkaSink({
        kafka,
        topics,
        store,
        consumers: kafkaConfig.consumers,
        partitions: kafkaConfig.partitions,
        sessionTimeoutMs: kafkaConfig.sessionTimeoutMs,
        log: log.child({ component: 'kafka.sink' }),
        writerStats,
        onCommitted: (topic, _partition, _offset, records) => { metrics.consumed(group, topic, records); },
        ...(ops === undefined ? {} : { observer: ops.metrics.sinkObserver }),
      });
      sink = running;
      failures.push(running.crashed);
      cleanups.unshift(() => running.stop());
    }
    if (roles.includes('transform')) {
      const group = `${topics.prefix}.transform`;
      metrics.watchGroup({ groupId: group, topics: transformedTypes().map((t) => topics.raw(t)) });
      const running = await startKafkaTransform({
        kafka,
        topics,
        consumers: kafkaConfig.consumers,
        sessionTimeoutMs: kafkaConfig.sessionTimeoutMs,
        log: log.child({ component: 'kafka.transform' }),
        onCommitted: (topic, _partition, _offset, records) => { metrics.consumed(group, topic, records); },
        onProduced: (topic, records) => { metrics.produced(topic, records); },
      });
      transform = running;
      failures.push(running.crashed);
      cleanups.unshift(() => running.stop());
    }
    if (roles.includes('query')) {
      const publisher = await createSyncPublisher(kafka, topics);
      sync = publisher;
      cleanups.unshift(() => publisher.close());
      if (options.startQuery !== undefined && store !== undefined) {
        const query = await options.startQuery(store, publisher);
        // Closed first: requests in flight finish while the store and the publisher are open.
        cleanups.unshift(() => query.close());
      }
    }
    if (roles.includes('ingest') && config.sources.length === 0) {
      log.warn('No sources configured: the ingest role has nothing to poll and is not started.');
    } else if (roles.includes('ingest')) {
      const wakeups = new Wakeups();
      const listener = await startSyncListener(kafka, topics, wakeups, log.child({ component: 'kafka.control' }));
      cleanups.unshift(() => listener.stop());
      const stats: IngestStats = { records: 0, pages: 0, deadLetters: 0, cursorsCommitted: 0 };
      ingestStats = stats;
      const accounts = new Map(config.sources.map((s) => [s.name, accountOf(s)]));
      const sources = config.sources.map((s) => createSource(s));
      ops?.metrics.watchSources(sources);
      const running = runKafkaIngest(
        {
          kafka,
          topics,
          sources,
          accounts,
          wakeups,
          signal: halt.signal,
          log: log.child({ component: 'kafka.ingest' }),
          onProduced: (topic, records) => { metrics.produced(topic, records); },
          ...(ops === undefined ? {} : { onCursors: (cursors: readonly CursorUpdate[]) => { ops.metrics.cursorsSaved(cursors); } }),
        },
        stats,
      );
      running.catch(() => undefined);
      ingestDone = running;
    }
  } catch (err) {
    signal.removeEventListener('abort', onStop);
    halt.abort(err);
    for (const cleanup of cleanups) await cleanup().catch(() => undefined);
    throw err;
  }
  if (sink !== undefined || transform !== undefined) ops?.readiness.met('consumers');
  if (ingestDone !== undefined) ops?.readiness.met('sources');

  const done = (async () => {
    let fatal: unknown;
    const stopped = new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => { resolve(); }, { once: true });
    });
    // Only a failure ends the run early: ingest failing (its normal end is the stop signal,
    // and a process without sources never started it) or a consumer crashing.
    const ingestFailed = ingestDone?.then(() => new Promise<never>(() => undefined));
    try {
      await Promise.race([stopped, ...(ingestFailed === undefined ? [] : [ingestFailed]), ...failures]);
    } catch (err) {
      fatal = err;
      log.error({ err }, 'A role failed; stopping this process.');
    }
    signal.removeEventListener('abort', onStop);
    // The other roles of this process stop too (ingest drains its pages and cursors first).
    halt.abort(fatal ?? signal.reason);
    try {
      await ingestDone;
    } catch (err) {
      fatal ??= err;
    }
    // Consumers drain their batches in flight (stored or produced, then committed) as they leave.
    for (const cleanup of cleanups) {
      try {
        await cleanup();
      } catch (err) {
        fatal ??= err;
      }
    }
    if (fatal !== undefined) throw fatal instanceof Error ? fatal : new Error('Distributed run failed.', { cause: fatal });
  })();
  return { kafka, topics, store, sync, ingest: ingestStats, transform, sink, done };
}
