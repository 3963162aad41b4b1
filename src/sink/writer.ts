/**
 * The sink stage: buffers transform outputs and stores them in ClickHouse in batches, then saves
 * the cursors those batches cover (DESIGN §1, docs/component-spec.md §Sink).
 *
 * Contract:
 * - `add` resolves once the unit is buffered; when the buffer is full it first waits for the
 *   flush in flight (backpressure), so at most two batches are in memory.
 * - A batch is flushed when it reaches `maxRows` rows, about `maxBytes` bytes of JSON, or is
 *   `maxAgeMs` old. Batches are stored strictly in order.
 * - A flush stores, in this order: messages, events, dead letters, recalls, and only then the
 *   cursors of its units (the last per source + stream). Rows already stored (same identity) and
 *   duplicates inside the batch are dropped, so a pipeline that re-reads pages after a crash
 *   stores nothing twice and no FINAL is needed to read exactly one row per message.
 * - Every insert carries `insert_deduplication_token` = sha256 of the sorted keys it inserts,
 *   with `async_insert=0`.
 * - A retriable failure retries the whole flush (each step is idempotent: lookups run again, so
 *   nothing is lost or doubled); a permanent one, or running out of attempts, rejects, and the
 *   writer refuses further work. The cursor of a failed batch is never saved.
 * - A row that ClickHouse would refuse (bad msgid, seq, time …) becomes a dead letter of stage
 *   `sink` instead of failing its batch forever.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import type { CursorUpdate, SinkUnit, UnitSink } from '../core/pipeline.ts';
import { retry, type RetryPolicy } from '../core/retry.ts';
import type { DeadLetterRow, EventRow, MessageRow, RecallMark } from '../core/types.ts';
import type { CallOptions, Store } from './clickhouse.ts';
import { CursorStore } from './cursors.ts';
import {
  DEAD_LETTER_COLUMNS,
  DEAD_LETTERS_TABLE,
  deadLetterId,
  deadLetterInsertRow,
  estimateDeadLetterBytes,
  findStoredDeadLetters,
} from './dead-letters.ts';
import {
  estimateEventBytes,
  EVENT_COLUMNS,
  eventKey,
  EVENTS_TABLE,
  findStoredEvents,
  invalidEventReason,
} from './events.ts';
import {
  applyRecalls,
  estimateMessageBytes,
  findStoredMessages,
  findStoredRecalls,
  invalidMessageReason,
  MESSAGE_COLUMNS,
  messageInsertRow,
  messageKey,
  MESSAGES_TABLE,
  recallTargetKey,
} from './messages.ts';

/** Batch bounds; the defaults match the `sink` section of the configuration. */
export interface SinkBatchOptions {
  /** Flush at this many rows (messages + events + dead letters + recalls). Default 20 000. */
  readonly maxRows?: number;
  /** Flush at about this many bytes of row JSON (an estimate). Default 16 MiB. */
  readonly maxBytes?: number;
  /** Flush this long after the first unit of a batch arrived. Default 1000 ms. */
  readonly maxAgeMs?: number;
}

export interface SinkWriterOptions extends SinkBatchOptions {
  /** Retry of a failing flush. Default {@link SINK_RETRY}. */
  readonly retry?: RetryPolicy;
  /**
   * Hard stop: aborting abandons the flush in progress and everything buffered (their cursors
   * are not saved, so a restart reads them again). Graceful shutdown is `close()`, not this.
   */
  readonly signal?: AbortSignal;
  /** Where cursors go; default a {@link CursorStore} on the same store. */
  readonly cursors?: CursorStore;
  /** Unix ms, for `occurred_at` of sink dead letters. */
  readonly clock?: () => number;
}

export const SINK_DEFAULTS = { maxRows: 20_000, maxBytes: 16 * 1024 * 1024, maxAgeMs: 1000 } as const;

/** About 1.5 minutes of attempts in all before a flush gives up. */
export const SINK_RETRY: RetryPolicy = { attempts: 10, minMs: 200, maxMs: 15_000, factor: 2 };

/** Per-table row counters. */
export interface TableCounts {
  messages: number;
  events: number;
  dead_letters: number;
}

/** What the writer has done so far; cheap to read, for metrics. */
export interface SinkStats {
  /** Batches stored (cursors saved). */
  flushes: number;
  /** Flush attempts that failed with a retriable error and were retried. */
  retries: number;
  /** Rows inserted, per table. */
  readonly written: TableCounts & { recalls: number; cursors: number };
  /** Rows dropped because the same identity was in the batch already or already stored. */
  readonly duplicates: TableCounts;
  /** Rows turned into sink dead letters because ClickHouse would refuse them. */
  invalid: number;
  /** Wall time of the last stored batch, ms, and of its lookups. */
  lastFlushMs: number;
  lastLookupMs: number;
  lastFlushRows: number;
  /** Rows waiting in the buffer now. */
  bufferedRows: number;
}

interface Batch {
  readonly messages: MessageRow[];
  readonly events: EventRow[];
  readonly deadLetters: DeadLetterRow[];
  readonly recalls: RecallMark[];
  readonly cursors: Map<string, CursorUpdate>;
  rows: number;
  bytes: number;
  units: number;
}

/** A batch after the checks that do not need the store: deduplicated, validated, keyed. */
interface Prepared {
  readonly messages: readonly { key: string; row: MessageRow }[];
  readonly events: readonly { key: string; row: EventRow }[];
  readonly deadLetters: readonly { id: string; row: DeadLetterRow }[];
  /** Target key → earliest recall time, and the marks themselves for the UPDATE. */
  readonly recallTimes: ReadonlyMap<string, number>;
  readonly recalls: readonly RecallMark[];
  readonly cursors: readonly CursorUpdate[];
  readonly duplicates: TableCounts;
  readonly invalid: number;
  readonly rows: number;
}

function emptyBatch(): Batch {
  return { messages: [], events: [], deadLetters: [], recalls: [], cursors: new Map(), rows: 0, bytes: 0, units: 0 };
}

/** sha256 of the sorted keys: the same rows give the same token whatever their order. */
function dedupToken(table: string, keys: string[]): string {
  const hash = createHash('sha256');
  for (const key of keys.sort()) hash.update(key).update('\n');
  return `${table}:${hash.digest('hex')}`;
}

function safeJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** The batching ClickHouse sink. Implements the pipeline's {@link UnitSink}. */
export class SinkWriter implements UnitSink {
  private readonly store: Store;
  private readonly log: Logger;
  private readonly cursors: CursorStore;
  private readonly maxRows: number;
  private readonly maxBytes: number;
  private readonly maxAgeMs: number;
  private readonly retryPolicy: RetryPolicy;
  private readonly signal: AbortSignal | undefined;
  private readonly clock: () => number;
  private readonly callOptions: CallOptions;

  private current: Batch = emptyBatch();
  /** The last flush started; never rejects (failures land in `failure`). */
  private pending: Promise<void> = Promise.resolve();
  /** Flushes chained and not finished (the one in flight included). */
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;
  private closed = false;

  /** Live counters; see {@link SinkStats}. */
  readonly stats: SinkStats = {
    flushes: 0,
    retries: 0,
    written: { messages: 0, events: 0, dead_letters: 0, recalls: 0, cursors: 0 },
    duplicates: { messages: 0, events: 0, dead_letters: 0 },
    invalid: 0,
    lastFlushMs: 0,
    lastLookupMs: 0,
    lastFlushRows: 0,
    bufferedRows: 0,
  };

  /**
   * @param store the ClickHouse store (the writer does not close it)
   * @param log the writer's logger
   */
  constructor(store: Store, log: Logger, options: SinkWriterOptions = {}) {
    this.store = store;
    this.log = log;
    this.cursors = options.cursors ?? new CursorStore(store);
    this.maxRows = options.maxRows ?? SINK_DEFAULTS.maxRows;
    this.maxBytes = options.maxBytes ?? SINK_DEFAULTS.maxBytes;
    this.maxAgeMs = options.maxAgeMs ?? SINK_DEFAULTS.maxAgeMs;
    this.retryPolicy = options.retry ?? SINK_RETRY;
    this.signal = options.signal;
    this.clock = options.clock ?? Date.now;
    this.callOptions = this.signal === undefined ? {} : { signal: this.signal };
  }

  /**
   * Buffers a unit. Resolves once buffered; when the buffer is full, waits for the flush in
   * flight and starts the next one.
   *
   * @throws the error that stopped the writer (a permanent flush failure), or when closed
   */
  async add(unit: SinkUnit): Promise<void> {
    // Age-triggered flushes chain without waiting; when one is in flight and another already
    // queued behind it (ClickHouse slower than maxAgeMs, or retrying), take no more units until
    // they are done, so memory stays bounded at about three batches.
    if (this.queued >= 2) await this.pending;
    this.assertUsable();
    this.append(unit);
    if (this.current.rows >= this.maxRows || this.current.bytes >= this.maxBytes) {
      await this.pending;
      this.assertUsable();
      this.startFlush();
    } else if (this.current.units === 1) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.startFlush();
      }, this.maxAgeMs);
      this.timer.unref();
    }
  }

  /**
   * Stores everything buffered so far, then its cursors.
   *
   * @throws the error that stopped the writer
   */
  async flush(): Promise<void> {
    if (this.failure === undefined) this.startFlush();
    await this.pending;
    if (this.failure !== undefined) throw this.failure;
  }

  /** Flushes the rest and refuses further units. Does not close the store. */
  async close(): Promise<void> {
    if (this.closed) {
      await this.pending;
      if (this.failure !== undefined) throw this.failure;
      return;
    }
    try {
      await this.flush();
    } finally {
      this.closed = true;
      if (this.timer !== undefined) clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private assertUsable(): void {
    if (this.failure !== undefined) throw this.failure;
    if (this.closed) throw new MsgpipeError('MSGPIPE_ERR_SHUTDOWN', 'The sink writer is closed.');
  }

  private append(unit: SinkUnit): void {
    const batch = this.current;
    const { messages, events, deadLetters, recalls } = unit.output;
    let bytes = 0;
    for (const m of messages) {
      batch.messages.push(m);
      bytes += estimateMessageBytes(m);
    }
    for (const e of events) {
      batch.events.push(e);
      bytes += estimateEventBytes(e);
    }
    for (const d of deadLetters) {
      batch.deadLetters.push(d);
      bytes += estimateDeadLetterBytes(d);
    }
    for (const r of recalls) batch.recalls.push(r);
    bytes += recalls.length * 200;
    if (unit.cursor !== undefined) {
      // Keep insertion order = order of the last update per stream.
      const key = `${unit.cursor.source}\u001f${unit.cursor.stream}`;
      batch.cursors.delete(key);
      batch.cursors.set(key, unit.cursor);
    }
    const rows = messages.length + events.length + deadLetters.length + recalls.length;
    batch.rows += rows;
    batch.bytes += bytes;
    batch.units += 1;
    this.stats.bufferedRows += rows;
  }

  /** Takes the current batch and chains its flush after the one in flight. */
  private startFlush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.current.units === 0) return;
    const batch = this.current;
    this.current = emptyBatch();
    this.queued += 1;
    this.pending = this.pending
      .then(async () => {
        // A failed batch stops the line: storing a later one would let its cursor skip the failed rows.
        if (this.failure === undefined) await this.flushBatch(batch);
      })
      .catch((err: unknown) => {
        this.failure ??=
          err instanceof Error ? err : new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'Sink flush failed.', { cause: err });
        this.log.error({ err, rows: batch.rows }, 'Sink flush failed; the writer stops and no cursor of the batch was saved.');
      })
      .finally(() => {
        this.queued -= 1;
        this.stats.bufferedRows -= batch.rows;
      });
  }

  private async flushBatch(batch: Batch): Promise<void> {
    const started = performance.now();
    const prepared = this.prepare(batch);
    const outcome = await retry(async () => this.storeBatch(prepared), {
      policy: this.retryPolicy,
      ...(this.signal === undefined ? {} : { signal: this.signal }),
      onRetry: (err, attempt, waitMs) => {
        this.stats.retries += 1;
        this.log.warn({ err, attempt, waitMs }, 'Sink flush failed; retrying.');
      },
    });
    const s = this.stats;
    s.flushes += 1;
    s.written.messages += outcome.messages;
    s.written.events += outcome.events;
    s.written.dead_letters += outcome.deadLetters;
    s.written.recalls += outcome.recalls;
    s.written.cursors += prepared.cursors.length;
    s.duplicates.messages += prepared.duplicates.messages + prepared.messages.length - outcome.messages;
    s.duplicates.events += prepared.duplicates.events + prepared.events.length - outcome.events;
    s.duplicates.dead_letters += prepared.duplicates.dead_letters + prepared.deadLetters.length - outcome.deadLetters;
    s.invalid += prepared.invalid;
    s.lastFlushMs = performance.now() - started;
    s.lastLookupMs = outcome.lookupMs;
    s.lastFlushRows = prepared.rows;
    this.log.debug(
      {
        messages: outcome.messages,
        events: outcome.events,
        deadLetters: outcome.deadLetters,
        recalls: outcome.recalls,
        cursors: prepared.cursors.length,
        ms: Math.round(s.lastFlushMs),
        lookupMs: Math.round(outcome.lookupMs),
      },
      'Sink batch stored.',
    );
  }

  /** Dedup inside the batch, validation, keys: everything that needs no I/O (done once per batch). */
  private prepare(batch: Batch): Prepared {
    const now = this.clock();
    const duplicates: TableCounts = { messages: 0, events: 0, dead_letters: 0 };
    const deadLetters: DeadLetterRow[] = [...batch.deadLetters];
    let invalid = 0;
    const sinkDeadLetter = (table: string, key: string, row: MessageRow | EventRow, reason: string): void => {
      invalid += 1;
      deadLetters.push({
        tenant: row.tenant,
        source: row.source,
        source_type: row.source_type,
        stage: 'sink',
        error_code: 'MSGPIPE_ERR_SHAPE',
        error_message: `Row refused by the ${table} sink: ${reason}.`,
        original_base64: Buffer.from(safeJson(row), 'utf8').toString('base64'),
        origin_key: `sink:${table}:${key}`,
        occurred_at: now,
      });
    };

    const messages: { key: string; row: MessageRow }[] = [];
    const seenMessages = new Set<string>();
    for (const row of batch.messages) {
      const key = messageKey(row);
      const reason = invalidMessageReason(row);
      if (reason !== undefined) sinkDeadLetter(MESSAGES_TABLE, key, row, reason);
      else if (seenMessages.has(key)) duplicates.messages += 1;
      else {
        seenMessages.add(key);
        messages.push({ key, row });
      }
    }

    const events: { key: string; row: EventRow }[] = [];
    const seenEvents = new Set<string>();
    for (const row of batch.events) {
      const key = eventKey(row);
      const reason = invalidEventReason(row);
      if (reason !== undefined) sinkDeadLetter(EVENTS_TABLE, key, row, reason);
      else if (seenEvents.has(key)) duplicates.events += 1;
      else {
        seenEvents.add(key);
        events.push({ key, row });
      }
    }

    const letters: { id: string; row: DeadLetterRow }[] = [];
    const seenLetters = new Set<string>();
    for (const row of deadLetters) {
      const id = deadLetterId(row);
      if (seenLetters.has(id)) duplicates.dead_letters += 1;
      else {
        seenLetters.add(id);
        letters.push({ id, row });
      }
    }

    const recallTimes = new Map<string, number>();
    for (const mark of batch.recalls) {
      const key = recallTargetKey(mark);
      const prev = recallTimes.get(key);
      if (prev === undefined || mark.recall_time < prev) recallTimes.set(key, mark.recall_time);
    }

    return {
      messages,
      events,
      deadLetters: letters,
      recallTimes,
      recalls: batch.recalls,
      cursors: [...batch.cursors.values()],
      duplicates,
      invalid,
      rows: batch.rows,
    };
  }

  /** One attempt at storing a prepared batch; safe to repeat after any failure. */
  private async storeBatch(
    p: Prepared,
  ): Promise<{ messages: number; events: number; deadLetters: number; recalls: number; lookupMs: number }> {
    const opts = this.callOptions;
    const messageRows = p.messages.map((m) => m.row);
    const lookupStarted = performance.now();
    const [storedMessages, lateRecalls, storedEvents, storedLetters] = await Promise.all([
      findStoredMessages(this.store, messageRows, opts),
      findStoredRecalls(this.store, messageRows, opts),
      findStoredEvents(
        this.store,
        p.events.map((e) => e.row),
        opts,
      ),
      findStoredDeadLetters(
        this.store,
        p.deadLetters.map((d) => d.id),
        opts,
      ),
    ]);
    const lookupMs = performance.now() - lookupStarted;

    // Messages, with the recalls of targets in this insert applied before they are written.
    const newMessages = p.messages.filter((m) => !storedMessages.has(m.key));
    const insertedKeys = new Set<string>();
    const messageInsert = newMessages.map(({ key, row }) => {
      insertedKeys.add(key);
      const batchTime = p.recallTimes.get(key);
      const lateTime = lateRecalls.get(key);
      const time = batchTime === undefined ? lateTime : lateTime === undefined ? batchTime : Math.min(batchTime, lateTime);
      return messageInsertRow(row, time);
    });
    await this.store.insert(MESSAGES_TABLE, messageInsert, {
      ...opts,
      columns: MESSAGE_COLUMNS,
      dedupToken: dedupToken(MESSAGES_TABLE, [...insertedKeys]),
    });

    const newEvents = p.events.filter((e) => !storedEvents.has(e.key));
    await this.store.insert(
      EVENTS_TABLE,
      newEvents.map((e) => e.row),
      { ...opts, columns: EVENT_COLUMNS, dedupToken: dedupToken(EVENTS_TABLE, newEvents.map((e) => e.key)) },
    );

    const newLetters = p.deadLetters.filter((d) => !storedLetters.has(d.id));
    await this.store.insert(
      DEAD_LETTERS_TABLE,
      newLetters.map((d) => deadLetterInsertRow(d.row, d.id)),
      { ...opts, columns: DEAD_LETTER_COLUMNS, dedupToken: dedupToken(DEAD_LETTERS_TABLE, newLetters.map((d) => d.id)) },
    );

    // Recalls whose target was not part of this insert: a lightweight UPDATE of the stored row.
    const updates = p.recalls.filter((mark) => !insertedKeys.has(recallTargetKey(mark)));
    await applyRecalls(this.store, updates, opts);

    // Only now, with every row of the batch stored, may the cursors move.
    await this.cursors.save(p.cursors, opts);

    return {
      messages: newMessages.length,
      events: newEvents.length,
      deadLetters: newLetters.length,
      recalls: p.recalls.length,
      lookupMs,
    };
  }
}
