/**
 * The ClickHouse-only baseline of bench/e2e.ts, run in its own process (chDB binds one data
 * directory per process): the raw items as JSON lines → msgpipe's own migrated `messages` table
 * (src/sink/migrate.ts: its bloom filters, the ngrams(2) text index, `sessions_mv` feeding
 * `sessions_agg`), every column that can be read from the item extracted by ClickHouse's JSON,
 * string and regular-expression functions alone in one `INSERT … SELECT` per account; the rest
 * (`room_id`, `peer_name`, `peer_avatar`, `recalled`, …) keep their defaults. The timed part is
 * the inserts only (the migrations run before the clock starts, as the pipeline's store is
 * migrated before its clock starts). Prints `{seconds, rows}`.
 *
 * Simplifications against the pipeline, all of which make the baseline do less: every item is
 * inserted (re-sent duplicates and the items the pipeline turns into events or drops too, left
 * to ReplacingMergeTree), `msg_type` is read from MsgType and the appmsg `<type>` / sysmsg
 * `type` with a regular expression instead of an XML parse, `content` is the item's `content`
 * object as it came, and no recall marks, dead letters or cursors are written.
 *
 *   node --import tsx bench/baseline-child.ts <chdb dir> <accounts.json>
 *
 * `accounts.json`: `[{file, tenant, source, sourceType, staffId}]`, one JSON-lines file per account.
 */
import { readFile } from 'node:fs/promises';

import { silentLogger } from '../src/core/logger.ts';
import { openStore } from '../src/sink/clickhouse.ts';
import { migrate } from '../src/sink/migrate.ts';

export interface BaselineAccount {
  readonly file: string;
  readonly tenant: string;
  readonly source: string;
  readonly sourceType: string;
  readonly staffId: string;
}

/** msg_type names of the appmsg `<type>`s (src/transform/appmsg/index.ts). */
const APP_TYPES: readonly (readonly [number, string])[] = [
  [1, 'text'], [2, 'image'], [3, 'link'], [4, 'link'], [5, 'link'], [6, 'file'], [8, 'emotion'], [15, 'emotion'],
  [19, 'chatrecord'], [33, 'weapp'], [36, 'weapp'], [51, 'finder_feed'], [57, 'quote'], [63, 'finder_live'],
  [74, 'file'], [2000, 'transfer'], [2001, 'redpacket'],
];

const sqlList = (values: readonly (string | number)[]): string =>
  `[${values.map((v) => (typeof v === 'number' ? String(v) : `'${v}'`)).join(', ')}]`;

/** One account's items into `messages`; the sub-select reads each nested object once. */
const INSERT = `
INSERT INTO messages (tenant, source, source_type, staff_id, msgid, legacy_msgid, session_id, session_type, action,
  from_id, tolist, peer_id, is_sender, msg_time, seq, msg_seq, msg_type, wx_msg_type, app_type, sys_type,
  content_text, content, raw_content, msg_source, at_user_list, pre_msgid, sync_key_type, item_type, sub_type,
  status, img_status, extinfo, ingested_at)
SELECT {tenant:String}, {source:String}, {sourceType:String}, {staffId:String},
  toString(JSONExtract(msg, 'NewMsgId', 'UInt64')), toString(JSONExtract(msg, 'MsgId', 'UInt64')),
  JSONExtractString(c, 'msgSessionId'), 'external', if(msg_type = 'revoke', 'recall', 'send'),
  from_id, if(to_id = '', [], [to_id]), if(is_sender = 1, to_id, from_id), is_sender,
  fromUnixTimestamp64Milli(toInt64(JSONExtractUInt(msg, 'CreateTime')) * 1000),
  JSONExtract(c, 'seq', 'UInt64'), JSONExtractInt(msg, 'MsgSeq'),
  msg_type, wx, app_type, sys_type,
  multiIf(wx IN (1, 10000), raw, wx = 49, extract(raw, '<title>(?:<!\\\\[CDATA\\\\[)?([^<\\\\]]*)'), ''),
  c, raw, msg_source,
  if(position(msg_source, 'atuserlist') = 0, [],
     arrayFilter(x -> x != '', arrayMap(x -> trimBoth(x), splitByChar(',', extract(msg_source, '<atuserlist>(?:<!\\\\[CDATA\\\\[)?([^<\\\\]]*)'))))),
  multiIf(msg_type = 'revoke', extract(raw, '<newmsgid>(\\\\d+)</newmsgid>'), msg_type = 'quote', extract(raw, '<svrid>(\\\\d+)</svrid>'), ''),
  JSONExtractInt(json, 'syncKeyType'), JSONExtractInt(json, 'itemType'), JSONExtractInt(json, 'subType'),
  JSONExtractInt(msg, 'Status'), JSONExtractInt(msg, 'ImgStatus'), JSONExtractString(c, 'extinfo'), now64(3)
FROM (
  SELECT json, c, msg, wx, raw, from_id, to_id, is_sender, msg_source, app_type, sys_type,
    multiIf(wx = 1, 'text', wx = 3, 'image', wx = 34, 'voice', wx = 42, 'card', wx = 43, 'video', wx = 47, 'emotion',
      wx = 48, 'location', wx = 49, transform(app_type, ${sqlList(APP_TYPES.map(([t]) => t))}, ${sqlList(APP_TYPES.map(([, n]) => n))}, 'unknown'),
      wx = 10000, 'system', wx = 10002, transform(sys_type, ['revokemsg', 'pat'], ['revoke', 'pat'], 'system'), 'unknown') AS msg_type
  FROM (
    SELECT json, c, msg, wx, raw, from_id, to_id, is_sender, msg_source,
      if(wx = 49, toInt32OrZero(extract(raw, '<type>(\\\\d+)</type>')), 0) AS app_type,
      if(wx = 10002, extract(raw, '<sysmsg[^>]*type="([^"]*)"'), '') AS sys_type
    FROM (
      SELECT json, JSONExtractRaw(json, 'content') AS c, JSONExtractRaw(c, 'msg') AS msg,
        JSONExtractInt(msg, 'MsgType') AS wx, JSONExtractString(msg, 'Content', 'string') AS raw,
        JSONExtractString(msg, 'FromUserName', 'string') AS from_id, JSONExtractString(msg, 'ToUserName', 'string') AS to_id,
        toUInt8(JSONExtractUInt(c, 'isSender')) AS is_sender, JSONExtractString(msg, 'MsgSource') AS msg_source
      FROM file({file:String}, 'JSONAsString')
    )
  )
)`;

async function main(): Promise<void> {
  const [dir, manifest] = process.argv.slice(2);
  if (dir === undefined || manifest === undefined) throw new Error('usage: baseline-child.ts <chdb dir> <accounts.json>');
  const accounts = JSON.parse(await readFile(manifest, 'utf8')) as BaselineAccount[];
  const log = silentLogger();
  const store = await openStore({ path: dir, database: 'msgpipe' }, log);
  try {
    await migrate(store, log);
    const started = performance.now();
    for (const a of accounts) {
      await store.command(INSERT, { file: a.file, tenant: a.tenant, source: a.source, sourceType: a.sourceType, staffId: a.staffId });
    }
    const seconds = (performance.now() - started) / 1000;
    const [count] = await store.query<{ n: string }>('SELECT count() AS n FROM messages');
    process.stdout.write(JSON.stringify({ seconds, rows: Number(count?.n ?? 0) }));
  } finally {
    await store.close();
  }
}

await main();
