/**
 * The ClickHouse-only baseline of bench/e2e.ts, run in its own process (chDB binds one data
 * directory per process): raw items as JSON lines → columns extracted by ClickHouse's JSON
 * functions alone. Prints `{seconds, rows}`.
 *
 *   node --import tsx bench/baseline-child.ts <chdb dir> <items.jsonl>
 */
import { silentLogger } from '../src/core/logger.ts';
import { openStore } from '../src/sink/clickhouse.ts';

const [dir, file] = process.argv.slice(2);
if (dir === undefined || file === undefined) throw new Error('usage: baseline-child.ts <chdb dir> <items.jsonl>');
const store = await openStore({ path: dir, database: 'baseline' }, silentLogger());
await store.command(`CREATE TABLE m (source String, msgid UInt64, session_id String, from_id String, to_id String,
  msg_type UInt32, msg_time DateTime64(3), seq UInt64, is_sender UInt8, content String, msg_source String)
  ENGINE = MergeTree ORDER BY (session_id, msg_time, msgid)`);
const started = performance.now();
await store.command(
  `INSERT INTO m SELECT 'bench',
    JSONExtract(json, 'content', 'msg', 'NewMsgId', 'UInt64'), JSONExtractString(json, 'content', 'msgSessionId'),
    JSONExtractString(json, 'content', 'msg', 'FromUserName', 'string'), JSONExtractString(json, 'content', 'msg', 'ToUserName', 'string'),
    JSONExtractUInt(json, 'content', 'msg', 'MsgType'),
    fromUnixTimestamp64Milli(toInt64(JSONExtractUInt(json, 'content', 'msg', 'CreateTime') * 1000)),
    JSONExtract(json, 'content', 'seq', 'UInt64'), JSONExtractUInt(json, 'content', 'isSender'),
    JSONExtractString(json, 'content', 'msg', 'Content', 'string'), JSONExtractString(json, 'content', 'msg', 'MsgSource')
  FROM file({file:String}, 'JSONAsString')`,
  { file },
);
const seconds = (performance.now() - started) / 1000;
const [count] = await store.query<{ n: string }>('SELECT count() AS n FROM m');
await store.close();
process.stdout.write(JSON.stringify({ seconds, rows: Number(count?.n ?? 0) }));
