/**
 * Table settings for the embedded engine only (chDB), applied after the migrations.
 *
 * The migrations serve a ClickHouse server and chDB alike. One default does not suit both: a
 * background merge of `messages` holds memory in proportion to the rows it writes (measured on
 * chDB: ~19 MB for a 200k-row part, ~176 MB for 1M rows, ~307 MB for 2M rows; ADR 0018). A server
 * has the memory for parts of many gigabytes. The embedded engine shares the pipeline process and
 * its ~500 MB budget, and a month of history for one busy tenant is millions of rows. On chDB,
 * merges of `messages` therefore stop at parts of `clickhouse.maxMergeBytes` on disk (32 MiB by
 * default): the table keeps more, smaller parts (30–60 per GB on disk), and no merge grows with
 * the history.
 */
import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import type { Store } from './clickhouse.ts';

const MERGE_SETTING = 'max_bytes_to_merge_at_max_space_in_pool';

/**
 * The bound as `create_table_query` shows it, at the end of the SETTINGS list:
 * `… SETTINGS non_replicated_deduplication_window = 10000, …, max_bytes_to_merge_at_max_space_in_pool = 33554432`
 * (quotes allowed, for a value an operator set as a string).
 */
const MERGE_SETTING_VALUE = new RegExp(`\\b${MERGE_SETTING} = '?(\\d+)'?`);

/**
 * Makes the merge bound of `messages` on the embedded engine what the configuration says:
 * `maxMergeBytes` bytes, or ClickHouse's own limit for 0. Does nothing on a server, or before the
 * migrations created the table. An `ALTER … MODIFY SETTING` changes metadata only; the next merge
 * follows it.
 *
 * @returns whether the table's setting was changed now
 */
export async function applyEmbeddedTableSettings(store: Store, maxMergeBytes: number, log: Logger): Promise<boolean> {
  if (store.backend !== 'chdb') return false;
  const [table] = await store.query<{ definition: string }>(
    "SELECT create_table_query AS definition FROM system.tables WHERE database = currentDatabase() AND name = 'messages'",
  );
  if (table === undefined) return false;
  const found = MERGE_SETTING_VALUE.exec(table.definition);
  // Named but unreadable (some other form of value): different from anything configured.
  const current = found !== null ? Number(found[1]) : table.definition.includes(`${MERGE_SETTING} =`) ? Number.NaN : 0;
  if (current === maxMergeBytes) return false;
  try {
    await store.command(
      maxMergeBytes === 0
        ? `ALTER TABLE messages RESET SETTING ${MERGE_SETTING}`
        : `ALTER TABLE messages MODIFY SETTING ${MERGE_SETTING} = ${String(maxMergeBytes)}`,
    );
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', `Could not apply clickhouse.maxMergeBytes to table messages: ${reason}`, { cause: err });
  }
  // 0 stands for ClickHouse's own limit.
  log.info({ [MERGE_SETTING]: maxMergeBytes }, 'Set the merge bound of messages for the embedded engine.');
  return true;
}
