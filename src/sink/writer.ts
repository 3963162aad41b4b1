/**
 * The sink stage: buffers transform outputs and stores them in ClickHouse in batches, then saves
 * the cursors those batches cover (DESIGN §1, docs/component-spec.md §Sink).
 *
 * Contract:
 * - `add` resolves once the unit is buffered; when the buffer is full and two flushes are
 *   already chained (one storing, one waiting with its lookups done), it first waits for the
 *   older one (backpressure), so at most three batches are in memory. Messages are encoded
 *   as they arrive (the batch holds their insert bytes, not row objects).
 * - A batch is flushed when it reaches `maxRows` rows, about `maxBytes` bytes of JSON, or is
 *   `maxAgeMs` old. Batches are stored strictly in order.
 * - A flush stores, in this order: messages, events, dead letters, recalls, and only then the
 *   cursors of its units (the last per source + stream). Rows already stored (same identity) and
 *   duplicates inside the batch are dropped, so a pipeline that re-reads pages after a crash
 *   stores nothing twice and no FINAL is needed to read exactly one row per message.
 * - Every insert carries `insert_deduplication_token` = sha256 of the sorted keys it inserts,
 *   with `async_insert=0`.
 * - A retriable failure retries the whole flush (each step is idempotent: lookups run again, so
 *   nothing is lost or doubled). A failed insert into `messages` is first sent again as it was,
 *   with its token, so that `sessions_mv` counts what its part may have missed (ADR 0019); this
 *   relies on the token still being in the table's deduplication window (10 000 inserts), so
 *   only within 120 s of the first send.
 *   A permanent failure, or running out of attempts, rejects, and the writer refuses further
 *   work. The cursor of a failed batch is never saved.
 * - A row that ClickHouse would refuse (bad msgid, seq, time …) becomes a dead letter of stage
 *   `sink` instead of failing its batch forever.
 */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import { type CursorUpdate, failureSignal, type SinkObserver, type SinkUnit, type UnitSink } from '../core/pipeline.ts';
import { retry, type RetryPolicy } from '../core/retry.ts';
import type { DeadLetterRow, EditMark, EventRow, MessageEditRow, MessageRow, RecallMark } from '../core/types.ts';
import { type CallOptions, type InsertOptions, JsonLines, type Store } from './clickhouse.ts';
import { CursorStore } from './cursors.ts';
import { editTargetKey, estimateEditBytes, historyKey, invalidEditHistoryReason, invalidEditReason, storeEdits } from './edits.ts';
import {
  DEAD_LETTER_COLUMNS,
  DEAD_LETTERS_TABLE,
  deadLetterInsertRow,
  estimateDeadLetterBytes,
  findStoredDeadLetters,
  identityOf,
  refusedRowLetter,
  rowJson,
  type RowOrigin,
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
  encodeMessageLine,
  findStored,
  invalidMessageReason,
  invalidRecallReason,
  keepEarliest,
  MESSAGE_COLUMNS,
  messageKey,
  messageLineEnd,
  MESSAGES_TABLE,
  recallTargetKey,
  type MessageIdentity,
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
  /** Told about every stored batch (metrics); see {@link SinkObserver}. */
  readonly observer?: SinkObserver;
  /**
   * Whether a failure of this writer ends its process, as in the embedded pipeline. Then an
   * insert into `messages` that failed stays in the insert journal (src/sink/journal.ts) when
   * the writer gives up, and the next start recounts the sessions of its rows. Default false:
   * the writer removes it, since a process that goes on (the Kafka sink, whose consumer takes
   * the records again) would store them again before any start could recount them.
   */
  readonly failureEndsProcess?: boolean;
}

/**
 * How long after it was sent a failed insert into `messages` is still sent again as it was. The
 * tables remember 10 000 insert tokens (migrations 0011, 0012); later, the rows could be inserted
 * and counted twice, so the retry looks up what is stored instead and logs the rebuild hint.
 */
const RESEND_WITHIN_MS = 120_000;

/** The defaults of the `sink` configuration (src/core/config.ts), for writers made without one. */
export const SINK_DEFAULTS = { maxRows: 20_000, maxBytes: 8 * 1024 * 1024, maxAgeMs: 1000 } as const;

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
  /**
   * Rows inserted, per table; `recalls` and `edits` are updates of stored messages (Yunhu edits:
   * `edits` the latest contents applied, `message_edits` the earlier versions inserted).
   */
  readonly written: TableCounts & { recalls: number; cursors: number; edits: number; message_edits: number };
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

/** Zeroed {@link SinkStats}. */
export function newSinkStats(): SinkStats {
  return {
    flushes: 0,
    retries: 0,
    written: { messages: 0, events: 0, dead_letters: 0, recalls: 0, cursors: 0, edits: 0, message_edits: 0 },
    duplicates: { messages: 0, events: 0, dead_letters: 0 },
    invalid: 0,
    lastFlushMs: 0,
    lastLookupMs: 0,
    lastFlushRows: 0,
    bufferedRows: 0,
  };
}

/** A buffered message: its identity for the lookups and its line, encoded on arrival. */
interface EncodedMessage extends MessageIdentity {
  readonly key: string;
  /** For a revocation: the key of the message it revokes (as {@link findStored} reads it). */
  readonly revokes: string | undefined;
  /** {@link encodeMessageLine}: the row up to `ingested_at`. */
  readonly line: Buffer;
}

/** A message ClickHouse would refuse, kept whole for its dead letter. */
interface RefusedMessage {
  readonly key: string;
  readonly row: MessageRow;
  readonly reason: string;
  /** The record the row was read from, when there is one (the Kafka sink). */
  readonly origin?: RowOrigin | undefined;
}

interface Batch {
  /** Valid messages, encoded; and the refused ones, both in arrival order. */
  readonly messages: EncodedMessage[];
  readonly refused: RefusedMessage[];
  readonly events: EventRow[];
  readonly deadLetters: DeadLetterRow[];
  readonly recalls: RecallMark[];
  /** Edits and edit history (Yunhu), stored after the messages by storeEdits. */
  readonly edits: EditMark[];
  readonly editHistory: MessageEditRow[];
  readonly cursors: Map<string, CursorUpdate>;
  rows: number;
  bytes: number;
  units: number;
}

/** A batch after the checks that do not need the store: deduplicated, validated, keyed. */
interface Prepared {
  readonly messages: readonly EncodedMessage[];
  readonly events: readonly { key: string; row: EventRow }[];
  readonly deadLetters: readonly { id: string; row: DeadLetterRow }[];
  /** Target key → earliest recall time, and the marks themselves for the UPDATE. */
  readonly recallTimes: ReadonlyMap<string, number>;
  readonly recalls: readonly RecallMark[];
  readonly edits: readonly EditMark[];
  readonly editHistory: readonly MessageEditRow[];
  readonly cursors: readonly CursorUpdate[];
  readonly duplicates: TableCounts;
  readonly invalid: number;
  readonly rows: number;
}

/** Rows one stored batch inserted per table, and how long its lookup took. */
interface StoreOutcome {
  readonly messages: number;
  readonly events: number;
  readonly deadLetters: number;
  readonly recalls: number;
  readonly edits: number;
  readonly editHistory: number;
  readonly lookupMs: number;
}

/** What the lookups found already stored for a prepared batch. */
interface Found {
  readonly messages: ReadonlySet<string>;
  /** Target key → earliest stored revocation time. */
  readonly recalls: ReadonlyMap<string, number>;
  readonly events: ReadonlySet<string>;
  readonly deadLetters: ReadonlySet<string>;
  readonly ms: number;
}

/**
 * Everything a stored batch holds, keyed as {@link Found}: once the batch is stored, each of
 * these is in ClickHouse (inserted by it or found there before).
 */
function storedBy(p: Prepared): Found {
  const recalls = new Map<string, number>();
  for (const m of p.messages) {
    if (m.revokes === undefined) continue;
    keepEarliest(recalls, m.revokes, m.msg_time);
  }
  return {
    messages: new Set(p.messages.map((m) => m.key)),
    recalls,
    events: new Set(p.events.map((e) => e.key)),
    deadLetters: new Set(p.deadLetters.map((d) => d.id)),
    ms: 0,
  };
}

/** A lookup that may have missed the batch stored just before: adds what that batch holds. */
function withStored(found: Found, stored: Found | undefined): Found {
  if (stored === undefined) return found;
  const recalls = new Map(found.recalls);
  for (const [key, time] of stored.recalls) keepEarliest(recalls, key, time);
  return {
    messages: new Set([...found.messages, ...stored.messages]),
    recalls,
    events: new Set([...found.events, ...stored.events]),
    deadLetters: new Set([...found.deadLetters, ...stored.deadLetters]),
    ms: found.ms,
  };
}

function emptyBatch(): Batch {
  return {
    messages: [],
    refused: [],
    events: [],
    deadLetters: [],
    recalls: [],
    edits: [],
    editHistory: [],
    cursors: new Map(),
    rows: 0,
    bytes: 0,
    units: 0,
  };
}

/** The fields of an {@link EncodedUnit}. */
type EncodedUnitParts = Pick<
  EncodedUnit,
  'messages' | 'refused' | 'events' | 'deadLetters' | 'recalls' | 'edits' | 'editHistory' | 'cursor' | 'rows' | 'bytes'
>;

type WireIdentity = Omit<EncodedMessage, 'line'>;

/** An {@link EncodedUnit} as structured-clone data: message identities, their lines in one buffer. */
export interface EncodedUnitWire extends Omit<EncodedUnitParts, 'messages'> {
  readonly identities: readonly WireIdentity[];
  /** Every line, one after the other; line i ends at `ends[i]`. */
  readonly lines: Uint8Array;
  readonly ends: Uint32Array;
}

/**
 * A unit as a batch holds it: each valid message encoded ({@link encodeMessageLine}) and kept as
 * its identity and line, the refused ones whole, the rest as they came. Made on arrival, so row
 * objects die young; {@link EncodedUnit.of} makes one, {@link SinkWriter.add} takes either form.
 */
export class EncodedUnit {
  readonly messages: readonly EncodedMessage[];
  readonly refused: readonly RefusedMessage[];
  readonly events: readonly EventRow[];
  readonly deadLetters: readonly DeadLetterRow[];
  readonly recalls: readonly RecallMark[];
  readonly edits: readonly EditMark[];
  readonly editHistory: readonly MessageEditRow[];
  readonly cursor: CursorUpdate | undefined;
  /** Rows of every table the unit brings. */
  readonly rows: number;
  /** Approximate bytes, for the batch bound. */
  readonly bytes: number;

  private constructor(parts: EncodedUnitParts) {
    this.messages = parts.messages;
    this.refused = parts.refused;
    this.events = parts.events;
    this.deadLetters = parts.deadLetters;
    this.recalls = parts.recalls;
    this.edits = parts.edits;
    this.editHistory = parts.editHistory;
    this.cursor = parts.cursor;
    this.rows = parts.rows;
    this.bytes = parts.bytes;
  }

  /**
   * Encodes the unit's messages now. `originOf(i)` names the record message `i` was read from,
   * for the dead letter of a refused row (its bytes instead of the row as JSON).
   */
  static of(unit: SinkUnit, originOf?: (index: number) => RowOrigin | undefined): EncodedUnit {
    const messages: EncodedMessage[] = [];
    const refused: RefusedMessage[] = [];
    let bytes = 0;
    let i = -1;
    for (const m of unit.output.messages) {
      i++;
      const key = messageKey(m);
      const reason = invalidMessageReason(m);
      if (reason === undefined) {
        const line = encodeMessageLine(m);
        const revokes =
          m.msg_type === 'revoke' && m.pre_msgid !== ''
            ? messageKey({ tenant: m.tenant, staff_id: m.staff_id, msgid: m.pre_msgid })
            : undefined;
        messages.push({ key, revokes, tenant: m.tenant, staff_id: m.staff_id, msgid: m.msgid, msg_time: m.msg_time, line });
        bytes += line.length + 10;
      } else {
        const origin = originOf?.(i);
        refused.push({ key, row: m, reason, origin });
        bytes += refusedBytes(m, origin);
      }
    }
    const { events, deadLetters, recalls } = unit.output;
    const edits = unit.output.edits ?? [];
    const editHistory = unit.output.editHistory ?? [];
    bytes += recalls.length * 200 + estimateEditBytes(edits, editHistory);
    for (const e of events) bytes += estimateEventBytes(e);
    for (const d of deadLetters) bytes += estimateDeadLetterBytes(d);
    const rows = unit.output.messages.length + events.length + deadLetters.length + recalls.length + edits.length + editHistory.length;
    return new EncodedUnit({ messages, refused, events, deadLetters, recalls, edits, editHistory, cursor: unit.cursor, rows, bytes });
  }

  /**
   * The unit as plain data for another thread (structured clone): the message lines joined in
   * one buffer, to be listed in `transfer`, so they cross without a copy. {@link EncodedUnit.fromWire} undoes it.
   */
  toWire(): { wire: EncodedUnitWire; transfer: ArrayBuffer[] } {
    let total = 0;
    for (const m of this.messages) total += m.line.length;
    // A buffer of its own (never Node's shared pool), as it is transferred away.
    const lines = new Uint8Array(total);
    const ends = new Uint32Array(this.messages.length);
    const identities: WireIdentity[] = [];
    let at = 0;
    this.messages.forEach((m, i) => {
      lines.set(m.line, at);
      at += m.line.length;
      ends[i] = at;
      identities.push({ key: m.key, revokes: m.revokes, tenant: m.tenant, staff_id: m.staff_id, msgid: m.msgid, msg_time: m.msg_time });
    });
    const { messages: _messages, ...rest } = this.parts();
    return { wire: { ...rest, identities, lines, ends }, transfer: [lines.buffer] };
  }

  /** A unit made by {@link EncodedUnit.toWire} in another thread; the lines stay in its buffer. */
  static fromWire(wire: EncodedUnitWire): EncodedUnit {
    const { identities, lines, ends, ...rest } = wire;
    if (identities.length !== ends.length) throw new MsgpipeError('MSGPIPE_ERR_TRANSFORM_THREAD', 'Encoded unit from another thread is inconsistent.');
    const buffer = Buffer.from(lines.buffer, lines.byteOffset, lines.byteLength);
    let start = 0;
    const messages = identities.map((id, i): EncodedMessage => {
      const end = ends[i] ?? start;
      const line = buffer.subarray(start, end);
      start = end;
      return { ...id, line };
    });
    return new EncodedUnit({ ...rest, messages });
  }

  private parts(): EncodedUnitParts {
    const { messages, refused, events, deadLetters, recalls, edits, editHistory, cursor, rows, bytes } = this;
    return { messages, refused, events, deadLetters, recalls, edits, editHistory, cursor, rows, bytes };
  }
}

/** sha256 of the sorted keys: the same rows give the same token whatever their order. */
function dedupToken(table: string, keys: string[]): string {
  const hash = createHash('sha256');
  for (const key of keys.sort()) hash.update(key).update('\n');
  return `${table}:${hash.digest('hex')}`;
}

/**
 * The size of a refused row's dead letter, for the batch bound: the record's bytes (or the row as
 * JSON) in base64, and the rest of the letter. A provider sending millisecond times can make every
 * row of a page refused; counted at a fixed size, megabytes of them escaped the byte bound.
 */
function refusedBytes(row: MessageRow, origin: RowOrigin | undefined): number {
  const kept = origin === undefined ? Buffer.byteLength(rowJson(row)) : origin.bytes.length;
  return 600 + Math.ceil(kept / 3) * 4;
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
  private readonly failureEndsProcess: boolean;
  private readonly clock: () => number;
  private readonly callOptions: CallOptions;
  private readonly observer: SinkObserver | undefined;

  private current: Batch = emptyBatch();
  /** The last flush started; never rejects (failures land in `failure`). */
  private pending: Promise<void> = Promise.resolve();
  /** Flushes chained and not finished (the one in flight included). */
  private queued = 0;
  /** Completions of those flushes, oldest first; none rejects. */
  private readonly flights: Promise<void>[] = [];
  /** What the last stored batch holds, for the lookup of the next one (see {@link startFlush}). */
  private lastStored: Found | undefined;
  /** The insert into `messages` of the attempt that failed last, until it is answered; see {@link resendUnanswered}. */
  private unanswered: { readonly lines: JsonLines; readonly options: InsertOptions; readonly sentAt: number } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private failure: Error | undefined;
  private readonly failureSignal = failureSignal();
  /** Rejects with the error that stopped the writer, when it stops (see {@link UnitSink.failed}). */
  readonly failed: Promise<never> = this.failureSignal.failed;
  private closed = false;

  /** Live counters; see {@link SinkStats}. */
  readonly stats: SinkStats = newSinkStats();

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
    this.failureEndsProcess = options.failureEndsProcess ?? false;
    this.clock = options.clock ?? Date.now;
    this.callOptions = this.signal === undefined ? {} : { signal: this.signal };
    this.observer = options.observer;
  }

  /**
   * Buffers a unit. Resolves once buffered; when the buffer is full, waits for the flush in
   * flight and starts the next one.
   *
   * @throws the error that stopped the writer (a permanent flush failure), or when closed
   */
  async add(unit: SinkUnit | EncodedUnit): Promise<void> {
    // One batch is stored while the next waits with its lookups done and a third fills; with
    // two flushes chained, take no more units until the older one is done, so memory stays
    // bounded at about three batches.
    while (this.queued >= 2) await this.flights[0];
    this.assertUsable();
    this.append(unit);
    if (this.current.rows >= this.maxRows || this.current.bytes >= this.maxBytes) {
      while (this.queued >= 2) await this.flights[0];
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

  private append(unit: SinkUnit | EncodedUnit): void {
    const encoded = unit instanceof EncodedUnit ? unit : EncodedUnit.of(unit);
    const batch = this.current;
    for (const m of encoded.messages) batch.messages.push(m);
    for (const r of encoded.refused) batch.refused.push(r);
    for (const e of encoded.events) batch.events.push(e);
    for (const d of encoded.deadLetters) batch.deadLetters.push(d);
    for (const r of encoded.recalls) batch.recalls.push(r);
    for (const e of encoded.edits) batch.edits.push(e);
    for (const h of encoded.editHistory) batch.editHistory.push(h);
    if (encoded.cursor !== undefined) {
      // Keep insertion order = order of the last update per stream.
      const key = `${encoded.cursor.source}\u001f${encoded.cursor.stream}`;
      batch.cursors.delete(key);
      batch.cursors.set(key, encoded.cursor);
    }
    batch.rows += encoded.rows;
    batch.bytes += encoded.bytes;
    batch.units += 1;
    this.stats.bufferedRows += encoded.rows;
  }

  /**
   * Takes the current batch and chains its flush after the one in flight.
   *
   * Its duplicate lookups start early, as soon as every flush but the one just before it is
   * done, so they run while that one is still inserting. Such a lookup may miss rows of that
   * previous batch; the flush adds them from `lastStored` (what that batch holds, all stored by
   * then, since a failed batch stops the line). Retries look up again, after everything before.
   */
  private startFlush(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.current.units === 0) return;
    const batch = this.current;
    this.current = emptyBatch();
    this.queued += 1;
    const prepared = this.prepare(batch);
    const earlier = this.flights.slice(0, -1);
    const early: Promise<Found | undefined> = Promise.all(earlier)
      .then(async () => (this.failure === undefined ? this.lookup(prepared) : undefined))
      .catch(() => undefined);
    const done = this.pending
      .then(async () => {
        // A failed batch stops the line: storing a later one would let its cursor skip the failed rows.
        if (this.failure === undefined) await this.flushBatch(prepared, early);
      })
      .catch((err: unknown) => {
        this.failure ??=
          err instanceof Error ? err : new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'Sink flush failed.', { cause: err });
        this.log.error({ err, rows: batch.rows }, 'Sink flush failed; the writer stops and no cursor of the batch was saved.');
        this.failureSignal.report(this.failure);
      })
      .finally(() => {
        this.queued -= 1;
        this.stats.bufferedRows -= batch.rows;
        void this.flights.splice(this.flights.indexOf(done), 1);
      });
    this.flights.push(done);
    this.pending = done;
  }

  private async flushBatch(prepared: Prepared, early: Promise<Found | undefined>): Promise<void> {
    const started = performance.now();
    let first: Found | undefined = await early;
    if (first !== undefined) first = withStored(first, this.lastStored);
    let outcome: StoreOutcome;
    try {
      outcome = await retry(
        async () => {
          await this.resendUnanswered();
          const found = first ?? (await this.lookup(prepared));
          first = undefined;
          return this.storeBatch(prepared, found);
        },
        {
          policy: this.retryPolicy,
          ...(this.signal === undefined ? {} : { signal: this.signal }),
          onRetry: (err, attempt, waitMs) => {
            this.stats.retries += 1;
            this.log.warn({ err, attempt, waitMs }, 'Sink flush failed; retrying.');
          },
        },
      );
    } catch (err) {
      await this.abandonUnanswered();
      throw err;
    }
    this.lastStored = storedBy(prepared);
    const s = this.stats;
    s.flushes += 1;
    s.written.messages += outcome.messages;
    s.written.events += outcome.events;
    s.written.dead_letters += outcome.deadLetters;
    s.written.recalls += outcome.recalls;
    s.written.cursors += prepared.cursors.length;
    s.written.edits += outcome.edits;
    s.written.message_edits += outcome.editHistory;
    s.duplicates.messages += prepared.duplicates.messages + prepared.messages.length - outcome.messages;
    s.duplicates.events += prepared.duplicates.events + prepared.events.length - outcome.events;
    s.duplicates.dead_letters += prepared.duplicates.dead_letters + prepared.deadLetters.length - outcome.deadLetters;
    s.invalid += prepared.invalid;
    s.lastFlushMs = performance.now() - started;
    s.lastLookupMs = outcome.lookupMs;
    s.lastFlushRows = prepared.rows;
    this.observer?.stored?.({
      rows: prepared.rows,
      durationMs: s.lastFlushMs,
      deadLetters: prepared.deadLetters.map((d) => d.row),
      cursors: prepared.cursors,
    });
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
    const sinkDeadLetter = (
      table: string,
      key: string,
      row: MessageRow | EventRow | RecallMark | EditMark | MessageEditRow,
      reason: string,
      origin?: RowOrigin,
    ): void => {
      invalid += 1;
      deadLetters.push(refusedRowLetter(table, key, row, reason, now, origin));
    };

    for (const { key, row, reason, origin } of batch.refused) sinkDeadLetter(MESSAGES_TABLE, key, row, reason, origin);
    // Recalls and edits are checked as the rows are: one with an impossible time would fail the
    // batch's UPDATE (or insert) on every retry, and no later batch could be stored.
    const valid = <T extends RecallMark | EditMark | MessageEditRow>(
      table: string,
      items: readonly T[],
      reasonOf: (item: T) => string | undefined,
      keyOf: (item: T) => string,
    ): T[] => {
      const kept: T[] = [];
      for (const item of items) {
        const reason = reasonOf(item);
        if (reason === undefined) kept.push(item);
        else sinkDeadLetter(table, keyOf(item), item, reason);
      }
      return kept;
    };
    const recalls = valid('recalls', batch.recalls, invalidRecallReason, recallTargetKey);
    const edits = valid('edits', batch.edits, invalidEditReason, editTargetKey);
    const editHistory = valid('message_edits', batch.editHistory, invalidEditHistoryReason, historyKey);
    const messages: EncodedMessage[] = [];
    const seenMessages = new Set<string>();
    for (const m of batch.messages) {
      if (seenMessages.has(m.key)) duplicates.messages += 1;
      else {
        seenMessages.add(m.key);
        messages.push(m);
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
      const id = identityOf(row);
      if (seenLetters.has(id)) duplicates.dead_letters += 1;
      else {
        seenLetters.add(id);
        letters.push({ id, row });
      }
    }

    const recallTimes = new Map<string, number>();
    for (const mark of recalls) keepEarliest(recallTimes, recallTargetKey(mark), mark.recall_time);

    return {
      messages,
      events,
      deadLetters: letters,
      recallTimes,
      recalls,
      edits,
      editHistory,
      cursors: [...batch.cursors.values()],
      duplicates,
      invalid,
      rows: batch.rows,
    };
  }

  /**
   * Sends the insert into `messages` of the last failed attempt again, as it was, before the
   * retry looks up what is stored. That insert may have committed its part and failed in
   * `sessions_mv` (the two are not one transaction): the lookup would then find the messages
   * stored and leave them out, and the view would never count them. Sent again with its token,
   * the part is a duplicate and the view inserts only what it missed (src/sink/journal.ts).
   */
  private async resendUnanswered(): Promise<void> {
    const last = this.unanswered;
    if (last === undefined) return;
    if (performance.now() - last.sentAt > RESEND_WITHIN_MS) {
      // Too late to rely on the token: look up what is stored, as before the journal.
      await this.forgetUnanswered();
      return;
    }
    await this.store.insert(MESSAGES_TABLE, last.lines, last.options);
    this.unanswered = undefined;
  }

  /**
   * The writer gives up a batch whose last insert into `messages` failed. Its messages may be
   * stored without being counted in `sessions`. When the writer's failure ends the process, a
   * journaling store keeps the insert for the next start, and no other insert comes in between;
   * otherwise it goes (see {@link SinkWriterOptions.failureEndsProcess}).
   */
  private async abandonUnanswered(): Promise<void> {
    const last = this.unanswered;
    if (last === undefined) return;
    if (this.failureEndsProcess && this.store.forget !== undefined && this.signal?.aborted !== true) {
      this.unanswered = undefined;
      this.log.warn(
        { rows: last.lines.length },
        'The last insert into messages failed; the insert journal keeps it (unless writing the journal was what failed), and the next start recounts the sessions of its messages.',
      );
      return;
    }
    await this.forgetUnanswered();
  }

  /** Gives up sending the failed insert again: its journal file goes, and the log says what to check. */
  private async forgetUnanswered(): Promise<void> {
    const last = this.unanswered;
    if (last === undefined) return;
    this.unanswered = undefined;
    try {
      await this.store.forget?.(MESSAGES_TABLE, last.options);
    } catch (err) {
      this.log.warn({ err }, 'Could not remove the insert journal file of a batch given up.');
    }
    this.log.warn(
      { rows: last.lines.length },
      'The last insert into messages failed and is not sent again: its messages may be stored without being counted in sessions. Check sessions (docs/operations.md) and run msgpipe migrate --rebuild-sessions if they disagree.',
    );
  }

  /** The rows of a prepared batch already stored, and the revocations stored before their targets. */
  private async lookup(p: Prepared): Promise<Found> {
    const opts = this.callOptions;
    const started = performance.now();
    const [{ messages, recalls }, events, deadLetters] = await Promise.all([
      findStored(this.store, p.messages, opts),
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
    return { messages, recalls, events, deadLetters, ms: performance.now() - started };
  }

  /**
   * One attempt at storing a prepared batch, given what is already stored; safe to repeat after
   * any failure (with a fresh lookup).
   */
  private async storeBatch(
    p: Prepared,
    found: Found,
  ): Promise<StoreOutcome> {
    const opts = this.callOptions;
    const { messages: storedMessages, recalls: lateRecalls, events: storedEvents, deadLetters: storedLetters } = found;
    const lookupMs = found.ms;

    // Messages, with the recalls of targets in this insert applied before they are written.
    const newMessages = p.messages.filter((m) => !storedMessages.has(m.key));
    const insertedKeys = new Set<string>();
    const pieces: Buffer[] = [];
    for (const { key, line } of newMessages) {
      insertedKeys.add(key);
      const batchTime = p.recallTimes.get(key);
      const lateTime = lateRecalls.get(key);
      const time = batchTime === undefined ? lateTime : lateTime === undefined ? batchTime : Math.min(batchTime, lateTime);
      pieces.push(line, messageLineEnd(time));
    }
    const lines = new JsonLines(Buffer.concat(pieces), newMessages.length);
    const insertOptions: InsertOptions = { ...opts, columns: MESSAGE_COLUMNS, dedupToken: dedupToken(MESSAGES_TABLE, [...insertedKeys]) };
    this.unanswered = { lines, options: insertOptions, sentAt: performance.now() };
    await this.store.insert(MESSAGES_TABLE, lines, insertOptions);
    this.unanswered = undefined;

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

    // Edits (Yunhu): history rows not stored yet, then the latest content of edited messages.
    const edited = await storeEdits(this.store, p.edits, p.editHistory, opts);

    // Only now, with every row of the batch stored, may the cursors move.
    await this.cursors.save(p.cursors, opts);

    return {
      messages: newMessages.length,
      events: newEvents.length,
      deadLetters: newLetters.length,
      recalls: p.recalls.length,
      edits: edited.edits,
      editHistory: edited.history,
      lookupMs,
    };
  }
}
