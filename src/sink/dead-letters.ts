/**
 * Table `dead_letters` (migrations/0006_create_dead_letters.sql, docs/schema.md#dead_letters):
 * records that could not be processed; columns = the fields of {@link DeadLetterRow} plus
 * `dead_letter_id` (identity), `original` (ALIAS: the decoded bytes) and `original_size`.
 *
 * The original bytes travel as base64 in `original_base64` and are stored as that text, so any
 * byte sequence (invalid UTF-8, NULs, megabytes) comes back exactly.
 *
 * Identity: dead_letter_id = sha256 of (source, stage, origin_key, original_base64). A pipeline
 * that re-reads a page after a crash makes the same dead letter again; it is stored once.
 */
import { createHash } from 'node:crypto';

import type { DeadLetterRow } from '../core/types.ts';
import { stringList, type CallOptions, type Store } from './clickhouse.ts';

export const DEAD_LETTERS_TABLE = 'dead_letters';

/** The columns the writer inserts, in order: the identity and every {@link DeadLetterRow} field. */
export const DEAD_LETTER_COLUMNS = [
  'dead_letter_id',
  'tenant',
  'source',
  'source_type',
  'stage',
  'error_code',
  'error_message',
  'original_base64',
  'origin_key',
  'occurred_at',
] as const satisfies readonly (keyof DeadLetterRow | 'dead_letter_id')[];

/** The identity of a dead letter (hex sha256). */
export function deadLetterId(row: DeadLetterRow): string {
  return createHash('sha256')
    .update(`${row.source}\u001f${row.stage}\u001f${row.origin_key}\u001f`)
    .update(row.original_base64)
    .digest('hex');
}

/** The exact bytes a row was read from and where: what its dead letter keeps. */
export interface RowOrigin {
  readonly bytes: Uint8Array;
  readonly originKey: string;
}

/** `value` as JSON, or as text when JSON cannot hold it. */
export function rowJson(value: unknown): string {
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

/** Identities given to dead letters that are not their own (see {@link refusedRowLetter}). */
const assignedIds = new WeakMap<DeadLetterRow, string>();

/**
 * The identity of `letter`: the one {@link refusedRowLetter} gave it, else {@link deadLetterId}.
 */
export function identityOf(letter: DeadLetterRow): string {
  return assignedIds.get(letter) ?? deadLetterId(letter);
}

/**
 * The sink's dead letter of a `row` the `table` sink refused for `reason`: the bytes of the
 * record it was read from and that record's origin where there is one, else the row as JSON under
 * `sink:<table>:<key>`. Its identity is the row's (without `ingested_at`, the transform's clock)
 * whatever the letter keeps: a record delivered again (another offset, another `ingested_at`) is
 * the same dead letter. `source` names the source of a row that has none (a mark: its message's).
 */
export function refusedRowLetter(
  table: string,
  key: string,
  row: object,
  reason: string,
  now: number,
  origin?: RowOrigin,
  source?: Pick<DeadLetterRow, 'source' | 'source_type'>,
): DeadLetterRow {
  // The row type is a promise the producer made; take what actually arrived.
  const r = row as Readonly<Record<string, unknown>>;
  const letter: DeadLetterRow = {
    tenant: typeof r['tenant'] === 'string' ? r['tenant'] : '',
    source: source?.source ?? (typeof r['source'] === 'string' ? r['source'] : ''),
    source_type: source?.source_type ?? ((typeof r['source_type'] === 'string' ? r['source_type'] : '') as DeadLetterRow['source_type']),
    stage: 'sink',
    error_code: 'MSGPIPE_ERR_SHAPE',
    error_message: `Row refused by the ${table} sink: ${reason}.`,
    original_base64: origin === undefined ? Buffer.from(rowJson(row), 'utf8').toString('base64') : Buffer.from(origin.bytes).toString('base64'),
    origin_key: origin === undefined ? `sink:${table}:${key}` : origin.originKey,
    occurred_at: now,
  };
  const { ingested_at: _ingestedAt, ...stable } = r;
  assignedIds.set(letter, deadLetterId({ ...letter, origin_key: `sink:${table}:${key}`, original_base64: Buffer.from(rowJson(stable), 'utf8').toString('base64') }));
  return letter;
}

/** Approximate JSONEachRow size of a row. */
export function estimateDeadLetterBytes(row: DeadLetterRow): number {
  return 400 + row.original_base64.length + Buffer.byteLength(row.error_message) + row.origin_key.length;
}

/** The row to insert: the dead letter plus its identity. */
export function deadLetterInsertRow(row: DeadLetterRow, id: string): object {
  return { ...row, dead_letter_id: id };
}

/** The ids among `ids` already stored. */
export async function findStoredDeadLetters(
  store: Store,
  ids: readonly string[],
  options: CallOptions = {},
): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const list = stringList('ids', [...new Set(ids)]);
  const found = await store.query<{ dead_letter_id: string }>(
    `SELECT dead_letter_id FROM ${DEAD_LETTERS_TABLE} WHERE dead_letter_id IN ${list.sql}`,
    list.params,
    options,
  );
  return new Set(found.map((r) => r.dead_letter_id));
}

/** Select list that reads `dead_letters` back in the {@link DeadLetterRow} shape, plus the id. */
export const DEAD_LETTER_SELECT = `dead_letter_id, tenant, source, source_type, stage, error_code, error_message,
  original_base64, origin_key, toFloat64(toUnixTimestamp64Milli(occurred_at)) AS occurred_at`;
