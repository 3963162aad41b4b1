/**
 * The Kafka client: the only module that imports kafkajs (DESIGN.md §4). Everything else gets
 * Kafka objects and their types from here, so the client library can be swapped in one place.
 */
import kafkajs, { Kafka, logLevel } from 'kafkajs';
import type { Admin, ICustomPartitioner, KafkaConfig, LogEntry, Producer, ProducerConfig, RetryOptions } from 'kafkajs';
import type { Logger } from 'pino';

import { installRecordEncoding } from './record-encoding.ts';

export type {
  Admin,
  Consumer,
  ConsumerConfig,
  ConsumerRunConfig,
  EachBatchPayload,
  Kafka,
  Message,
  Producer,
  ProducerConfig,
  RecordMetadata,
} from 'kafkajs';

/** The retries of the role processes' client: they ride out a broker restart (tens of seconds). */
export const ROLE_RETRY: RetryOptions = { retries: 60, initialRetryTime: 300, maxRetryTime: 5_000 };

/** What {@link createKafka} needs. */
export interface KafkaClientOptions {
  /** Bootstrap brokers as `host:port`. */
  readonly brokers: readonly string[];
  /** The client id brokers see (quotas, request logs). */
  readonly clientId: string;
  /** kafkajs logs go to a child of this logger with `component: 'kafka'`. */
  readonly logger: Logger;
  /** Connection timeout in milliseconds (kafkajs default 1000). */
  readonly connectionTimeout?: number;
  /** Request timeout in milliseconds (kafkajs default 30000). */
  readonly requestTimeout?: number;
  /** Retry policy for connections and requests. */
  readonly retry?: RetryOptions;
}

/** A topic that {@link ensureTopics} creates when it is missing. */
export interface TopicSpec {
  readonly topic: string;
  readonly numPartitions: number;
  /** Defaults to 1 (single-node development brokers). */
  readonly replicationFactor?: number;
  /** Topic-level configuration, e.g. `{ 'cleanup.policy': 'compact' }`. */
  readonly config?: Readonly<Record<string, string>>;
}

/** What {@link ensureTopics} found and did. */
export interface EnsureTopicsResult {
  /** Topics that were missing and are now created (by this call or a racing one). */
  readonly created: readonly string[];
  /** Topics that existed already (their settings are left as they are). */
  readonly existing: readonly string[];
}

/** The kafkajs level whose messages a pino logger at `level` would write. */
function kafkajsLevel(level: string): logLevel {
  switch (level) {
    case 'trace':
    case 'debug':
      return logLevel.DEBUG;
    case 'info':
      return logLevel.INFO;
    case 'warn':
      return logLevel.WARN;
    case 'silent':
      return logLevel.NOTHING;
    default:
      return logLevel.ERROR;
  }
}

/**
 * Creates a kafkajs client whose log entries go to `logger.child({ component: 'kafka' })`, with
 * the kafkajs namespace and the entry's extra fields as pino fields. The first call puts the
 * faster record encoding of ./record-encoding.ts in place.
 */
export function createKafka(options: KafkaClientOptions): Kafka {
  const log = options.logger.child({ component: 'kafka' });
  const encoding = installRecordEncoding();
  if (encoding === 'other-version' || encoding === 'bound') {
    log.debug({ encoding }, 'kafkajs encodes produced records itself (slower).');
  }
  const config: KafkaConfig = {
    brokers: [...options.brokers],
    clientId: options.clientId,
    logLevel: kafkajsLevel(log.level),
    logCreator: () => (entry: LogEntry) => {
      // `timestamp` duplicates pino's own time; `logger` is the kafkajs logger name.
      const { message, timestamp: _timestamp, logger: _logger, ...fields } = entry.log;
      const line = { ...fields, namespace: entry.namespace };
      switch (entry.level) {
        case logLevel.ERROR:
          log.error(line, message);
          break;
        case logLevel.WARN:
          log.warn(line, message);
          break;
        case logLevel.INFO:
          log.info(line, message);
          break;
        case logLevel.DEBUG:
          log.debug(line, message);
          break;
        case logLevel.NOTHING:
          break;
      }
    },
  };
  if (options.connectionTimeout !== undefined) config.connectionTimeout = options.connectionTimeout;
  if (options.requestTimeout !== undefined) config.requestTimeout = options.requestTimeout;
  if (options.retry !== undefined) config.retry = options.retry;
  return new Kafka(config);
}

/**
 * The Java client's murmur2 hash of a key (Kafka's `Utils.murmur2`), in 32-bit integer
 * arithmetic. kafkajs's own copy computes the same values through 64-bit `Long` objects, a few
 * allocations per key byte; in the transform role it cost more CPU than the protobuf encoding.
 */
export function murmur2(key: Uint8Array): number {
  const m = 0x5bd1e995;
  const length = key.length;
  let h = (0x9747b28c ^ length) | 0;
  const blocks = length & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k = (key[i] ?? 0) | ((key[i + 1] ?? 0) << 8) | ((key[i + 2] ?? 0) << 16) | ((key[i + 3] ?? 0) << 24);
    k = Math.imul(k, m);
    k ^= k >>> 24;
    k = Math.imul(k, m);
    h = Math.imul(h, m) ^ k;
  }
  // The last 1–3 bytes (the Java code's fall-through switch).
  const tail = length & 3;
  if (tail === 3) h ^= (key[blocks + 2] ?? 0) << 16;
  if (tail >= 2) h ^= (key[blocks + 1] ?? 0) << 8;
  if (tail >= 1) {
    h ^= key[blocks] ?? 0;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h;
}

/**
 * The Java client's default partitioning (and kafkajs's `DefaultPartitioner`): a keyed record
 * goes to `(murmur2(key) & 0x7fffffff) % partitions`, so a key maps to the same partition from
 * any client; a record without a key goes round robin over the partitions that have a leader.
 */
export const javaCompatiblePartitioner: ICustomPartitioner = () => {
  const counters = new Map<string, number>();
  return ({ topic, partitionMetadata, message }) => {
    // JavaScript callers may pass null as well as leave it out, as kafkajs's partitioner allows.
    const partition = message.partition as number | null | undefined;
    if (partition !== undefined && partition !== null) return partition;
    const { key } = message;
    if (key !== undefined && key !== null) {
      const bytes = typeof key === 'string' ? Buffer.from(key, 'utf8') : key;
      return (murmur2(bytes) & 0x7fffffff) % partitionMetadata.length;
    }
    const counter = (counters.get(topic) ?? Math.floor(Math.random() * 0x7fffffff)) + 1;
    counters.set(topic, counter);
    const available = partitionMetadata.filter((p) => p.leader >= 0);
    const pool = available.length > 0 ? available : partitionMetadata;
    return pool[(counter & 0x7fffffff) % pool.length]?.partitionId ?? 0;
  };
};

/**
 * An idempotent producer (acks=all, one request in flight so the broker's sequence checks hold)
 * with the Java client's murmur2 partitioner, so a key maps to the same partition from any
 * client.
 *
 * Its sends run one at a time, each with its retries, and after a send that failed the next one
 * goes out on a new producer (a new producer id). kafkajs 2.2.4 gives a partition's records
 * their sequence numbers when a request is made and takes them back when it fails; a request
 * whose response was lost (a timeout, a broker killed after the write) may still have been
 * written. The next request to that partition then reused those numbers, and when it held as
 * many records the broker took it for a duplicate of the written one and acknowledged it
 * without writing it: two sources' pages sent at once on one producer lost the second page
 * while its cursor was saved. A failed send now costs at most a duplicate (the consumers drop
 * those), never a record. `on` listeners do not carry over to a new producer; `transaction` is
 * not offered.
 */
export function createIdempotentProducer(kafka: Kafka, config: Omit<ProducerConfig, 'idempotent' | 'maxInFlightRequests'> = {}): Producer {
  const make = (): Producer =>
    kafka.producer({
      createPartitioner: javaCompatiblePartitioner,
      ...config,
      idempotent: true,
      maxInFlightRequests: 1,
    });
  let inner = make();
  let renew = false;
  let closed = false;
  // A function, not a read: `disconnect` may come during an await, which narrowing ignores.
  const isClosed = (): boolean => closed;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(send: (producer: Producer) => Promise<T>): Promise<T> => {
    const run = queue.then(async () => {
      if (closed) throw new KafkaClosedError();
      if (renew) {
        await inner.disconnect().catch(() => undefined);
        inner = make();
        await inner.connect();
        renew = false;
        if (isClosed()) {
          await inner.disconnect();
          throw new KafkaClosedError();
        }
      }
      try {
        return await send(inner);
      } catch (err) {
        renew = true;
        throw err;
      }
    });
    queue = run.catch(() => undefined);
    return run;
  };
  return {
    connect: () => inner.connect(),
    disconnect: () => {
      closed = true;
      return inner.disconnect();
    },
    send: (record) => serial((p) => p.send(record)),
    sendBatch: (batch) => serial((p) => p.sendBatch(batch)),
    isIdempotent: () => true,
    events: inner.events,
    on: (event, listener) => inner.on(event, listener),
    logger: () => inner.logger(),
    transaction: () => Promise.reject(new Error('msgpipe producers do not offer transactions.')),
  };
}

/** A send asked of a producer after its `disconnect`. */
class KafkaClosedError extends Error {
  constructor() {
    super('The producer was disconnected.');
    this.name = 'KafkaClosedError';
  }
}

/**
 * Creates the topics that do not exist yet and waits for their partition leaders. Topics that
 * exist are left unchanged. Safe to race with another process creating the same topics.
 *
 * @param admin a connected admin client
 */
export async function ensureTopics(admin: Admin, topics: readonly TopicSpec[]): Promise<EnsureTopicsResult> {
  const present = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !present.has(t.topic));
  if (missing.length > 0) {
    // kafkajs's own waitForLeaders retries only LEADER_NOT_AVAILABLE, while a KRaft broker also
    // answers UNKNOWN_TOPIC_OR_PARTITION for a moment after the creation: wait in awaitLeaders.
    await admin.createTopics({
      waitForLeaders: false,
      topics: missing.map((t) => ({
        topic: t.topic,
        numPartitions: t.numPartitions,
        replicationFactor: t.replicationFactor ?? 1,
        configEntries: Object.entries(t.config ?? {}).map(([name, value]) => ({ name, value })),
      })),
    });
  }
  if (missing.length > 0) await awaitLeaders(admin, missing);
  return {
    created: missing.map((t) => t.topic),
    existing: topics.filter((t) => present.has(t.topic)).map((t) => t.topic),
  };
}

/** How long {@link ensureTopics} waits for the partition leaders of the topics it creates. */
const LEADER_WAIT_MS = 30_000;

/**
 * Waits until every partition of `topics` has a leader, retrying the retriable metadata errors
 * a broker gives while it is still creating them.
 */
async function awaitLeaders(admin: Admin, topics: readonly TopicSpec[]): Promise<void> {
  const deadline = Date.now() + LEADER_WAIT_MS;
  const names = topics.map((t) => t.topic);
  for (;;) {
    let waitingFor: string;
    try {
      const { topics: found } = await admin.fetchTopicMetadata({ topics: names });
      const unled = found.filter((t) => t.partitions.length === 0 || t.partitions.some((p) => p.leader < 0));
      if (unled.length === 0) return;
      waitingFor = `no leader yet for ${unled.map((t) => t.name).join(', ')}`;
    } catch (err) {
      if (!isRetriableKafkaError(err)) throw err;
      waitingFor = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`Kafka topics ${names.join(', ')} have no partition leaders after ${LEADER_WAIT_MS} ms: ${waitingFor}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Whether kafkajs marks `err` retriable. */
export function isRetriableKafkaError(err: unknown): boolean {
  return err instanceof Error && (err as { retriable?: unknown }).retriable === true;
}

/**
 * Runs `fn` again while it fails with an error kafkajs marks retriable (a partition leader not
 * elected yet right after topic creation, a coordinator still loading after a broker restart),
 * waiting `waitMs` between attempts. Other errors, and the last one, are thrown, as is the error
 * of an attempt after `signal` aborted. `retriable` widens that for idempotent steps.
 */
export async function retryKafka<T>(
  fn: () => Promise<T>,
  log: Logger,
  attempts = 40,
  waitMs = 500,
  retriable: (err: unknown) => boolean = isRetriableKafkaError,
  signal?: AbortSignal,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (!retriable(err) || attempt >= attempts || signal?.aborted === true) throw err;
      log.warn({ err, attempt }, 'Kafka request failed with a retriable error; trying again.');
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/**
 * Through the default import: kafkajs is CommonJS, and Node's ES module loader sees only some of
 * its exports by name (not this enum); the built CLI did not load with it imported by name.
 */
const TOPIC_RESOURCE = kafkajs.ConfigResourceTypes.TOPIC;

/**
 * The values of config `names` of each of `topics`, as the broker applies them (the topic's own,
 * else the broker's default): topic → name → value.
 */
export async function topicConfigs(kafka: Kafka, topics: readonly string[], names: readonly string[]): Promise<Map<string, Map<string, string>>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: topics.map((name) => ({ type: TOPIC_RESOURCE, name, configNames: [...names] })),
    });
    return new Map(resources.map((r) => [r.resourceName, new Map(r.configEntries.map((e) => [e.configName, e.configValue]))]));
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * The smallest `max.message.bytes` of `topics`, or undefined when no topic reports one: the
 * largest record batch a producer may send to each of them.
 */
export async function smallestMessageLimit(kafka: Kafka, topics: readonly string[]): Promise<number | undefined> {
  let smallest: number | undefined;
  for (const config of (await topicConfigs(kafka, topics, ['max.message.bytes'])).values()) {
    const value = Number(config.get('max.message.bytes'));
    if (Number.isSafeInteger(value) && value > 0) smallest = Math.min(smallest ?? value, value);
  }
  return smallest;
}
