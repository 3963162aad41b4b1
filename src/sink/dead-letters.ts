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

/** Identities given to dead letters that are not their own (see {@link refusedRowLetter}). */
const assignedIds = new WeakMap<DeadLetterRow, string>();

/**
 * The identity of `letter`: the one {@link refusedRowLetter} gave it, else {@link deadLetterId}.
 */
export function identityOf(letter: DeadLetterRow): string {
  return assignedIds.get(letter) ?? deadLetterId(letter);
}

/**
 * `letter`, the sink's dead letter of a `row` it refused, with the row's identity: `row` without
 * `ingested_at` (the transform's clock) under `sink:<table>:<key>`, whatever bytes and origin the
 * letter keeps. A record delivered again (another offset, another `ingested_at`) is the same
 * dead letter.
 */
export function refusedRowLetter(letter: DeadLetterRow, table: string, key: string, row: object): DeadLetterRow {
  const { ingested_at: _ingestedAt, ...stable } = row as { ingested_at?: unknown };
  let json = '';
  try {
    json = JSON.stringify(stable);
  } catch {
    // A row JSON cannot hold (a cycle): its key alone names it.
  }
  assignedIds.set(letter, deadLetterId({ ...letter, origin_key: `sink:${table}:${key}`, original_base64: Buffer.from(json, 'utf8').toString('base64') }));
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
