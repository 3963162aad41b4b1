/**
 * Rebuilds `sessions_agg` (the states behind the `sessions` view) from `messages`.
 *
 * Why it is needed: an INSERT into `messages` commits its part before `sessions_mv` commits the
 * part it derives for `sessions_agg`; the two are not one transaction. A process killed between
 * the two (kill -9, the OOM killer, a power cut), or a view insert that fails after the messages
 * part was written, leaves those messages stored but not counted. The restarted writer finds
 * them stored and skips them, so the view never gets them: the session's `msg_count` stays low
 * and its latest message may be an older one. Nothing in `messages` is lost. The insert journal
 * (src/sink/journal.ts) repairs a failed insert, and on the embedded store a killed process, by
 * itself; this covers the rest: a sink killed while it wrote to a ClickHouse server, a writer
 * that gave up (on a server, or in the Kafka sink), a power cut, counts from before the journal.
 * Running this with the writers stopped makes `sessions` agree with `messages` again
 * (docs/operations.md).
 *
 * It runs the view's own SELECT (read from `system.tables`), so it cannot drift from
 * migrations/0003. Edits and recalls applied since are read as they are now.
 */
import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import { stringList, type Store } from './clickhouse.ts';

/** What a rebuild wrote. */
export interface RebuildResult {
  readonly sessions: number;
  readonly messages: number;
}

/**
 * Empties `sessions_agg` and fills it again from every row of `messages`.
 *
 * Stop every process that writes `messages` first: a batch stored during the rebuild can be
 * counted twice. If the rebuild is interrupted, run it again.
 *
 * @throws MsgpipeError MSGPIPE_ERR_MIGRATION when the migrations have not created the view.
 */
export async function rebuildSessions(store: Store, log: Logger): Promise<RebuildResult> {
  const select = await viewSelect(store);
  const started = Date.now();
  await store.command('TRUNCATE TABLE sessions_agg');
  await store.command(`INSERT INTO sessions_agg ${select}`);
  const [counts] = await store.query<{ sessions: string; messages: string }>(
    'SELECT count() AS sessions, sum(msg_count) AS messages FROM sessions',
  );
  const result = { sessions: Number(counts?.sessions ?? 0), messages: Number(counts?.messages ?? 0) };
  log.info({ ...result, ms: Date.now() - started }, 'Sessions rebuilt from messages.');
  return result;
}

/** The SELECT of `sessions_mv`, as the migrations made it. */
async function viewSelect(store: Store): Promise<string> {
  const [view] = await store.query<{ as_select: string }>(
    "SELECT as_select FROM system.tables WHERE database = currentDatabase() AND name = 'sessions_mv'",
  );
  if (view === undefined || view.as_select === '') {
    throw new MsgpipeError('MSGPIPE_ERR_MIGRATION', 'sessions_mv does not exist: run msgpipe migrate first.');
  }
  return view.as_select;
}

/** One session of `sessions_agg`: its sort key. */
export interface SessionKey {
  readonly tenant: string;
  readonly staff_id: string;
  readonly session_type: string;
  readonly session_id: string;
}

const KEY_SEP = '\u001e';

/** The key as SQL builds it below. Two keys may give the same text (a separator inside a value): both are then recounted, which is harmless. */
function sessionKeyText(k: SessionKey): string {
  return [k.tenant, k.staff_id, k.session_type, k.session_id].join(KEY_SEP);
}

/** Sessions recounted per statement: keeps each bound list well within a server's parameter limit. */
const RECOUNT_GROUP = 500;

/**
 * Recounts the given sessions from the rows of `messages` stored now: their states in
 * `sessions_agg` are deleted, then made again by the view's own SELECT over their messages.
 *
 * For the sessions an insert interrupted by a crash touched (src/sink/journal.ts): whatever that
 * insert left (its messages part without the view's, the view's without the messages', or a
 * part whose deduplication record was written but whose rename was not), those sessions then
 * count what `messages` holds, and the messages not stored are counted when they are inserted.
 * Idempotent: interrupted, it can run again. Nothing else may write `messages` meanwhile.
 *
 * The INSERT runs without deduplication: a crash inside it could otherwise leave a record of its
 * block without the part, and the same INSERT run again would be dropped as a duplicate.
 *
 * @returns how many sessions were recounted
 * @throws MsgpipeError MSGPIPE_ERR_MIGRATION when the migrations have not created the view
 */
export async function recountSessions(store: Store, keys: readonly SessionKey[]): Promise<number> {
  const distinct = new Map<string, SessionKey>();
  for (const k of keys) distinct.set(JSON.stringify([k.tenant, k.staff_id, k.session_type, k.session_id]), k);
  if (distinct.size === 0) return 0;
  const select = await viewSelect(store);
  const all = [...distinct.values()];
  for (let i = 0; i < all.length; i += RECOUNT_GROUP) {
    const group = all.slice(i, i + RECOUNT_GROUP);
    const ids = stringList('ids', [...new Set(group.map((k) => k.session_id))]);
    const wanted = stringList('keys', group.map(sessionKeyText));
    // The sort key's leading columns first, so both statements read only the parts' ranges that hold them.
    const where = `tenant IN {tenants:Array(String)} AND staff_id IN {staffs:Array(String)} AND session_id IN ${ids.sql}
       AND concat(tenant, {sep:String}, staff_id, {sep:String}, session_type, {sep:String}, session_id) IN ${wanted.sql}`;
    const params = {
      tenants: [...new Set(group.map((k) => k.tenant))],
      staffs: [...new Set(group.map((k) => k.staff_id))],
      sep: KEY_SEP,
      ...ids.params,
      ...wanted.params,
    };
    await store.command(`DELETE FROM sessions_agg WHERE ${where}`, params);
    await store.command(`INSERT INTO sessions_agg SETTINGS insert_deduplicate = 0 SELECT * FROM (${select}) WHERE ${where}`, params);
  }
  return distinct.size;
}
