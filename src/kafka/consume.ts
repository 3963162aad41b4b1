/**
 * The consumer loop shared by the transform and sink roles: a consumer group on eachBatch with
 * manual offsets. A handler gets one partition's batch of contiguous records and resolves once
 * the next hop accepted them; only then is the offset after its last record committed. A
 * handler that throws leaves the offset where it was, and the records come again (to this or
 * another member of the group).
 *
 * kafkajs waits for the running batch before it leaves the group on `disconnect()` and before
 * it rejoins on a rebalance, so partitions are handed over only after their in-flight batch
 * was stored and committed.
 */
import type { Logger } from 'pino';

import { type Consumer, type ConsumerRunConfig, type EachBatchPayload, type Kafka, retryKafka } from './client.ts';

/** One partition's records, in offset order, as a handler sees them. */
export interface PartitionBatch {
  readonly topic: string;
  readonly partition: number;
  readonly messages: EachBatchPayload['batch']['messages'];
  /** The offset of the first and of the last record, decimal. */
  readonly firstOffset: string;
  readonly lastOffset: string;
  /** Keeps the group membership alive during long work (the loop also heartbeats on a timer). */
  heartbeat(): Promise<void>;
  /**
   * Aborts when this member lost (or is about to lose) the partition: it was evicted from the
   * group, the generation moved on, or a rebalance waited too long for this batch. A handler
   * stops retrying then; its offsets are not committed and the new owner takes the records.
   */
  readonly signal: AbortSignal;
}

/**
 * Thrown by a handler for a batch it did not store because work it was shared with was given up
 * (another partition of the same group was lost): the batch is not committed and its records
 * come again with the next fetch. Not a failure of the consumer.
 */
export class BatchAbandonedError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'BatchAbandonedError';
  }
}

/** How long `stop()` waits for the batches in flight to be handled and committed. */
const DRAIN_MS = 20_000;
/** Least time a consumer gets to leave its group once the drain is over (a broker that is up answers in milliseconds). */
const LEAVE_MIN_MS = 2_000;

/**
 * How long a consumer that lost the broker keeps connecting again without joining its group:
 * the first attempt that fails after it fails the role. A broker restart takes tens of seconds
 * (scripts/kafka.sh allows 60 s). One attempt retries as long as the client's retries allow
 * (about 5 minutes for the role processes, ROLE_RETRY), so a broker that stays away fails the
 * role within about 7 minutes; when kafkajs restarts the consumer itself instead, within about
 * 10 (RESTARTED_CRASH_WINDOW_MS).
 */
const RECONNECT_WINDOW_MS = 120_000;
const RECONNECT_MAX_DELAY_MS = 5_000;

/**
 * A crash kafkajs restarts the consumer from comes after the client's retries ran out (about 5
 * minutes for the role processes): a broker that stays away, a topic that was deleted. A second
 * one within this window with no batch handled in between fails the role, for its supervisor to
 * start it again (which creates missing topics); kafkajs alone would restart it for ever.
 */
const RESTARTED_CRASH_WINDOW_MS = 15 * 60_000;

/**
 * Errors kafkajs does not restart a consumer after, though they end when the broker answers
 * again: it finds no group coordinator while every broker refuses connections (kafkajs#1630),
 * or a connection fails below a non-retriable wrapper.
 */
const CURED_BY_RECONNECT = new Set([
  'KafkaJSGroupCoordinatorNotFound',
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
  'KafkaJSRequestTimeoutError',
]);

/**
 * Group errors a new join cures. kafkajs rejoins on them where it meets them itself, but one
 * that reaches it wrapped by a retrier ends the consumer: a broker killed and started again no
 * longer knows the member (UNKNOWN_MEMBER_ID on the next offset commit).
 */
const CURED_BY_REJOIN = new Set([
  'UNKNOWN_MEMBER_ID',
  'ILLEGAL_GENERATION',
  'REBALANCE_IN_PROGRESS',
  'NOT_COORDINATOR_FOR_GROUP',
  'GROUP_COORDINATOR_NOT_AVAILABLE',
  'GROUP_LOAD_IN_PROGRESS',
]);

/** kafkajs error types that mean this member no longer owns its partitions. */
const LOST = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'FENCED_INSTANCE_ID']);

function errorType(err: unknown): string | undefined {
  const type = (err as { type?: unknown } | null)?.type;
  return typeof type === 'string' ? type : undefined;
}

/** The error and its causes (kafkajs wraps what its retrier gave up on), outermost first. */
function causes(error: unknown): Error[] {
  const chain: Error[] = [];
  for (let e = error; e instanceof Error && chain.length < 10; e = e.cause) chain.push(e);
  return chain;
}

/** Whether the error or one of its causes is one a reconnect and a new join cure. */
export function curedByReconnect(error: unknown): boolean {
  return causes(error).some((e) => CURED_BY_RECONNECT.has(e.name) || CURED_BY_REJOIN.has(errorType(e) ?? ''));
}

/**
 * Group errors kafkajs's runner answers with a new join at once when they reach it unwrapped
 * from a batch handler (kafkajs src/consumer/runner.js); wrapped by a retrier they end the
 * consumer instead.
 */
const REJOIN_AT_ONCE = new Set(['UNKNOWN_MEMBER_ID', 'ILLEGAL_GENERATION', 'REBALANCE_IN_PROGRESS', 'NOT_COORDINATOR_FOR_GROUP']);

/**
 * For an offset commit the group refused because it moved on without this member: the kafkajs
 * error to throw from the handler so kafkajs rejoins at once (undefined: none to throw, the
 * batch is just left), or `false` for any other failure.
 */
function refusedCommit(error: unknown): Error | undefined | false {
  const chain = causes(error);
  const rejoin = chain.find((e) => REJOIN_AT_ONCE.has(errorType(e) ?? ''));
  if (rejoin !== undefined) return rejoin;
  return chain.some((e) => LOST.has(errorType(e) ?? '')) ? undefined : false;
}

/** Resolves when `promise` settles (true) or after `ms` (false), whichever comes first. */
export async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    promise.then(
      () => true,
      () => true,
    ),
    new Promise<false>((resolve) => {
      timer = setTimeout(() => {
        resolve(false);
      }, ms);
    }),
  ]);
  clearTimeout(timer);
  return settled;
}

/** Watches a running consumer for crashes; see {@link superviseConsumer}. */
export interface CrashSupervisor {
  /** Rejects when the consumer crashed for good. */
  readonly crashed: Promise<never>;
  /**
   * No reconnect from now on; resolves once an attempt under way has settled, so the owner
   * does not stop the consumer while kafkajs starts a run (a run stopped before it joined goes
   * on joining, out of the consumer's reach).
   */
  stop(): Promise<void>;
}

/**
 * Keeps a consumer running through what kafkajs gives up on: a crash it does not restart from,
 * though the broker coming back cures it (a broker going down while the member rejoins its
 * group, kafkajs#1630), is met with connect and run again, backing off, until the member joins
 * or an attempt fails after RECONNECT_WINDOW_MS without a join. A crash kafkajs restarts from is
 * left to kafkajs, unless it is the second within RESTARTED_CRASH_WINDOW_MS with no batch handled
 * in between. Other crashes reject `crashed`.
 */
export function superviseConsumer(
  consumer: Consumer,
  runConfig: ConsumerRunConfig,
  log: Logger,
  onReconnect?: () => void,
  /** Whether crashes kafkajs restarts from can fail it (not for a consumer the role can do without). */
  restartsFail = true,
): CrashSupervisor {
  let stopped = false;
  let crashesSince: number | undefined;
  let timer: NodeJS.Timeout | undefined;
  let attempt: Promise<void> | undefined;
  let rejectCrash: (err: Error) => void = () => undefined;
  const crashed = new Promise<never>((_resolve, reject) => {
    rejectCrash = reject;
  });
  crashed.catch(() => undefined);
  let restartedAt: number | undefined;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    crashesSince = undefined;
  });
  consumer.on(consumer.events.END_BATCH_PROCESS, () => {
    restartedAt = undefined;
  });
  consumer.on(consumer.events.CRASH, (event) => {
    const { error, restart } = event.payload;
    if (restart) restartedFor(error);
    else crashedFor(error);
  });
  function restartedFor(error: Error): void {
    if (stopped) return;
    const now = Date.now();
    if (restartsFail && restartedAt !== undefined && now - restartedAt < RESTARTED_CRASH_WINDOW_MS) {
      log.error({ err: error }, 'Consumer failed again after kafkajs restarted it, with no batch handled in between; the role stops.');
      rejectCrash(error);
      return;
    }
    restartedAt = now;
    log.warn({ err: error }, 'Consumer failed; kafkajs restarts it.');
  }
  function crashedFor(error: Error): void {
    if (stopped) return;
    const now = Date.now();
    crashesSince ??= now;
    if (!curedByReconnect(error) || now - crashesSince >= RECONNECT_WINDOW_MS) {
      log.error({ err: error }, 'Consumer crashed and will not restart.');
      rejectCrash(error);
      return;
    }
    const delay = Math.min(RECONNECT_MAX_DELAY_MS, 500 + (now - crashesSince) / 4);
    log.warn({ err: error, retryInMs: Math.round(delay) }, 'Consumer lost the broker; connecting again.');
    timer = setTimeout(() => {
      timer = undefined;
      if (stopped) return;
      onReconnect?.();
      // A join that fails again comes back as another CRASH event, a failed connect here.
      // The owner may stop it while it connects: leave it disconnected then.
      attempt = consumer
        .connect()
        .then(() => (stopped ? consumer.disconnect() : consumer.run(runConfig)))
        .catch((err: unknown) => {
          crashedFor(err instanceof Error ? err : new Error(String(err)));
        })
        .finally(() => {
          attempt = undefined;
        });
    }, delay);
  }
  return {
    crashed,
    stop() {
      stopped = true;
      clearTimeout(timer);
      return attempt ?? Promise.resolve();
    },
  };
}

export interface ConsumerLoopOptions {
  readonly kafka: Kafka;
  readonly groupId: string;
  readonly topics: readonly string[];
  readonly log: Logger;
  /** Most records handed to one handler call. */
  readonly maxRecords: number;
  /** Bytes a fetch takes from one partition (default 4 MiB). */
  readonly maxBytesPerPartition?: number;
  /** Bytes a fetch takes over all partitions (default 16 MiB). */
  readonly maxBytes?: number;
  /**
   * Partition batches handled at once (kafkajs `partitionsConsumedConcurrently`, default 1).
   * Batches of one partition still come one after another.
   */
  readonly concurrency?: number;
  /**
   * Bytes the broker waits for before it answers a fetch (at most 250 ms; default 1): larger
   * batches per fetch for a handler whose cost is mostly per call.
   */
  readonly minBytes?: number;
  /** Group session timeout, ms (heartbeats every third of it). */
  readonly sessionTimeoutMs: number;
  readonly handle: (batch: PartitionBatch) => Promise<void>;
  /** Called after an offset was committed, with the records it covered. */
  readonly onCommitted?: (topic: string, partition: number, offset: string, records: number) => void;
  /** Called when the loop connects a consumer kafkajs had ended again (metrics). */
  readonly onReconnect?: () => void;
}

/**
 * A started consumer; `stop()` lets the batches in flight finish and commit (for at most 20 s),
 * then leaves the group.
 */
export interface ConsumerLoop {
  readonly consumer: Consumer;
  /** Rejects when the consumer crashed without restarting itself. */
  readonly crashed: Promise<never>;
  stop(): Promise<void>;
}

/** The rejection of a start-up step cut short by the stop signal. */
export class StoppedDuringStartup extends Error {
  constructor() {
    super('Stopped during start-up.');
    this.name = 'StoppedDuringStartup';
  }
}

/**
 * `work`, or a {@link StoppedDuringStartup} rejection as soon as `signal` aborts: a start-up
 * step waiting for an unreachable broker (kafkajs retries for minutes) must not hold a stop.
 * What `work` yields after that is handed to `release`. Without a signal, `work` itself.
 */
export function untilStopped<T>(work: Promise<T>, signal: AbortSignal | undefined, release?: (value: T) => Promise<unknown>): Promise<T> {
  if (signal === undefined) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(new StoppedDuringStartup());
      work.then((value) => release?.(value)).catch(() => undefined);
    };
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/**
 * Starts `count` consumer loops one after another (a loop joins the group only once the loops
 * before it rejoined, which waits for their batches in flight). On `signal` it stops the loops
 * already started, each draining its batches in flight, then rejects with
 * {@link StoppedDuringStartup}: what owns the store or the producer those batches use closes it
 * only after this settles. A loop still starting is stopped once it has started.
 */
export async function startConsumerLoops(count: number, start: (index: number) => Promise<ConsumerLoop>, signal?: AbortSignal): Promise<ConsumerLoop[]> {
  const loops: ConsumerLoop[] = [];
  try {
    for (let i = 0; i < count; i++) {
      if (signal?.aborted === true) throw new StoppedDuringStartup();
      loops.push(await untilStopped(start(i), signal, (loop) => loop.stop()));
    }
  } catch (err) {
    await Promise.allSettled(loops.map((l) => l.stop()));
    throw err;
  }
  return loops;
}

/** Joins the group and starts handling batches. */
export async function startConsumerLoop(options: ConsumerLoopOptions): Promise<ConsumerLoop> {
  const { kafka, log } = options;
  const heartbeatInterval = Math.floor(options.sessionTimeoutMs / 3);
  const rebalanceTimeout = 60_000;
  const consumer = kafka.consumer({
    groupId: options.groupId,
    allowAutoTopicCreation: false,
    maxBytesPerPartition: options.maxBytesPerPartition ?? 4 * 1024 * 1024,
    maxBytes: options.maxBytes ?? 16 * 1024 * 1024,
    maxWaitTimeInMs: 250,
    minBytes: options.minBytes ?? 1,
    sessionTimeout: options.sessionTimeoutMs,
    rebalanceTimeout,
    heartbeatInterval,
  });
  let stopping = false;
  await consumer.connect();
  try {
    // kafkajs retries a metadata request that meets a leader election but gives up at once on a
    // broker that closes the connection: a process starting while the broker restarts would
    // exit. 120 × 500 ms covers a broker restart (scripts/kafka.sh allows 60 s for a start).
    await retryKafka(() => consumer.subscribe({ topics: [...options.topics], fromBeginning: true }), log, 120);
  } catch (err) {
    await consumer.disconnect().catch(() => undefined);
    throw err;
  }
  let inFlight = 0;
  let drained: (() => void) | undefined;
  const runConfig: ConsumerRunConfig = {
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: options.concurrency ?? 1,
    eachBatch: async (payload) => {
      if (stopping) return;
      inFlight += 1;
      try {
        await handleFetched(payload);
      } finally {
        inFlight -= 1;
        if (inFlight === 0) drained?.();
      }
    },
  };
  const supervisor = superviseConsumer(consumer, runConfig, log, options.onReconnect);
  await consumer.run(runConfig);

  async function handleFetched(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const heartbeat = (): Promise<void> => payload.heartbeat();
    const all = batch.messages;
    for (let start = 0; start < all.length; start += options.maxRecords) {
      if (!payload.isRunning() || payload.isStale() || (stopping && start > 0)) return;
      const messages = all.slice(start, start + options.maxRecords);
      const first = messages[0];
      const last = messages.at(-1);
      if (first === undefined || last === undefined) return;
      const lost = new AbortController();
      // kafkajs heartbeats only between batches: a handler storing for longer than the
      // session timeout would be evicted and its partition handed over mid-batch.
      let rebalancingSince: number | undefined;
      const beat = async (): Promise<void> => {
        try {
          await heartbeat();
          rebalancingSince = undefined;
        } catch (err) {
          const type = errorType(err);
          if (type !== undefined && LOST.has(type)) lost.abort(err);
          else if (type === 'REBALANCE_IN_PROGRESS') {
            // The group waits up to the rebalance timeout for this member to rejoin, which it
            // does once this batch returns; past half of it, give the partition up.
            rebalancingSince ??= Date.now();
            if (Date.now() - rebalancingSince > rebalanceTimeout / 2) lost.abort(err);
          } else log.warn({ err }, 'Heartbeat during a batch failed.');
        }
      };
      // Four times per interval: kafkajs sends a heartbeat only once `heartbeatInterval` has
      // passed since the last one's response, so ticking at the interval itself skipped every
      // other tick (a heartbeat every 2 intervals, 2/3 of the default session timeout); now one
      // goes out at most a quarter interval late.
      const timer = setInterval(() => { void beat(); }, Math.max(50, heartbeatInterval / 4));
      let abandoned = false;
      try {
        await options.handle({
          topic: batch.topic,
          partition: batch.partition,
          messages,
          firstOffset: first.offset,
          lastOffset: last.offset,
          heartbeat,
          signal: lost.signal,
        });
      } catch (err) {
        abandoned = err instanceof BatchAbandonedError;
        if (!lost.signal.aborted && !abandoned) throw err;
      } finally {
        clearInterval(timer);
      }
      if (abandoned && !lost.signal.aborted && !payload.isStale()) {
        // Not stored, not committed, not resolved: the next fetch brings these records again.
        log.warn({ topic: batch.topic, partition: batch.partition, firstOffset: first.offset }, 'Batch given up with its group; fetching it again.');
        return;
      }
      // Another member owns the partition now (or will): it takes these records again.
      if (lost.signal.aborted || payload.isStale()) {
        log.warn({ topic: batch.topic, partition: batch.partition, firstOffset: first.offset }, 'Partition lost during a batch; its offsets are left to the new owner.');
        return;
      }
      const next = (BigInt(last.offset) + 1n).toString();
      try {
        await consumer.commitOffsets([{ topic: batch.topic, partition: batch.partition, offset: next }]);
      } catch (err) {
        // The group moved on without this member (a broker restarted and forgot it, or a
        // rebalance began): the batch is handled but not committed, and the partition's next
        // owner takes it again. kafkajs's retrier hands the refusal over wrapped, which would end
        // the consumer: the kafkajs error itself goes to the runner, which rejoins at once.
        const refusal = refusedCommit(err);
        if (refusal === false) throw err;
        log.warn({ err, topic: batch.topic, partition: batch.partition, firstOffset: first.offset }, 'Partition lost before its offset commit; its records are left to the next owner.');
        if (refusal !== undefined) throw refusal;
        return;
      }
      // A consumer stopped meanwhile (a drain past its time) returns without committing.
      if (!payload.isRunning()) return;
      payload.resolveOffset(last.offset);
      options.onCommitted?.(batch.topic, batch.partition, next, messages.length);
      await heartbeat();
    }
  }

  /**
   * kafkajs's disconnect marks the consumer stopped before it waits for the batches in flight,
   * and a stopped consumer drops their commits: pause fetching, let the batches finish and
   * commit, then leave the group. Always leaves, also after a crash (pausing a crashed
   * consumer throws) or when the drain runs out of time.
   */
  async function drainAndLeave(): Promise<void> {
    stopping = true;
    const drainBy = Date.now() + DRAIN_MS;
    // A reconnect under way first: a consumer stopped while kafkajs starts its run would go on
    // joining the group after the disconnect, out of reach.
    await settledWithin(supervisor.stop(), DRAIN_MS);
    try {
      consumer.pause(options.topics.map((topic) => ({ topic })));
      if (inFlight > 0) {
        const allDrained = new Promise<void>((resolve) => {
          drained = resolve;
        });
        await settledWithin(allDrained, Math.max(0, drainBy - Date.now()));
      }
    } catch (err) {
      log.debug({ err }, 'Consumer not running at stop; leaving the group.');
    } finally {
      if (inFlight > 0) {
        // A batch is still being handled past the drain's time: kafkajs's disconnect waits for
        // it, and so does the stop (the process deadline cuts it short, exit 70), so the role
        // never reports a drain it did not finish, nor has its store closed under a handler.
        await consumer.disconnect();
      } else {
        // Nothing in flight: with the broker away, kafkajs's disconnect waits for a fetch that
        // keeps reconnecting. Bounded by the drain's time; the broker expires this member.
        const left = await settledWithin(consumer.disconnect(), Math.max(LEAVE_MIN_MS, drainBy - Date.now()));
        if (!left) log.warn({ topics: options.topics }, 'The consumer did not leave its group in time (broker away?); the broker will expire it.');
      }
    }
  }

  let stopped: Promise<void> | undefined;
  return {
    consumer,
    crashed: supervisor.crashed,
    stop: () => (stopped ??= drainAndLeave()),
  };
}
