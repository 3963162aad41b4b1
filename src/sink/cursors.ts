/**
 * Table `cursors` (migrations/0007_create_cursors.sql, docs/schema.md#cursors): embedded-mode
 * cursor storage, columns source, stream, cursor, updated_at DateTime64(6).
 *
 * Contract: a save appends one row per (source, stream); the row with the greatest `updated_at`
 * is the cursor (argMax on read, ReplacingMergeTree(updated_at) on merge). `updated_at` is made
 * strictly increasing per process, so two saves in the same microsecond still order correctly,
 * and never below a value this store has read, so a clock that stepped back after a restart
 * cannot make an old cursor win.
 *
 * The writer saves cursors only after the rows they cover are stored (DESIGN §1).
 */
import { createHash } from 'node:crypto';

import type { CursorReader, CursorUpdate } from '../core/pipeline.ts';
import type { CallOptions, Store } from './clickhouse.ts';

export const CURSORS_TABLE = 'cursors';

/** Cursor storage on the `cursors` table. */
export class CursorStore implements CursorReader {
  private readonly store: Store;
  private readonly clockMs: () => number;
  /** Largest updated_at (µs since epoch) written or read by this instance. */
  private lastMicros = 0;
  /** Whether lastMicros has seen the table's maximum (read once, before the first save). */
  private primed = false;

  constructor(store: Store, clockMs: () => number = Date.now) {
    this.store = store;
    this.clockMs = clockMs;
  }

  /** The latest cursor of (source, stream), or undefined when none was saved. */
  async load(source: string, stream: string, options: CallOptions = {}): Promise<string | undefined> {
    const rows = await this.store.query<{ latest_cursor: string; updated_us: string }>(
      `SELECT argMax(cursor, updated_at) AS latest_cursor, toString(toUnixTimestamp64Micro(max(updated_at))) AS updated_us
       FROM ${CURSORS_TABLE} WHERE source = {source:String} AND stream = {stream:String}
       GROUP BY source, stream`,
      { source, stream },
      options,
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    this.observe(row.updated_us);
    return row.latest_cursor;
  }

  /** Every stream's latest cursor of `source` (stream → cursor). */
  async loadAll(source: string, options: CallOptions = {}): Promise<Map<string, string>> {
    const rows = await this.store.query<{ stream: string; latest_cursor: string; updated_us: string }>(
      `SELECT stream, argMax(cursor, updated_at) AS latest_cursor, toString(toUnixTimestamp64Micro(max(updated_at))) AS updated_us
       FROM ${CURSORS_TABLE} WHERE source = {source:String}
       GROUP BY stream ORDER BY stream`,
      { source },
      options,
    );
    for (const row of rows) this.observe(row.updated_us);
    return new Map(rows.map((r) => [r.stream, r.latest_cursor]));
  }

  /**
   * Saves the cursors; for the same (source, stream) the last one in `updates` wins. One insert,
   * with a dedup token over its exact content so a retried save is not stored twice.
   */
  async save(updates: readonly CursorUpdate[], options: CallOptions = {}): Promise<void> {
    if (updates.length === 0) return;
    if (!this.primed) {
      const rows = await this.store.query<{ updated_us: string }>(
        `SELECT toString(toUnixTimestamp64Micro(max(updated_at))) AS updated_us FROM ${CURSORS_TABLE}`,
        {},
        options,
      );
      for (const row of rows) this.observe(row.updated_us);
      this.primed = true;
    }
    const latest = new Map<string, CursorUpdate>();
    for (const u of updates) {
      const key = `${u.source}\u001f${u.stream}`;
      latest.delete(key);
      latest.set(key, u);
    }
    const rows = [...latest.values()].map((u) => ({
      source: u.source,
      stream: u.stream,
      cursor: u.cursor,
      updated_at: this.nextMicros(),
    }));
    const hash = createHash('sha256');
    for (const r of rows) hash.update(`${r.source}\u001f${r.stream}\u001f${r.cursor}\u001f${r.updated_at}\n`);
    await this.store.insert(CURSORS_TABLE, rows, { ...options, dedupToken: `cursors:${hash.digest('hex')}` });
  }

  private observe(micros: string): void {
    const value = Number(micros);
    if (value > this.lastMicros) this.lastMicros = value;
  }

  private nextMicros(): number {
    // µs since epoch stay below 2^53 until the year 2255.
    this.lastMicros = Math.max(Math.floor(this.clockMs() * 1000), this.lastMicros + 1);
    return this.lastMicros;
  }
}
