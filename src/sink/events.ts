/**
 * Table `events` (migrations/0005_create_events.sql, docs/schema.md#events): server instructions
 * that are not chat messages; columns = the fields of {@link EventRow}.
 *
 * Identity of an event: (tenant, staff_id, event_id). Same scheme as messages: the writer drops
 * keys already stored, the sort key folds any copy that slips through.
 */
import type { EventRow } from '../core/types.ts';
import { isUnixMs, stringList, type CallOptions, type Store } from './clickhouse.ts';

export const EVENTS_TABLE = 'events';

/** The columns the writer inserts, in order: every {@link EventRow} field. */
export const EVENT_COLUMNS = [
  'tenant',
  'source',
  'source_type',
  'staff_id',
  'event_id',
  'event_type',
  'event_time',
  'session_id',
  'payload',
  'raw',
  'ingested_at',
] as const satisfies readonly (keyof EventRow)[];

const SEP = '\u001f';

/** The identity of an event as one string. */
export function eventKey(row: { tenant: string; staff_id: string; event_id: string }): string {
  return `${row.tenant}${SEP}${row.staff_id}${SEP}${row.event_id}`;
}

/** Why ClickHouse would refuse this row, or undefined when it is insertable. */
export function invalidEventReason(row: EventRow): string | undefined {
  // The row type is a promise the producer made; check what actually arrived.
  const r = row as unknown as Readonly<Record<string, unknown>>;
  if (typeof r['event_id'] !== 'string' || r['event_id'] === '') return 'event_id is empty';
  for (const t of [r['event_time'], r['ingested_at']]) {
    if (!isUnixMs(t)) return 'time is not a unix ms time';
  }
  for (const field of ['tenant', 'source', 'source_type', 'staff_id', 'event_type', 'session_id', 'payload', 'raw']) {
    if (typeof r[field] !== 'string') return `${field} is not a string`;
  }
  return undefined;
}

/** Approximate JSONEachRow size of a row. */
export function estimateEventBytes(row: EventRow): number {
  return 300 + row.event_id.length + row.session_id.length + Buffer.byteLength(row.payload) + Buffer.byteLength(row.raw);
}

/** The keys of `rows` already stored (by event_id bloom filter, time range and tenant/staff). */
export async function findStoredEvents(
  store: Store,
  rows: readonly EventRow[],
  options: CallOptions = {},
): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of rows) {
    if (r.event_time < lo) lo = r.event_time;
    if (r.event_time > hi) hi = r.event_time;
  }
  const ids = stringList('ids', [...new Set(rows.map((r) => r.event_id))]);
  const found = await store.query<{ tenant: string; staff_id: string; event_id: string }>(
    `SELECT tenant, staff_id, event_id FROM ${EVENTS_TABLE}
     WHERE tenant IN {tenants:Array(String)} AND staff_id IN {staffs:Array(String)}
       AND event_time >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND event_time <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')
       AND event_id IN ${ids.sql}`,
    {
      tenants: [...new Set(rows.map((r) => r.tenant))],
      staffs: [...new Set(rows.map((r) => r.staff_id))],
      lo,
      hi,
      ...ids.params,
    },
    options,
  );
  return new Set(found.map(eventKey));
}

/** Select list that reads `events` back in the {@link EventRow} shape (times as unix ms). */
export const EVENT_SELECT = `tenant, source, source_type, staff_id, event_id, event_type,
  toFloat64(toUnixTimestamp64Milli(event_time)) AS event_time, session_id, payload, raw,
  toFloat64(toUnixTimestamp64Milli(ingested_at)) AS ingested_at`;
