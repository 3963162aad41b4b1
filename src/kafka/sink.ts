/**
 * The sink role of the distributed mode: consumer group `<p>.sink` on `<p>.messages`,
 * `<p>.events` and `<p>.dlq`. Each handler call is one partition's batch of contiguous offsets.
 * The batches a consumer handles at the same time (up to {@link SINK_CONCURRENCY}, one per
 * partition) are decoded and stored together by one {@link SinkWriter}, the same as the embedded
 * mode's (lookups of rows already stored, recalls, sink dead letters), and each partition's
 * offset after its batch is committed only once the group's inserts returned.
 *
 * Every insert of a group carries `insert_deduplication_token`
 * `<range>,<range>,…:<writer token>`, each range `<topic>-<partition>-<first>-<last>` as in
 * Kafka Connect's ClickHouse sink (sorted), followed by the writer's own token for the table
 * and the row keys it inserts (the writer skips rows already stored, so a replay may insert a
 * smaller remainder; the key hash keeps that remainder from being mistaken for the first
 * attempt). A record that is not a valid protobuf value of its topic becomes a dead letter
 * (stage `sink`) with its original bytes, and the partition moves on.
 */
import type { Logger } from 'pino';

import type { SinkObserver } from '../core/pipeline.ts';
import type { DeadLetterRow, EditMark, EventRow, MessageEditRow, MessageRow, RecallMark, TransformOutput } from '../core/types.ts';
import { type InsertOptions, type Store, wrapStore } from '../sink/clickhouse.ts';
import { refusedRowLetter, type RowOrigin } from '../sink/dead-letters.ts';
import { editTargetKey, historyKey, invalidEditHistoryReason, invalidEditReason } from '../sink/edits.ts';
import { EVENTS_TABLE, eventKey, invalidEventReason } from '../sink/events.ts';
import { invalidRecallReason, recallTargetKey } from '../sink/messages.ts';
import { EncodedUnit, type SinkStats as WriterStats, SinkWriter } from '../sink/writer.ts';
import type { Kafka } from './client.ts';
import { decodeDeadLetter, decodeEvent, decodeMessageRecord } from './codec.ts';
import { BatchAbandonedError, type PartitionBatch, startConsumerLoop, startConsumerLoops } from './consume.ts';
import type { Topics } from './topics.ts';

export interface KafkaSinkOptions {
  readonly kafka: Kafka;
  readonly topics: Topics;
  readonly store: Store;
  readonly consumers: number;
  /** Partitions of each sink topic (`kafka.partitions`): the sink handles one batch of each at once. */
  readonly partitions?: number;
  readonly sessionTimeoutMs: number;
  readonly log: Logger;
  readonly clock?: () => number;
  readonly onCommitted?: (topic: string, partition: number, offset: string, records: number) => void;
  /** Called when a consumer kafkajs had ended is connected again (metrics). */
  readonly onReconnect?: () => void;
  /** Told about every stored batch (metrics). */
  readonly observer?: SinkObserver;
  /** The writers' counters summed over every batch (metrics read it at scrape time). */
  readonly writerStats?: WriterStats;
  /**
   * Cuts the start-up short: the consumers already started drain what they hold, then the start
   * rejects with `StoppedDuringStartup`.
   */
  readonly signal?: AbortSignal;
}

/** Adds the counters of `from` to `into`; `last*` fields take the newer value, the queue depth is left alone. */
export function addWriterStats(into: WriterStats, from: WriterStats): void {
  const add = (a: Record<string, unknown>, b: Record<string, unknown>): void => {
    for (const [key, value] of Object.entries(b)) {
      if (key === 'bufferedRows') continue;
      if (typeof value === 'number') a[key] = key.startsWith('last') ? value : (typeof a[key] === 'number' ? a[key] : 0) + value;
      else if (value !== null && typeof value === 'object' && typeof a[key] === 'object' && a[key] !== null) {
        add(a[key] as Record<string, unknown>, value as Record<string, unknown>);
      }
    }
  };
  add(into as unknown as Record<string, unknown>, from as unknown as Record<string, unknown>);
}

/** The store as the writer of one batch sees it: every insert token is scoped to the offset range. */
export function rangeScopedStore(store: Store, range: string): Store {
  const scoped = (table: string, options: InsertOptions = {}): InsertOptions => ({ ...options, dedupToken: `${range}:${options.dedupToken ?? table}` });
  const forget = store.forget?.bind(store);
  return wrapStore(store, {
    insert: (table, rows, options) => store.insert(table, rows, scoped(table, options)),
    // The insert journal names a file by the token it was sent with.
    ...(forget === undefined ? {} : { forget: (table: string, options?: InsertOptions) => forget(table, scoped(table, options)) }),
    close: () => Promise.resolve(),
  });
}

/** Where a record of `batch` is: the `origin_key` of the dead letters made of it. */
function recordOrigin(batch: Pick<PartitionBatch, 'topic' | 'partition'>, offset: string): string {
  return `kafka:${batch.topic}-${batch.partition}@${offset}`;
}

const NO_SOURCE: Pick<DeadLetterRow, 'source' | 'source_type'> = { source: '', source_type: '' as DeadLetterRow['source_type'] };

/**
 * Decodes one partition batch into rows; undecodable records become sink dead letters.
 * `rowRecords`, when given, gets the index in `batch.messages` of each message row's record.
 */
export function decodeBatch(topics: Topics, batch: PartitionBatch, now: number, rowRecords?: number[]): TransformOutput {
  const messages: MessageRow[] = [];
  const events: EventRow[] = [];
  const deadLetters: DeadLetterRow[] = [];
  const recalls: RecallMark[] = [];
  const edits: EditMark[] = [];
  const editHistory: MessageEditRow[] = [];
  // A row or mark the store would refuse is dead-lettered here, where its record's bytes and
  // offset are known (the writer would keep only the decoded row as JSON); the record's other
  // rows and marks go on. Message rows are checked by the writer, which gets their origin
  // through `rowRecords`.
  const keep = <T extends object>(
    table: string,
    items: readonly T[],
    into: T[],
    reasonOf: (item: T) => string | undefined,
    keyOf: (item: T) => string,
    source: Pick<DeadLetterRow, 'source' | 'source_type'>,
    record: PartitionBatch['messages'][number],
    value: Buffer,
  ): void => {
    for (const item of items) {
      const reason = reasonOf(item);
      if (reason === undefined) into.push(item);
      else deadLetters.push(refusedRowLetter(table, keyOf(item), item, reason, now, { bytes: value, originKey: recordOrigin(batch, record.offset) }, source));
    }
  };
  let index = -1;
  for (const record of batch.messages) {
    index++;
    const value = record.value ?? Buffer.alloc(0);
    try {
      // An empty protobuf value decodes as an all-default row: never a row worth storing.
      if (value.length === 0) throw new Error('the value is empty (null or zero bytes)');
      if (batch.topic === topics.messages) {
        const decoded = decodeMessageRecord(value);
        if (decoded.row !== undefined) {
          messages.push(decoded.row);
          rowRecords?.push(index);
        }
        // Marks carry no source: theirs is the record's message row's, when it has one.
        const from = decoded.row ?? NO_SOURCE;
        keep('recalls', decoded.recalls, recalls, invalidRecallReason, recallTargetKey, from, record, value);
        keep('edits', decoded.edits, edits, invalidEditReason, editTargetKey, from, record, value);
        keep('message_edits', decoded.editHistory, editHistory, invalidEditHistoryReason, historyKey, from, record, value);
      } else if (batch.topic === topics.events) {
        const event = decodeEvent(value);
        keep(EVENTS_TABLE, [event], events, invalidEventReason, eventKey, event, record, value);
      } else deadLetters.push(decodeDeadLetter(value));
    } catch (err) {
      // The messages and events topics are keyed `<tenant>:…`; a dlq record by its origin_key,
      // which starts with a source name, so its tenant is not known.
      const key = batch.topic === topics.dlq ? '' : (record.key?.toString('utf8') ?? '');
      deadLetters.push({
        tenant: key.split(':')[0] ?? '',
        source: '',
        source_type: '' as DeadLetterRow['source_type'],
        stage: 'sink',
        error_code: 'MSGPIPE_ERR_SHAPE',
        error_message: `Record ${batch.topic}-${batch.partition}@${record.offset} is not a protobuf value of its topic: ${err instanceof Error ? err.message : String(err)}`,
        original_base64: value.toString('base64'),
        origin_key: recordOrigin(batch, record.offset),
        occurred_at: now,
      });
    }
  }
  return { messages, events, deadLetters, recalls, edits, editHistory };
}

/** `<topic>-<partition>-<first>-<last>`: the offset range of a partition batch. */
function batchRange(batch: PartitionBatch): string {
  return `${batch.topic}-${String(batch.partition)}-${batch.firstOffset}-${batch.lastOffset}`;
}

/**
 * Partition batches a consumer handles at once, at least: one per partition of its three topics
 * (`kafka.partitions` each) when that is more. They are stored together; each partition's
 * batches still come in order, one at a time.
 */
const SINK_CONCURRENCY = 16;
/** A fetch waits (at most 250 ms) for this much data, so each partition brings more records. */
const SINK_FETCH_MIN_BYTES = 1024 * 1024;
/**
 * Bytes of records one fetch brings at most (half of it per partition). Everything fetched is
 * held until its group is stored, with the lines and the insert body made from it: 8 MiB kept
 * the sink's peak RSS at 438–468 MB against 496–500 MB with 16 MiB (8 MiB per partition), at
 * the same rate (1M Kafka bench, docs/benchmarks.md, session 9).
 */
const SINK_FETCH_MAX_BYTES = 8 * 1024 * 1024;
/** Rows past which a group is stored without waiting for more batches. */
const SINK_GROUP_MAX_ROWS = 20_000;
/** How long a group waits for the batches of the same fetch before it is stored. */
const SINK_GROUP_LINGER_MS = 20;

/** A partition batch waiting in a group. */
interface Member {
  readonly batch: PartitionBatch;
}

/**
 * A partition batch of the sink, its valid messages already encoded as the writer stores them:
 * their row objects die young instead of living while the group lingers and the one before it
 * is stored (they filled the sink's old generation). The batch is decoded and encoded in units of
 * {@link DECODE_SLICE} records, so that even the rows of one batch (up to 4 MiB of records) are
 * never all alive at once. Events, dead letters, marks and refused rows are few and stay as they
 * are.
 */
interface Joined extends Member {
  readonly units: readonly EncodedUnit[];
}

/** Records decoded into rows at a time: their rows (a few KB each) die in the young generation. */
const DECODE_SLICE = 500;

/** The encoded units of a partition batch, {@link DECODE_SLICE} records each. */
export function encodeBatch(topics: Topics, batch: PartitionBatch, now: number): EncodedUnit[] {
  const units: EncodedUnit[] = [];
  for (let start = 0; start < batch.messages.length; start += DECODE_SLICE) {
    const slice = { ...batch, messages: batch.messages.slice(start, start + DECODE_SLICE) };
    const rowRecords: number[] = [];
    const output = decodeBatch(topics, slice, now, rowRecords);
    // A row the sink refuses is dead-lettered with its record's bytes and offset.
    const originOf = (i: number): RowOrigin | undefined => {
      const record = slice.messages[rowRecords[i] ?? -1];
      return record === undefined ? undefined : { bytes: record.value ?? Buffer.alloc(0), originKey: recordOrigin(batch, record.offset) };
    };
    units.push(EncodedUnit.of({ output }, originOf));
  }
  return units;
}

/** What {@link BatchCoalescer} waits for before it stores a group. */
export interface CoalescerLimits {
  readonly maxRows: number;
  readonly maxBatches: number;
  readonly lingerMs: number;
}

interface OpenGroup<T> {
  readonly members: T[];
  rows: number;
  readonly done: Promise<void>;
  readonly start: () => void;
}

/**
 * Gathers the partition batches one consumer handles at the same time into one group and
 * stores the group once: when it holds `maxBatches` batches or `maxRows` records, or `lingerMs`
 * after its first batch. Every member's `join` settles with the group's store, so each
 * partition commits its offsets only after the rows of its batch are stored. A store that fails
 * rejects every member (their offsets stay; the records come again). The store gets the
 * members' partition-loss signals as one; when it fails after one of them aborted, every member
 * is rejected with {@link BatchAbandonedError}, so the members that still own their partitions
 * fetch their records again instead of failing the consumer.
 *
 * Per partition in the Kafka sink, each batch was stored on its own: ~600 rows per insert at
 * 6 partitions, each insert paying the lookups and part writes of a full batch
 * (docs/benchmarks.md).
 */
export class BatchCoalescer<T extends Member> {
  private readonly storeGroup: (group: readonly T[], signal: AbortSignal) => Promise<void>;
  private readonly limits: CoalescerLimits;
  private open: OpenGroup<T> | undefined;

  constructor(storeGroup: (group: readonly T[], signal: AbortSignal) => Promise<void>, limits: CoalescerLimits) {
    this.storeGroup = storeGroup;
    this.limits = limits;
  }

  /** Adds a batch to the open group and resolves once that group is stored. */
  join(member: T): Promise<void> {
    const group = this.open ?? this.openGroup();
    group.members.push(member);
    group.rows += member.batch.messages.length;
    const { done } = group;
    if (group.members.length >= this.limits.maxBatches || group.rows >= this.limits.maxRows) group.start();
    return done;
  }

  private openGroup(): OpenGroup<T> {
    const members: T[] = [];
    let timer: NodeJS.Timeout | undefined;
    let start: () => void = () => undefined;
    const done = new Promise<void>((resolve, reject) => {
      start = () => {
        if (timer === undefined) return;
        clearTimeout(timer);
        timer = undefined;
        if (this.open?.members === members) this.open = undefined;
        const signal = AbortSignal.any(members.map((m) => m.batch.signal));
        Promise.resolve()
          .then(() => this.storeGroup(members, signal))
          .then(resolve, (err: unknown) => {
            const failure = err instanceof Error ? err : new Error(String(err));
            reject(signal.aborted ? new BatchAbandonedError('A partition of the batch group was lost; the group was not stored.', { cause: failure }) : failure);
          });
      };
      timer = setTimeout(() => { start(); }, this.limits.lingerMs);
    });
    const group: OpenGroup<T> = { members, rows: 0, done, start: () => { start(); } };
    this.open = group;
    return group;
  }
}

/** The counters the metrics read. */
export interface SinkStats {
  batches: number;
  records: number;
  messages: number;
  events: number;
  deadLetters: number;
}

/** A running sink role. */
export interface KafkaSink {
  readonly stats: SinkStats;
  readonly crashed: Promise<never>;
  /** Drains the batches in flight (stored and committed), then leaves the group. */
  stop(): Promise<void>;
}

export async function startKafkaSink(options: KafkaSinkOptions): Promise<KafkaSink> {
  const { kafka, topics, log, store } = options;
  const clock = options.clock ?? Date.now;
  const stats: SinkStats = { batches: 0, records: 0, messages: 0, events: 0, deadLetters: 0 };

  const storeGroup = async (group: readonly Joined[], signal: AbortSignal): Promise<void> => {
    // One writer for the group: one lookup and one insert per table for all its batches, each
    // insert's token holding every offset range it covers.
    const ranges = group.map((j) => batchRange(j.batch)).sort();
    const writer = new SinkWriter(rangeScopedStore(store, ranges.join(',')), log, {
      maxRows: Number.MAX_SAFE_INTEGER,
      maxBytes: Number.MAX_SAFE_INTEGER,
      maxAgeMs: 60_000,
      clock,
      // Stop retrying once another member owns a partition of the group: it stores those
      // records itself, and the other batches of the group are fetched again.
      signal,
      ...(options.observer === undefined ? {} : { observer: options.observer }),
    });
    try {
      for (const j of group) for (const unit of j.units) await writer.add(unit);
      await writer.close();
    } finally {
      if (options.writerStats !== undefined) addWriterStats(options.writerStats, writer.stats);
    }
  };
  const concurrency = Math.max(SINK_CONCURRENCY, 3 * (options.partitions ?? 0));
  // One coalescer per consumer: a group holds the batches of one member of the consumer group,
  // which lose their partitions together.
  const handler = (): ((batch: PartitionBatch) => Promise<void>) => {
    const coalescer = new BatchCoalescer(storeGroup, { maxRows: SINK_GROUP_MAX_ROWS, maxBatches: concurrency, lingerMs: SINK_GROUP_LINGER_MS });
    return async (batch) => {
      // No message row outlives this statement: the group holds the encoded units.
      const units = encodeBatch(topics, batch, clock());
      // The queue depth gauge: rows taken from the topics and not stored yet.
      const rows = units.reduce((n, unit) => n + unit.rows, 0);
      if (options.writerStats !== undefined) options.writerStats.bufferedRows += rows;
      try {
        await coalescer.join({ batch, units });
      } finally {
        if (options.writerStats !== undefined) options.writerStats.bufferedRows -= rows;
      }
      stats.batches += 1;
      stats.records += batch.messages.length;
      for (const unit of units) {
        stats.messages += unit.messages.length + unit.refused.length;
        stats.events += unit.events.length;
        stats.deadLetters += unit.deadLetters.length;
      }
    };
  };

  const loops = await startConsumerLoops(
    options.consumers,
    (i) =>
      startConsumerLoop({
        kafka,
        groupId: `${topics.prefix}.sink`,
        topics: [topics.messages, topics.events, topics.dlq],
        log: log.child({ consumer: i }),
        maxRecords: 20_000,
        sessionTimeoutMs: options.sessionTimeoutMs,
        maxBytesPerPartition: SINK_FETCH_MAX_BYTES / 2,
        maxBytes: SINK_FETCH_MAX_BYTES,
        concurrency,
        minBytes: SINK_FETCH_MIN_BYTES,
        handle: handler(),
        ...(options.onCommitted === undefined ? {} : { onCommitted: options.onCommitted }),
        ...(options.onReconnect === undefined ? {} : { onReconnect: options.onReconnect }),
      }),
    options.signal,
  );
  const crashed = Promise.race(loops.map((l) => l.crashed));
  // Awaited later (by the roles), possibly after a crash: never an unhandled rejection.
  crashed.catch(() => undefined);
  return {
    stats,
    crashed,
    stop: async () => {
      await Promise.all(loops.map((l) => l.stop()));
    },
  };
}
