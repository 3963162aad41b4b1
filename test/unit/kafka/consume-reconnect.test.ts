/**
 * A consumer that loses the broker while it rejoins its group crashes in kafkajs with an error
 * kafkajs does not restart from (KafkaJSGroupCoordinatorNotFound, kafkajs#1630): the consumer
 * loop connects and runs it again until the broker answers, and fails the role only for other
 * errors or after RECONNECT_WINDOW_MS without a join.
 *
 * The crash itself needs a broker going down in a narrow window (the Kafka crash test meets it
 * now and then); here a stand-in consumer emits kafkajs's CRASH and GROUP_JOIN events with
 * kafkajs's own error classes, so every branch runs on every test run.
 */
import { EventEmitter } from 'node:events';

import {
  type EachBatchPayload,
  type Kafka,
  KafkaJSConnectionError,
  KafkaJSGroupCoordinatorNotFound,
  KafkaJSNonRetriableError,
} from 'kafkajs';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { Wakeups } from '../../../src/core/pipeline.ts';
import type { ConsumerRunConfig } from '../../../src/kafka/client.ts';
import { curedByReconnect, startConsumerLoop } from '../../../src/kafka/consume.ts';
import { startSyncListener } from '../../../src/kafka/control.ts';
import { topicNames } from '../../../src/kafka/topics.ts';

const EVENTS = { CRASH: 'consumer.crash', GROUP_JOIN: 'consumer.group_join', END_BATCH_PROCESS: 'consumer.end_batch_process' } as const;

/** What kafkajs's consumer does for the loop, and what the loop did to it. */
class StandInConsumer extends EventEmitter {
  readonly events = EVENTS;
  connects = 0;
  runs = 0;
  disconnects = 0;
  /** Errors the next connects reject with, one each. */
  readonly connectFailures: Error[] = [];
  /** While set, connects wait for it. */
  connectGate: Promise<void> | undefined;

  async connect(): Promise<void> {
    this.connects += 1;
    const failure = this.connectFailures.shift();
    await this.connectGate;
    if (failure !== undefined) throw failure;
  }
  subscribe(): Promise<void> {
    return Promise.resolve();
  }
  /** While set, runs (kafkajs: until the member joined or crashed) wait for it. */
  runGate: Promise<void> | undefined;
  /** Whether a run was under way when each disconnect came. */
  readonly disconnectedDuringRun: boolean[] = [];
  private running = false;

  /** The run configuration the loop gave kafkajs: its `eachBatch` is what kafkajs calls. */
  config: ConsumerRunConfig | undefined;
  commitOffsets(): Promise<void> {
    return Promise.resolve();
  }

  async run(config?: ConsumerRunConfig): Promise<void> {
    this.config = config;
    this.runs += 1;
    this.running = true;
    await this.runGate;
    this.running = false;
  }
  /** While set, disconnects wait for it (kafkajs: stopping fetchers that keep reconnecting to a broker that is away). */
  disconnectGate: Promise<void> | undefined;

  async disconnect(): Promise<void> {
    this.disconnects += 1;
    this.disconnectedDuringRun.push(this.running);
    await this.disconnectGate;
  }
  pause(): void {
    // A crashed consumer throws here in kafkajs; the loop's stop handles both.
  }
  crash(error: Error, restart = false): void {
    this.emit(EVENTS.CRASH, { payload: { error, restart, groupId: 'g' } });
  }
  join(): void {
    this.emit(EVENTS.GROUP_JOIN, { payload: { groupId: 'g' } });
  }
  batchDone(): void {
    this.emit(EVENTS.END_BATCH_PROCESS, { payload: { topic: 't', partition: 0 } });
  }
}

/**
 * What kafkajs throws there: the cluster's `KafkaJSGroupCoordinatorNotFound` (its typings omit
 * the constructor's message) wrapped by the retrier in a `KafkaJSNonRetriableError` with it as
 * the cause (kafkajs src/retry/index.js).
 */
function coordinatorNotFound(): Error {
  const NotFound = KafkaJSGroupCoordinatorNotFound as unknown as new (message: string) => Error;
  const cause = new NotFound('Failed to find group coordinator');
  return Object.assign(new KafkaJSNonRetriableError(cause), { cause });
}

async function startLoop(consumer: StandInConsumer, handle: () => Promise<void> = () => Promise.resolve()) {
  const kafka = { consumer: () => consumer } as unknown as Kafka;
  let reconnects = 0;
  const loop = await startConsumerLoop({
    onReconnect: () => {
      reconnects += 1;
    },
    kafka,
    groupId: 'g',
    topics: ['t'],
    log: pino({ level: 'silent' }),
    maxRecords: 10,
    sessionTimeoutMs: 6000,
    handle,
  });
  let crashed: unknown;
  loop.crashed.catch((err: unknown) => {
    crashed = err;
  });
  return { loop, crashedWith: () => crashed, reconnects: () => reconnects };
}

describe('curedByReconnect', () => {
  it('looks through the causes for a connection or coordinator error', () => {
    expect(curedByReconnect(coordinatorNotFound())).toBe(true);
    expect(curedByReconnect(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092'))).toBe(true);
    expect(curedByReconnect(new KafkaJSNonRetriableError('Invalid topic name'))).toBe(false);
    expect(curedByReconnect(new Error('handler failed'))).toBe(false);
  });
});

describe('consumer loop after a crash kafkajs does not restart from', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('connects and runs the consumer again until it joins, and the role keeps going', async () => {
    const consumer = new StandInConsumer();
    const { loop, crashedWith, reconnects } = await startLoop(consumer);
    expect(consumer.runs).toBe(1);

    consumer.crash(coordinatorNotFound());
    await vi.advanceTimersByTimeAsync(600);
    expect(consumer.connects).toBe(2);
    expect(consumer.runs).toBe(2);

    // The broker still refuses: the connect fails, and the loop tries again later.
    consumer.connectFailures.push(new KafkaJSConnectionError('Connection error: connect ECONNREFUSED 127.0.0.1:9092'));
    consumer.crash(coordinatorNotFound());
    await vi.advanceTimersByTimeAsync(5000);
    expect(consumer.connects).toBe(4);
    expect(consumer.runs).toBe(3);
    // Every attempt counts (metrics), the failed connect too.
    expect(reconnects()).toBe(3);
    consumer.join();
    expect(crashedWith()).toBeUndefined();
    await loop.stop();
  });

  it('fails the role when no join came within the reconnect window', async () => {
    const consumer = new StandInConsumer();
    const { crashedWith } = await startLoop(consumer);
    for (let i = 0; i < 200 && crashedWith() === undefined; i++) {
      consumer.crash(coordinatorNotFound());
      await vi.advanceTimersByTimeAsync(5000);
    }
    expect(crashedWith()).toBeInstanceOf(KafkaJSNonRetriableError);
    // 120 s of crashes at most 5 s apart, then the give-up: not one more reconnect after it.
    const runs = consumer.runs;
    expect(runs).toBeGreaterThan(20);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(consumer.runs).toBe(runs);
  });

  it('starts a new window after a join', async () => {
    const consumer = new StandInConsumer();
    const { loop, crashedWith } = await startLoop(consumer);
    for (let i = 0; i < 5; i++) {
      // 100 s of crashes, then a join: each outage is within the window by itself.
      for (let t = 0; t < 100_000; t += 5000) {
        consumer.crash(coordinatorNotFound());
        await vi.advanceTimersByTimeAsync(5000);
      }
      consumer.join();
    }
    expect(crashedWith()).toBeUndefined();
    await loop.stop();
  });

  it('fails the role at once for an error a reconnect does not cure', async () => {
    const consumer = new StandInConsumer();
    const { crashedWith } = await startLoop(consumer);
    const error = new KafkaJSNonRetriableError('Invalid topic name');
    consumer.crash(error);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(crashedWith()).toBe(error);
    expect(consumer.runs).toBe(1);
  });

  it('leaves a crash kafkajs restarts itself to kafkajs', async () => {
    const consumer = new StandInConsumer();
    const { loop, crashedWith } = await startLoop(consumer);
    consumer.crash(new KafkaJSConnectionError('Connection error'), true);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(consumer.runs).toBe(1);
    expect(crashedWith()).toBeUndefined();
    // A later one, after batches were handled again, too; and one long after the last.
    consumer.batchDone();
    consumer.crash(new KafkaJSConnectionError('Connection error'), true);
    await vi.advanceTimersByTimeAsync(16 * 60_000);
    consumer.crash(new KafkaJSConnectionError('Connection error'), true);
    await vi.advanceTimersByTimeAsync(10);
    expect(crashedWith()).toBeUndefined();
    await loop.stop();
  });

  it('fails the role when kafkajs restarts it twice within 15 minutes with no batch handled between (a broker that stays away)', async () => {
    const consumer = new StandInConsumer();
    const { crashedWith } = await startLoop(consumer);
    // kafkajs's retries ran out (about 5 minutes each): it restarts the consumer, which joins
    // its group again but handles nothing (a deleted output topic), or never joins.
    consumer.crash(new KafkaJSNonRetriableError('This server does not host this topic-partition'), true);
    await vi.advanceTimersByTimeAsync(5 * 60_000);
    consumer.join();
    expect(crashedWith()).toBeUndefined();
    const again = new KafkaJSNonRetriableError('This server does not host this topic-partition');
    consumer.crash(again, true);
    await vi.advanceTimersByTimeAsync(10);
    expect(crashedWith()).toBe(again);
    expect(consumer.runs).toBe(1);
  });

  it('leaves every crash kafkajs restarts from to kafkajs for the sync listener, which the role can do without', async () => {
    const consumer = new StandInConsumer();
    const admin = { connect: () => Promise.resolve(), deleteGroups: () => Promise.resolve(), disconnect: () => Promise.resolve() };
    const kafka = { consumer: () => consumer, admin: () => admin } as unknown as Kafka;
    const errors: string[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => { errors.push(line); } });
    const listener = await startSyncListener(kafka, topicNames('t'), new Wakeups(), log);
    for (let i = 0; i < 3; i++) {
      consumer.crash(new KafkaJSConnectionError('Connection error'), true);
      await vi.advanceTimersByTimeAsync(5 * 60_000);
    }
    // Neither "the role stops" nor "the sync request listener stopped".
    expect(errors).toEqual([]);
    await listener.stop();
  });

  it('does not reconnect once stopping, also when the crash came before the stop', async () => {
    const consumer = new StandInConsumer();
    const { loop, crashedWith } = await startLoop(consumer);
    consumer.crash(coordinatorNotFound());
    await loop.stop();
    await vi.advanceTimersByTimeAsync(10_000);
    consumer.crash(coordinatorNotFound());
    await vi.advanceTimersByTimeAsync(10_000);
    expect(consumer.runs).toBe(1);
    expect(consumer.disconnects).toBe(1);
    expect(crashedWith()).toBeUndefined();
  });

  it('stops within the drain time when leaving the group hangs (the broker away for minutes)', async () => {
    const consumer = new StandInConsumer();
    const { loop } = await startLoop(consumer);
    consumer.disconnectGate = new Promise<void>(() => undefined);
    let done = false;
    void loop.stop().then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(19_000);
    expect(consumer.disconnects).toBe(1);
    expect(done).toBe(false);
    // The drain's 20 s: the process deadline (30 s) is left for the store and the other roles.
    await vi.advanceTimersByTimeAsync(1_100);
    expect(done).toBe(true);
  });

  it('waits for a batch still being handled past the drain time, as kafkajs does (the process deadline ends it)', async () => {
    const consumer = new StandInConsumer();
    // A sink storing through a ClickHouse blip: its retries outlast the 20 s drain.
    const handler = opening();
    const { loop } = await startLoop(consumer, () => handler.promise);
    // kafkajs's disconnect waits for the batch in flight.
    consumer.disconnectGate = handler.promise;
    const message = { offset: '0', key: null, value: Buffer.from('x'), timestamp: '0', attributes: 0, headers: {} };
    const payload = {
      batch: { topic: 't', partition: 0, messages: [message] },
      isRunning: () => true,
      isStale: () => false,
      heartbeat: () => Promise.resolve(),
      resolveOffset: () => undefined,
    } as unknown as EachBatchPayload;
    const batch = consumer.config?.eachBatch?.(payload);
    let done = false;
    void loop.stop().then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(25_000);
    // Not reported stopped while the handler runs: the store must not close under it.
    expect(done).toBe(false);
    handler.open();
    await batch;
    await vi.advanceTimersByTimeAsync(10);
    expect(done).toBe(true);
  });

  it('leaves the consumer disconnected when the stop came while it connected again', async () => {
    const consumer = new StandInConsumer();
    const { loop } = await startLoop(consumer);
    const gate = opening();
    consumer.connectGate = gate.promise;
    consumer.crash(coordinatorNotFound());
    await vi.advanceTimersByTimeAsync(1000);
    expect(consumer.connects).toBe(2);
    const stopped = loop.stop();
    gate.open();
    await vi.advanceTimersByTimeAsync(1000);
    await stopped;
    expect(consumer.runs).toBe(1);
    // The one after the late connect, and the loop's own.
    expect(consumer.disconnects).toBe(2);
  });

  it('stops the consumer only after a run it started again has settled', async () => {
    const consumer = new StandInConsumer();
    const { loop } = await startLoop(consumer);
    const gate = opening();
    consumer.runGate = gate.promise;
    consumer.crash(coordinatorNotFound());
    await vi.advanceTimersByTimeAsync(1000);
    expect(consumer.runs).toBe(2);
    let done = false;
    const stopped = loop.stop().then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(5000);
    expect(done).toBe(false);
    expect(consumer.disconnects).toBe(0);
    gate.open();
    await vi.advanceTimersByTimeAsync(0);
    await stopped;
    expect(consumer.disconnectedDuringRun).toEqual([false]);
  });

  it('stops anyway when a run it started again is still joining at the drain deadline', async () => {
    const consumer = new StandInConsumer();
    const { loop } = await startLoop(consumer);
    consumer.runGate = new Promise(() => undefined);
    consumer.crash(coordinatorNotFound());
    await vi.advanceTimersByTimeAsync(1000);
    const stopped = loop.stop();
    await vi.advanceTimersByTimeAsync(20_000);
    await stopped;
    expect(consumer.disconnects).toBe(1);
  });
});

/** A promise and the function that resolves it. */
function opening(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { promise, open };
}
