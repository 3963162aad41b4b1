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
import type { TransformedRecords } from '../ops/metrics.ts';
import type { Store } from '../sink/clickhouse.ts';
import { newSinkStats } from '../sink/writer.ts';
import { createKafka, ensureTopics, type Kafka, retryKafka, ROLE_RETRY } from './client.ts';
import { createSyncPublisher, startSyncListener, type SyncPublisher } from './control.ts';
import { type IngestStats, runKafkaIngest } from './ingest.ts';
import { StoppedDuringStartup, untilStopped } from './consume.ts';
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
  reconnected: () => undefined,
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

/** The upstream account of a source: appId, else wId, else Yunhu's userId, else its name. */
function accountOf(source: SourceConfig): string {
  const fields = source as Readonly<Record<string, unknown>>;
  for (const field of ['appId', 'wId', 'userId']) {
    const value = fields[field];
    if (typeof value === 'string') return value;
  }
  return source.name;
}

/**
 * Runs `stops` together, then `closes` one after another, each whatever the others did.
 *
 * @throws the first failure, after all ran
 */
async function stopAll(stops: readonly (() => Promise<void>)[], closes: readonly (() => Promise<void>)[]): Promise<void> {
  const failures: unknown[] = [];
  for (const result of await Promise.allSettled(stops.map((stop) => stop()))) if (result.status === 'rejected') failures.push(result.reason);
  for (const close of closes) {
    try {
      await close();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length > 0) throw failures[0];
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
  if (roles.includes('query') && options.startQuery !== undefined) ops?.readiness.require('query');
  const metrics = ops === undefined ? NO_METRICS : registerKafkaMetrics(ops.metrics, kafkaConfig.brokers, log.child({ component: 'kafka.metrics' }));
  const kafka = createKafka({
    brokers: kafkaConfig.brokers,
    clientId: `msgpipe-${roles.join('+')}-${hostname()}-${process.pid}`,
    logger: log,
    retry: ROLE_RETRY,
  });
  // What a stop runs: first every role together (each drains what it holds, in its own time:
  // one role waiting on a broker that is away must not use up the others' drain time), then the
  // closes, in order.
  const stops: (() => Promise<void>)[] = [];
  const closes: (() => Promise<void>)[] = [() => metrics.close()];
  const failures: Promise<never>[] = [];
  let store: Store | undefined;
  let sync: SyncPublisher | undefined;
  let ingestStats: IngestStats | undefined;
  let transform: KafkaTransform | undefined;
  let sink: KafkaSink | undefined;
  let ingestDone: Promise<void> | undefined;
  // Stops the start-up and the ingest role on the stop signal, and also when another role of
  // this process failed.
  const halt = new AbortController();
  const onStop = (): void => { halt.abort(signal.reason); };
  if (signal.aborted) onStop();
  else signal.addEventListener('abort', onStop, { once: true });
  const step = <T>(work: Promise<T>, release?: (value: T) => Promise<unknown>): Promise<T> => untilStopped(work, halt.signal, release);
  // Each stop runs once, however often it is asked for.
  const addStop = (stop: () => Promise<void>): void => {
    let stopping: Promise<void> | undefined;
    stops.push(() => (stopping ??= stop()));
  };
  // A stop during start-up: the roles already started begin to drain at once, beside the role
  // still starting, which drains its own consumers before its start gives up. One after the
  // other (a sink's 20 s, then a transform's, with the broker away) they passed the deadline.
  const drainStarted = (): void => {
    for (const stop of stops) stop().catch(() => undefined);
  };
  halt.signal.addEventListener('abort', drainStarted, { once: true });
  try {
    const admin = kafka.admin();
    try {
      await step(admin.connect());
      // Any failure is tried again for 60 s: creating topics is idempotent, and while the broker
      // restarts kafkajs 2.2.4 can fail with its own TypeError (listTopics reading the metadata
      // of a request the dropped connection answered with nothing), not a retriable error.
      const specs = topicSpecs(topics, kafkaConfig.partitions);
      const { created } = await step(retryKafka(() => ensureTopics(admin, specs), log, 120, 500, () => true, halt.signal));
      if (created.length > 0) log.info({ created }, 'Kafka topics created.');
    } finally {
      await admin.disconnect().catch(() => undefined);
    }
    ops?.readiness.met('kafka');
    if (roles.includes('sink') || roles.includes('query')) {
      const opened = await step(options.openStore(), (s) => s.close());
      store = opened;
      closes.push(() => opened.close());
      ops?.readiness.met('store');
    }
    if (roles.includes('sink') && store !== undefined) {
      const group = `${topics.prefix}.sink`;
      const writerStats = newSinkStats();
      ops?.metrics.watchSink(writerStats);
      metrics.watchGroup({ groupId: group, topics: [topics.messages, topics.events, topics.dlq] });
      // Not a `step`: the stop waits for the consumers already started to drain their batches
      // in flight, which use the store closed after it.
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
        onReconnect: () => { metrics.reconnected(group); },
        ...(ops === undefined ? {} : { observer: ops.metrics.sinkObserver }),
        signal: halt.signal,
      });
      sink = running;
      failures.push(running.crashed);
      addStop(() => running.stop());
    }
    if (roles.includes('transform')) {
      const group = `${topics.prefix}.transform`;
      metrics.watchGroup({ groupId: group, topics: transformedTypes().map((t) => topics.raw(t)) });
      // Not a `step`, like the sink: its consumers drain into the producer it closes after them.
      const running = await startKafkaTransform({
        kafka,
        topics,
        consumers: kafkaConfig.consumers,
        sessionTimeoutMs: kafkaConfig.sessionTimeoutMs,
        log: log.child({ component: 'kafka.transform' }),
        onCommitted: (topic, _partition, _offset, records) => { metrics.consumed(group, topic, records); },
        onReconnect: () => { metrics.reconnected(group); },
        onProduced: (topic, records) => { metrics.produced(topic, records); },
        ...(ops === undefined ? {} : { onTransformed: (t: TransformedRecords) => { ops.metrics.transformed(t); } }),
        signal: halt.signal,
      });
      transform = running;
      failures.push(running.crashed);
      addStop(() => running.stop());
    }
    if (roles.includes('query')) {
      const publisher = await step(createSyncPublisher(kafka, topics), (p) => p.close());
      sync = publisher;
      let query: { close(): Promise<void> } | undefined;
      // The API first: requests in flight finish while the store and the publisher are open.
      addStop(async () => {
        await query?.close();
        await publisher.close();
      });
      if (options.startQuery !== undefined && store !== undefined) {
        query = await step(options.startQuery(store, publisher), (q) => q.close());
        ops?.readiness.met('query');
      }
    }
    if (roles.includes('ingest') && config.sources.length === 0) {
      log.warn('No sources configured: the ingest role has nothing to poll and is not started.');
    } else if (roles.includes('ingest')) {
      const wakeups = new Wakeups();
      const listener = await step(startSyncListener(kafka, topics, wakeups, log.child({ component: 'kafka.control' })), (l) => l.stop());
      addStop(() => listener.stop());
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
    await stopAll(stops, closes).catch(() => undefined);
    if (!(err instanceof StoppedDuringStartup)) throw err;
    // The roles already started drained in their cleanups; the others never fetched anything.
    log.info('Stopped during start-up; the roles already started were stopped.');
    return { kafka, topics, store: undefined, sync: undefined, ingest: undefined, transform: undefined, sink: undefined, done: Promise.resolve() };
  }
  halt.signal.removeEventListener('abort', drainStarted);
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
    // Every role stops, side by side: ingest drains its pages and cursors, the consumers their
    // batches in flight (stored or produced, then committed) as they leave.
    halt.abort(fatal ?? signal.reason);
    try {
      await stopAll([...(ingestDone === undefined ? [] : [() => ingestDone]), ...stops], closes);
    } catch (err) {
      fatal ??= err;
    }
    if (fatal !== undefined) throw fatal instanceof Error ? fatal : new Error('Distributed run failed.', { cause: fatal });
  })();
  return { kafka, topics, store, sync, ingest: ingestStats, transform, sink, done };
}
