/**
 * Table `messages` (migrations/0001_create_messages.sql, docs/schema.md#messages): one row per
 * chat message, columns = the fields of {@link MessageRow} plus `recalled` / `recall_time`.
 *
 * Identity of a message: (tenant, staff_id, msgid). This module holds what the writer needs for
 * that table: the key, a sanity check that keeps one bad row from failing a whole insert, the
 * lookup of keys already stored, the lookup of revocations stored before their target, the
 * recall UPDATE, and the select list that reads rows back in the {@link MessageRow} shape.
 */
import type { MessageRow, RecallMark } from '../core/types.ts';
import { formatParam, groupBySize, isInt32, isUnixMs, stringList, wellFormedJson, type CallOptions, type Store } from './clickhouse.ts';

export const MESSAGES_TABLE = 'messages';

/** The columns the writer inserts, in order: every {@link MessageRow} field plus the recall state. */
export const MESSAGE_COLUMNS = [
  'tenant',
  'source',
  'source_type',
  'staff_id',
  'msgid',
  'legacy_msgid',
  'session_id',
  'session_type',
  'room_id',
  'action',
  'from_id',
  'tolist',
  'peer_id',
  'is_sender',
  'msg_time',
  'seq',
  'msg_seq',
  'msg_type',
  'wx_msg_type',
  'app_type',
  'sys_type',
  'content_text',
  'content',
  'raw_content',
  'msg_source',
  'at_user_list',
  'pre_msgid',
  'sync_key_type',
  'item_type',
  'sub_type',
  'status',
  'img_status',
  'extinfo',
  'peer_name',
  'peer_avatar',
  'ingested_at',
  'recalled',
  'recall_time',
] as const satisfies readonly (keyof MessageRow | 'recalled' | 'recall_time')[];

/** Separates key parts; never appears in ids. */
const SEP = '\u001f';

/** The identity of a message as one string. */
export function messageKey(row: { tenant: string; staff_id: string; msgid: string }): string {
  return `${row.tenant}${SEP}${row.staff_id}${SEP}${row.msgid}`;
}

/** The identity of a recall's target, comparable with {@link messageKey}. */
export function recallTargetKey(mark: RecallMark): string {
  return `${mark.tenant}${SEP}${mark.staff_id}${SEP}${mark.target_msgid}`;
}

const UINT64_MAX = 18_446_744_073_709_551_615n;
const DECIMAL = /^\d{1,20}$/;

function isUInt64(value: unknown): boolean {
  return typeof value === 'string' && DECIMAL.test(value) && (value.length < 20 || BigInt(value) <= UINT64_MAX);
}

function isInt(value: unknown): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value);
}

function isStringArray(value: unknown): boolean {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

const STRING_FIELDS = [
  'tenant',
  'source',
  'source_type',
  'staff_id',
  'legacy_msgid',
  'session_id',
  'session_type',
  'room_id',
  'action',
  'from_id',
  'peer_id',
  'msg_type',
  'sys_type',
  'content_text',
  'content',
  'raw_content',
  'msg_source',
  'pre_msgid',
  'extinfo',
  'peer_name',
  'peer_avatar',
] as const satisfies readonly (keyof MessageRow)[];

const INT_FIELDS = [
  'msg_seq',
  'wx_msg_type',
  'app_type',
  'sync_key_type',
  'item_type',
  'sub_type',
  'status',
  'img_status',
] as const satisfies readonly (keyof MessageRow)[];

/** The Int32 columns: ClickHouse would store a larger integer wrapped, without an error. */
const INT32_FIELDS = ['wx_msg_type', 'app_type'] as const satisfies readonly (keyof MessageRow)[];

/**
 * Why ClickHouse would refuse this row, or undefined when it is insertable. Checked per row so a
 * single malformed row becomes a dead letter instead of failing its whole batch forever.
 */
export function invalidMessageReason(row: MessageRow): string | undefined {
  // The row type is a promise the producer made; check what actually arrived.
  const r = row as unknown as Readonly<Record<string, unknown>>;
  const { msgid, msg_time: msgTime, ingested_at: ingestedAt, is_sender: isSender } = r;
  if (typeof msgid !== 'string' || msgid === '') return 'msgid is empty';
  if (!isUInt64(r['seq'])) return 'seq is not a UInt64 decimal string';
  if (!isUnixMs(msgTime)) return 'msg_time is not a unix ms time';
  if (!isUnixMs(ingestedAt)) return 'ingested_at is not a unix ms time';
  if (isSender !== 0 && isSender !== 1) return 'is_sender is not 0 or 1';
  for (const field of STRING_FIELDS) if (typeof r[field] !== 'string') return `${field} is not a string`;
  for (const field of INT_FIELDS) if (!isInt(r[field])) return `${field} is not an integer`;
  for (const field of INT32_FIELDS) if (!isInt32(r[field])) return `${field} is outside Int32`;
  if (!isStringArray(r['tolist']) || !isStringArray(r['at_user_list'])) return 'tolist/at_user_list is not a string array';
  return undefined;
}

/**
 * Why a recall mark cannot be applied, or undefined when it can. Its time goes into a stored row
 * (or an UPDATE's Int64 parameter, which refuses a value past 2^53): a revoke with an impossible
 * CreateTime, whose own row the sink refuses, must not stop the batch with its mark.
 */
export function invalidRecallReason(mark: RecallMark): string | undefined {
  const r = mark as unknown as Readonly<Record<string, unknown>>;
  for (const field of ['tenant', 'staff_id', 'session_id']) if (typeof r[field] !== 'string') return `${field} is not a string`;
  if (typeof r['target_msgid'] !== 'string' || r['target_msgid'] === '') return 'target_msgid is empty';
  if (!isUnixMs(r['recall_time'])) return 'recall_time is not a unix ms time';
  return undefined;
}

/** Approximate JSONEachRow size of a row, for the batch byte bound (cheap: no serialisation). */
export function estimateMessageBytes(row: MessageRow): number {
  let n = 600 + row.msgid.length + row.session_id.length + row.from_id.length + row.peer_id.length;
  n += Buffer.byteLength(row.content_text) + Buffer.byteLength(row.content) + Buffer.byteLength(row.raw_content);
  n += row.msg_source.length + row.extinfo.length + Buffer.byteLength(row.peer_name) + row.peer_avatar.length;
  for (const to of row.tolist) n += to.length + 3;
  for (const at of row.at_user_list) n += at.length + 3;
  return n;
}

/**
 * The message as the start of its JSONCompactEachRow line: every {@link MESSAGE_COLUMNS} value up
 * to `ingested_at`, without the recall state and the closing bracket, which
 * {@link messageLineEnd} adds once the flush knows them. Encoded as the unit arrives, so a
 * buffered batch holds bytes instead of row objects (docs/benchmarks.md). Only for rows that
 * passed {@link invalidMessageReason}.
 */
export function encodeMessageLine(row: MessageRow): Buffer {
  const json = JSON.stringify([
    row.tenant,
    row.source,
    row.source_type,
    row.staff_id,
    row.msgid,
    row.legacy_msgid,
    row.session_id,
    row.session_type,
    row.room_id,
    row.action,
    row.from_id,
    row.tolist,
    row.peer_id,
    row.is_sender,
    row.msg_time,
    row.seq,
    row.msg_seq,
    row.msg_type,
    row.wx_msg_type,
    row.app_type,
    row.sys_type,
    row.content_text,
    row.content,
    row.raw_content,
    row.msg_source,
    row.at_user_list,
    row.pre_msgid,
    row.sync_key_type,
    row.item_type,
    row.sub_type,
    row.status,
    row.img_status,
    row.extinfo,
    row.peer_name,
    row.peer_avatar,
    row.ingested_at,
  ]);
  return Buffer.from(wellFormedJson(json).slice(0, -1), 'utf8');
}

const NOT_RECALLED = Buffer.from(',0,null]\n', 'utf8');

/** The end of a line begun by {@link encodeMessageLine}: `recalled`, `recall_time`, `]`, newline. */
export function messageLineEnd(recallTime: number | undefined): Buffer {
  return recallTime === undefined ? NOT_RECALLED : Buffer.from(`,1,${String(recallTime)}]\n`, 'utf8');
}

/** What the duplicate and recall lookups need of a message. */
export type MessageIdentity = Pick<MessageRow, 'tenant' | 'staff_id' | 'msgid' | 'msg_time'>;

/** The row to insert: the message as is, or with the recall applied when its revocation is known. */
export function messageInsertRow(row: MessageRow, recallTime: number | undefined): object {
  return recallTime === undefined ? row : { ...row, recalled: 1, recall_time: recallTime };
}

function timeBounds(times: Iterable<number>): { lo: number; hi: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const t of times) {
    if (t < lo) lo = t;
    if (t > hi) hi = t;
  }
  return { lo, hi };
}

/** Sets `key` to `time` unless the map already holds an earlier time for it. */
export function keepEarliest(times: Map<string, number>, key: string, time: number): void {
  const prev = times.get(key);
  if (prev === undefined || time < prev) times.set(key, time);
}

function distinct<T>(values: Iterable<T>): T[] {
  return [...new Set(values)];
}

/** What {@link findStored} found for a batch of messages. */
export interface StoredMessages {
  /** Keys ({@link messageKey}) of the batch's messages already stored. */
  readonly messages: Set<string>;
  /**
   * Revocations already stored whose target is in the batch (the revoke arrived first): target
   * key → earliest recall time.
   */
  readonly recalls: Map<string, number>;
}

/**
 * The messages of `rows` already stored, and the stored revocations that target them, in one
 * read of the messages table (two queries before: each paid for parsing the same id list).
 *
 * Narrowed by tenant/staff (sort key prefix), by time (partition pruning: msg_time is immutable
 * per message, and a revocation is never older than its target, hence `msg_time >= lo` for
 * both), and by the msgid and pre_msgid bloom filter indexes. The exact identity is compared
 * here, so a tenant of one row paired with the staff of another matches nothing.
 */
export async function findStored(store: Store, rows: readonly MessageIdentity[], options: CallOptions = {}): Promise<StoredMessages> {
  if (rows.length === 0) return { messages: new Set(), recalls: new Map() };
  const { lo, hi } = timeBounds(rows.map((r) => r.msg_time));
  const ids = stringList('ids', distinct(rows.map((r) => r.msgid)));
  const found = await store.query<{ tenant: string; staff_id: string; msgid: string; pre_msgid: string; stored: number; revoke: number; t: string }>(
    `WITH ${ids.sql} AS ids
     SELECT tenant, staff_id, msgid, pre_msgid,
       msg_time <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC') AND msgid IN ids AS stored,
       msg_type = 'revoke' AND pre_msgid IN ids AS revoke,
       toString(toUnixTimestamp64Milli(msg_time)) AS t
     FROM ${MESSAGES_TABLE}
     WHERE tenant IN {tenants:Array(String)} AND staff_id IN {staffs:Array(String)}
       AND msg_time >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC')
       AND (stored OR revoke)`,
    {
      tenants: distinct(rows.map((r) => r.tenant)),
      staffs: distinct(rows.map((r) => r.staff_id)),
      lo,
      hi,
      ...ids.params,
    },
    options,
  );
  const wanted = new Set(rows.map(messageKey));
  const messages = new Set<string>();
  const recalls = new Map<string, number>();
  for (const r of found) {
    const key = messageKey(r);
    if (r.stored === 1 && wanted.has(key)) messages.add(key);
    if (r.revoke !== 1) continue;
    const target = messageKey({ tenant: r.tenant, staff_id: r.staff_id, msgid: r.pre_msgid });
    if (!wanted.has(target)) continue;
    keepEarliest(recalls, target, Number(r.t));
  }
  return { messages, recalls };
}

/**
 * Marks stored targets of `marks` as recalled by lightweight UPDATE (a patch part, no rewrite):
 * one per group of about 1 500 targets, so that the map of recall times stays within what a
 * server takes in one parameter ({@link MAX_PARAM_BYTES}). Idempotent: rows already recalled
 * are left alone, so the first recall time stays. Targets not stored (yet) are untouched;
 * {@link findStored} catches them on arrival.
 */
export async function applyRecalls(store: Store, marks: readonly RecallMark[], options: CallOptions = {}): Promise<void> {
  if (marks.length === 0) return;
  const earliest = new Map<string, RecallMark>();
  for (const mark of marks) {
    const key = recallTargetKey(mark);
    const prev = earliest.get(key);
    if (prev === undefined || mark.recall_time < prev.recall_time) earliest.set(key, mark);
  }
  // Each target's share of the times map: `'<key>':<ms>,`.
  const groups = groupBySize([...earliest], ([key, mark]) => Buffer.byteLength(formatParam(key, true)) + String(mark.recall_time).length + 2);
  for (const group of groups) {
    const ids = stringList('ids', distinct(group.map(([, m]) => m.target_msgid)));
    await store.command(
      `UPDATE ${MESSAGES_TABLE}
       SET recalled = 1,
           recall_time = fromUnixTimestamp64Milli({times:Map(String, Int64)}[concat(tenant, {sep:String}, staff_id, {sep:String}, msgid)], 'UTC')
       WHERE tenant IN {tenants:Array(String)} AND staff_id IN {staffs:Array(String)}
         AND msgid IN ${ids.sql}
         AND mapContains({times:Map(String, Int64)}, concat(tenant, {sep:String}, staff_id, {sep:String}, msgid))
         AND recalled = 0`,
      {
        times: Object.fromEntries(group.map(([key, m]) => [key, m.recall_time])),
        sep: SEP,
        tenants: distinct(group.map(([, m]) => m.tenant)),
        staffs: distinct(group.map(([, m]) => m.staff_id)),
        ...ids.params,
      },
      options,
    );
  }
}

/**
 * Select list that reads `messages` back in the {@link MessageRow} shape: times as unix ms
 * numbers, `seq` as a decimal string, the provider's Int64 columns as numbers (the row type holds
 * them as JS numbers, so they are exact), plus `recalled` and `recall_time` (ms or null).
 */
export const MESSAGE_SELECT = `tenant, source, source_type, staff_id, msgid, legacy_msgid, session_id, session_type,
  room_id, action, from_id, tolist, peer_id, is_sender, toFloat64(toUnixTimestamp64Milli(msg_time)) AS msg_time,
  toString(seq) AS seq, toFloat64(msg_seq) AS msg_seq, msg_type, wx_msg_type, app_type, sys_type, content_text,
  content, raw_content, msg_source, at_user_list, pre_msgid, toFloat64(sync_key_type) AS sync_key_type,
  toFloat64(item_type) AS item_type, toFloat64(sub_type) AS sub_type, toFloat64(status) AS status,
  toFloat64(img_status) AS img_status, extinfo, peer_name, peer_avatar,
  toFloat64(toUnixTimestamp64Milli(ingested_at)) AS ingested_at, recalled,
  toFloat64(toUnixTimestamp64Milli(recall_time)) AS recall_time`;
