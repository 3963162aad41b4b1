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
import type { Store } from './clickhouse.ts';

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
  const [view] = await store.query<{ as_select: string }>(
    "SELECT as_select FROM system.tables WHERE database = currentDatabase() AND name = 'sessions_mv'",
  );
  if (view === undefined || view.as_select === '') {
    throw new MsgpipeError('MSGPIPE_ERR_MIGRATION', 'sessions_mv does not exist: run msgpipe migrate first.');
  }
  const started = Date.now();
  await store.command('TRUNCATE TABLE sessions_agg');
  await store.command(`INSERT INTO sessions_agg ${view.as_select}`);
  const [counts] = await store.query<{ sessions: string; messages: string }>(
    'SELECT count() AS sessions, sum(msg_count) AS messages FROM sessions',
  );
  const result = { sessions: Number(counts?.sessions ?? 0), messages: Number(counts?.messages ?? 0) };
  log.info({ ...result, ms: Date.now() - started }, 'Sessions rebuilt from messages.');
  return result;
}
