/**
 * Every sink runs the sink conformance suite: here the ClickHouse SinkWriter on chDB, one fresh
 * temp data directory per case (libchdb binds one directory per process, so each store is
 * closed before the next opens; vitest runs each test file in its own process).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pino } from 'pino';

import { MsgpipeError } from '../../src/core/errors.ts';
import type { DeadLetterRow, EventRow } from '../../src/core/types.ts';
import { openStore, type CallOptions, type InsertOptions, type QueryParams, type Store } from '../../src/sink/clickhouse.ts';
import { CursorStore } from '../../src/sink/cursors.ts';
import { DEAD_LETTER_SELECT } from '../../src/sink/dead-letters.ts';
import { EVENT_SELECT } from '../../src/sink/events.ts';
import { MESSAGE_SELECT } from '../../src/sink/messages.ts';
import { migrate } from '../../src/sink/migrate.ts';
import { SinkWriter } from '../../src/sink/writer.ts';
import { sinkConformance, type SinkTable, type SinkUnderTest, type SinkWriteFault, type StoredMessage } from './sink-suite.ts';

const silent = pino({ level: 'silent' });
const TABLES = new Set<string>(['messages', 'events', 'dead_letters', 'cursors']);

/** A store that records the writes that reach it and fails the ones a fault names. */
class RecordingStore implements Store {
  readonly backend: Store['backend'];
  readonly database: string;
  readonly writes: SinkTable[] = [];
  faults: { fault: SinkWriteFault; left: number }[] = [];
  private readonly inner: Store;

  constructor(inner: Store) {
    this.inner = inner;
    this.backend = inner.backend;
    this.database = inner.database;
  }

  query<T>(sql: string, params?: QueryParams, options?: CallOptions): Promise<T[]> {
    return this.inner.query<T>(sql, params, options);
  }

  async command(sql: string, params?: QueryParams, options?: CallOptions): Promise<void> {
    // The only statement a sink writes with: the UPDATE that marks recalled messages.
    const recall = /^\s*UPDATE\s+messages\b/i.test(sql);
    if (recall) await this.write('recalls', () => this.inner.command(sql, params, options));
    else await this.inner.command(sql, params, options);
  }

  async insert(table: string, rows: readonly object[], options?: InsertOptions): Promise<void> {
    if (rows.length === 0 || !TABLES.has(table)) {
      await this.inner.insert(table, rows, options);
      return;
    }
    await this.write(table as SinkTable, () => this.inner.insert(table, rows, options));
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private async write(table: SinkTable, run: () => Promise<void>): Promise<void> {
    const hit = this.faults.find((f) => f.fault.table === table && f.left > 0);
    if (hit !== undefined) {
      hit.left -= 1;
      if (hit.fault.afterWrite === true) {
        await run();
        this.writes.push(table);
      }
      throw new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', `injected failure on ${table}`, { retriable: hit.fault.retriable });
    }
    await run();
    this.writes.push(table);
  }
}

sinkConformance('SinkWriter on chDB', async (): Promise<SinkUnderTest> => {
  const dir = await mkdtemp(join(tmpdir(), 'msgpipe-conformance-'));
  const inner = await openStore({ path: dir, database: 'msgpipe' }, silent);
  await migrate(inner, silent);
  const store = new RecordingStore(inner);
  const cursors = new CursorStore(inner);
  const writers: SinkWriter[] = [];
  return {
    open: (bounds = {}) => {
      const writer = new SinkWriter(store, silent, {
        retry: { attempts: 5, minMs: 1, maxMs: 5, factor: 2 },
        maxRows: bounds.maxRows ?? 100_000,
        maxBytes: bounds.maxBytes ?? 64 * 1024 * 1024,
        maxAgeMs: bounds.maxAgeMs ?? 600_000,
      });
      writers.push(writer);
      return writer;
    },
    messages: async () => {
      const rows = await inner.query<StoredMessage & { recalled: number }>(`SELECT ${MESSAGE_SELECT} FROM messages`);
      return rows.map(({ recalled: _recalled, ...row }) => row);
    },
    events: () => inner.query<EventRow>(`SELECT ${EVENT_SELECT} FROM events`),
    deadLetters: async () => {
      const rows = await inner.query<DeadLetterRow & { dead_letter_id: string }>(`SELECT ${DEAD_LETTER_SELECT} FROM dead_letters`);
      return rows.map(({ dead_letter_id: _id, ...row }) => row);
    },
    cursor: (source, stream) => cursors.load(source, stream),
    writes: () => store.writes,
    fail: (fault) => {
      store.faults.push({ fault, left: fault.times });
    },
    heal: () => {
      store.faults = [];
    },
    dispose: async () => {
      // A writer abandoned by a "crash" may still hold a batch: let nothing reach a closed store.
      store.faults = [{ fault: { table: 'messages', times: Infinity, retriable: false }, left: Infinity }];
      await Promise.allSettled(writers.map((w) => w.close()));
      await inner.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
