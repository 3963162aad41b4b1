/**
 * Edits of stored messages (Yunhu): the edit marks that replace a message's content, and the
 * `message_edits` table of earlier versions (migrations/0009, 0010, docs/schema.md).
 *
 * Both are idempotent, so a re-delivered page (provider re-read, crash and restart, a retried
 * flush) changes nothing: a mark updates a message only when its `edit_time` is later than the
 * stored one, and a history row is inserted only when its (tenant, staff_id, msgid, edit_id) is
 * not stored yet. The writer runs {@link storeEdits} after the messages of the batch are stored,
 * so a mark whose target arrived in the same batch applies too.
 */
import { createHash } from 'node:crypto';

import type { EditMark, MessageEditRow } from '../core/types.ts';
import { formatParam, groupBySize, isInt32, isUnixMs, MAX_PARAM_BYTES, stringList, textPieces, type CallOptions, type Store } from './clickhouse.ts';
import { MESSAGES_TABLE } from './messages.ts';

/** The aggregate behind the `sessions` view (migrations/0002). */
const SESSIONS_AGG_TABLE = 'sessions_agg';

export const MESSAGE_EDITS_TABLE = 'message_edits';

export const MESSAGE_EDIT_COLUMNS = [
  'tenant',
  'source',
  'source_type',
  'staff_id',
  'session_id',
  'msgid',
  'edit_id',
  'content_type',
  'content_old',
  'content_text_old',
  'msg_time',
  'edit_time',
  'raw',
  'ingested_at',
] as const satisfies readonly (keyof MessageEditRow)[];

const SEP = '\u001f';

/** The identity of an edit's target message. */
export function editTargetKey(mark: EditMark): string {
  return `${mark.tenant}${SEP}${mark.staff_id}${SEP}${mark.target_msgid}`;
}

/** The identity of an edit-history row. */
export function historyKey(row: { tenant: string; staff_id: string; msgid: string; edit_id: string }): string {
  return `${row.tenant}${SEP}${row.staff_id}${SEP}${row.msgid}${SEP}${row.edit_id}`;
}

function distinct<T>(values: Iterable<T>): T[] {
  return [...new Set(values)];
}

/** Why an edit mark cannot be applied (its UPDATE would fail, or store a wrong value), or undefined. */
export function invalidEditReason(mark: EditMark): string | undefined {
  const r = mark as unknown as Readonly<Record<string, unknown>>;
  for (const field of ['tenant', 'staff_id', 'session_id', 'msg_type', 'content_text', 'content', 'raw_content']) {
    if (typeof r[field] !== 'string') return `${field} is not a string`;
  }
  if (typeof r['target_msgid'] !== 'string' || r['target_msgid'] === '') return 'target_msgid is empty';
  if (!isUnixMs(r['edit_time'])) return 'edit_time is not a unix ms time';
  if (!isInt32(r['wx_msg_type'])) return 'wx_msg_type is outside Int32';
  return undefined;
}

/** Why ClickHouse would refuse (or wrap) a history row, or undefined when it is insertable. */
export function invalidEditHistoryReason(row: MessageEditRow): string | undefined {
  const r = row as unknown as Readonly<Record<string, unknown>>;
  for (const field of ['tenant', 'source', 'source_type', 'staff_id', 'session_id', 'content_old', 'content_text_old', 'raw']) {
    if (typeof r[field] !== 'string') return `${field} is not a string`;
  }
  if (typeof r['msgid'] !== 'string' || r['msgid'] === '') return 'msgid is empty';
  if (typeof r['edit_id'] !== 'string' || r['edit_id'] === '') return 'edit_id is empty';
  for (const field of ['msg_time', 'edit_time', 'ingested_at']) if (!isUnixMs(r[field])) return `${field} is not a unix ms time`;
  if (!isInt32(r['content_type'])) return 'content_type is outside Int32';
  return undefined;
}

/** Approximate size of edit marks and history rows, for the batch byte bound. */
export function estimateEditBytes(marks: readonly EditMark[], history: readonly MessageEditRow[]): number {
  let n = 0;
  for (const m of marks) n += 300 + Buffer.byteLength(m.content) + Buffer.byteLength(m.raw_content) + Buffer.byteLength(m.content_text);
  for (const h of history) n += 300 + Buffer.byteLength(h.content_old) + Buffer.byteLength(h.raw) + Buffer.byteLength(h.content_text_old);
  return n;
}

/** The latest mark per target: only the last edit matters, and it must win whatever the order. */
function latestMarks(marks: readonly EditMark[]): EditMark[] {
  const latest = new Map<string, EditMark>();
  for (const mark of marks) {
    const key = editTargetKey(mark);
    const prev = latest.get(key);
    // Of two marks of one edit, the one that knows the content.
    if (prev === undefined || mark.edit_time > prev.edit_time || (mark.edit_time === prev.edit_time && prev.content_withheld === true && mark.content_withheld !== true)) {
      latest.set(key, mark);
    }
  }
  return [...latest.values()];
}

/** Bytes of a map entry `'<key>':'<value>',` beyond the value's own. */
function entryOverhead(key: string): number {
  return Buffer.byteLength(formatParam(key, true)) + 4;
}

/** An edited target's share of each map parameter of its UPDATE, at most. */
function editBytes(key: string, mark: EditMark): number {
  const longest = Math.max(
    Buffer.byteLength(formatParam(mark.content_text, true)),
    Buffer.byteLength(formatParam(mark.content, true)),
    Buffer.byteLength(formatParam(mark.raw_content, true)),
    24,
  );
  return entryOverhead(key) + longest;
}

/**
 * Replaces the content of stored targets of `marks` by lightweight UPDATE, where the stored edit
 * time is older (or absent). Targets not stored are untouched: a Yunhu message always arrives
 * with (or before) its marks, so the writer applies marks after inserting messages.
 *
 * The new texts travel as maps from target to text, and a server takes at most
 * {@link MAX_PARAM_BYTES} in one parameter: one UPDATE per group of targets whose texts fit, and
 * a target whose text alone does not fit gets one of its own, its texts cut into pieces (one map
 * per piece, joined again by `concat`).
 */
export async function applyEdits(store: Store, marks: readonly EditMark[], options: CallOptions = {}): Promise<number> {
  const latest = latestMarks(marks);
  if (latest.length === 0) return 0;
  const keyed = latest.map((m) => [editTargetKey(m), m] as const);
  const key = 'concat(tenant, {sep:String}, staff_id, {sep:String}, msgid)';
  for (const group of groupBySize(keyed, ([k, m]) => editBytes(k, m))) {
    const maxPiece = MAX_PARAM_BYTES - Math.max(...group.map(([k]) => entryOverhead(k)));
    const layered = { texts: [] as Record<string, string>[], contents: [] as Record<string, string>[], raws: [] as Record<string, string>[] };
    const times: Record<string, number> = {};
    const types: Record<string, string> = {};
    const wxTypes: Record<string, number> = {};
    // Targets whose mark sets only the edit time: their content columns keep what is stored.
    const withheld: Record<string, boolean> = {};
    for (const [k, m] of group) {
      times[k] = m.edit_time;
      if (m.content_withheld === true) withheld[k] = true;
      types[k] = m.msg_type;
      wxTypes[k] = m.wx_msg_type;
      for (const [name, text] of [['texts', m.content_text], ['contents', m.content], ['raws', m.raw_content]] as const) {
        // Alone in its group when over the limit; otherwise one piece, in layer 0.
        textPieces(text, maxPiece).forEach((piece, layer) => {
          (layered[name][layer] ??= {})[k] = piece;
        });
      }
    }
    const params: Record<string, unknown> = { times, types, wxTypes, withheld, sep: SEP };
    const kept = (column: string, set: string): string => `if(mapContains({withheld:Map(String, Bool)}, ${key}), ${column}, ${set})`;
    const value = (name: keyof typeof layered): string => {
      const refs = layered[name].map((layer, i) => {
        params[`${name}_${i}`] = layer;
        return `{${name}_${i}:Map(String, String)}[${key}]`;
      });
      return refs.length === 1 ? (refs[0] ?? '') : `concat(${refs.join(', ')})`;
    };
    const ids = stringList('ids', distinct(group.map(([, m]) => m.target_msgid)));
    await store.command(
      `UPDATE ${MESSAGES_TABLE}
       SET content_text = ${kept('content_text', value('texts'))},
           content = ${kept('content', value('contents'))},
           raw_content = ${kept('raw_content', value('raws'))},
           msg_type = ${kept('msg_type', `{types:Map(String, String)}[${key}]`)},
           wx_msg_type = ${kept('wx_msg_type', `{wxTypes:Map(String, Int32)}[${key}]`)},
           edit_time = fromUnixTimestamp64Milli({times:Map(String, Int64)}[${key}], 'UTC')
       WHERE tenant IN {tenants:Array(String)} AND staff_id IN {staffs:Array(String)}
         AND msgid IN ${ids.sql}
         AND mapContains({times:Map(String, Int64)}, ${key})
         AND (edit_time IS NULL OR edit_time < fromUnixTimestamp64Milli({times:Map(String, Int64)}[${key}], 'UTC'))`,
      {
        ...params,
        tenants: distinct(group.map(([, m]) => m.tenant)),
        staffs: distinct(group.map(([, m]) => m.staff_id)),
        ...ids.params,
      },
      options,
    );
  }
  await refreshSessions(store, latest, options);
  return latest.length;
}

/**
 * Brings the session list up to date with edited messages. `sessions_mv` sees only inserts,
 * so an edit UPDATE leaves the session's latest message with its first text; this adds, for
 * each edited target, an aggregate state read back from `messages` (the same expression as
 * migrations/0003) whose argMax key sorts after the message's own and after its earlier edits:
 * `(msg_time, msgid)` becomes `(msg_time, msgid + '\x01' + edit time in ms)`. It adds no
 * counts, so repeating it (a retried flush, a re-read edit) changes nothing, and it changes the
 * session's latest message only when the edited message is that one.
 */
async function refreshSessions(store: Store, latest: readonly EditMark[], options: CallOptions): Promise<void> {
  const ids = stringList('ids', distinct(latest.map((m) => m.target_msgid)));
  await store.command(
    `INSERT INTO ${SESSIONS_AGG_TABLE}
     SELECT tenant, staff_id, session_type, session_id,
       argMaxState(
         CAST(
           (msgid, toString(action), from_id, tolist, room_id, peer_id, toString(msg_type), content_text, seq, toString(source)),
           'Tuple(msgid String, action String, from_id String, tolist Array(String), room_id String, peer_id String, msg_type String, content_text String, seq UInt64, source String)'),
         (msg_time, concat(msgid, '\x01', leftPad(toString(toUnixTimestamp64Milli(assumeNotNull(edit_time))), 15, '0')))),
       argMaxState(peer_name, (toUInt8(peer_name != ''), msg_time)),
       argMaxState(peer_avatar, (toUInt8(peer_avatar != ''), msg_time)),
       min(msg_time), max(msg_time), toUInt64(0), toUInt64(0)
     FROM ${MESSAGES_TABLE}
     WHERE tenant IN {tenants:Array(String)} AND staff_id IN {staffs:Array(String)} AND msgid IN ${ids.sql}
       AND edit_time IS NOT NULL
     GROUP BY tenant, staff_id, session_type, session_id, msgid`,
    {
      tenants: distinct(latest.map((m) => m.tenant)),
      staffs: distinct(latest.map((m) => m.staff_id)),
      ...ids.params,
    },
    options,
  );
}

/** Keys of history rows already stored among `rows`. */
async function findStoredHistory(store: Store, rows: readonly MessageEditRow[], options: CallOptions): Promise<Set<string>> {
  if (rows.length === 0) return new Set();
  const ids = stringList('ids', distinct(rows.map((r) => r.msgid)));
  const found = await store.query<{ tenant: string; staff_id: string; msgid: string; edit_id: string }>(
    `SELECT tenant, staff_id, msgid, edit_id FROM ${MESSAGE_EDITS_TABLE}
     WHERE tenant IN {tenants:Array(String)} AND staff_id IN {staffs:Array(String)} AND msgid IN ${ids.sql}`,
    {
      tenants: distinct(rows.map((r) => r.tenant)),
      staffs: distinct(rows.map((r) => r.staff_id)),
      ...ids.params,
    },
    options,
  );
  return new Set(found.map(historyKey));
}

/**
 * Stores the edit history rows not stored yet (each once, whatever the batch holds twice), then
 * applies the edit marks. Safe to repeat after any failure.
 *
 * @returns how many history rows were inserted and how many targets were marked
 */
export async function storeEdits(
  store: Store,
  marks: readonly EditMark[],
  history: readonly MessageEditRow[],
  options: CallOptions = {},
): Promise<{ history: number; edits: number }> {
  const unique = new Map<string, MessageEditRow>();
  for (const row of history) if (!unique.has(historyKey(row))) unique.set(historyKey(row), row);
  const stored = await findStoredHistory(store, [...unique.values()], options);
  const fresh = [...unique.entries()].filter(([key]) => !stored.has(key));
  if (fresh.length > 0) {
    const hash = createHash('sha256');
    for (const key of fresh.map(([k]) => k).sort()) hash.update(key).update('\n');
    await store.insert(
      MESSAGE_EDITS_TABLE,
      fresh.map(([, row]) => row),
      { ...options, columns: MESSAGE_EDIT_COLUMNS, dedupToken: `${MESSAGE_EDITS_TABLE}:${hash.digest('hex')}` },
    );
  }
  const edits = await applyEdits(store, marks, options);
  return { history: fresh.length, edits };
}
