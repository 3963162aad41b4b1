/**
 * The server path of the store (`clickhouse.url`: @clickhouse/client over HTTP) end to end, against
 * the ClickHouse HTTP stand-in (test/helpers/clickhouse-http.ts, whose comment says what it covers),
 * every statement on the real engine: migrations, the sink writer's flows (lookups across
 * batches, recalls, edits, a batch of the default size), the query API, and `msgpipe run` in a
 * child process. The stand-in holds this process's only chDB data directory; each test works in
 * a database of its own.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { MsgpipeError } from '../../src/core/errors.ts';
import type { SinkUnit } from '../../src/core/pipeline.ts';
import type { DeadLetterRow, EventRow, MessageRow, Origin, RawRecord, RecallMark } from '../../src/core/types.ts';
import { encodeYunhu } from '../../src/ingest/yunhu-proto.ts';
import { buildQueryApp } from '../../src/query/app.ts';
import { startSimulator, type SimulatorAccountInput } from '../../src/simulate/index.ts';
import { openStore, type Store } from '../../src/sink/clickhouse.ts';
import { CursorStore } from '../../src/sink/cursors.ts';
import { applyEmbeddedTableSettings } from '../../src/sink/embedded-settings.ts';
import { EVENT_SELECT } from '../../src/sink/events.ts';
import { MESSAGE_SELECT } from '../../src/sink/messages.ts';
import { migrate, readMigrations } from '../../src/sink/migrate.ts';
import { rebuildSessions } from '../../src/sink/sessions-rebuild.ts';
import { SinkWriter, type SinkWriterOptions } from '../../src/sink/writer.ts';
import { transformYunhuRecord } from '../../src/transform/yunhu.ts';
import { startClickHouseHttp, type ClickHouseHttp } from '../helpers/clickhouse-http.ts';
import { expectExactContents } from '../helpers/contents.ts';
import { sql, startMsgpipe, waitFor, withTempDir, writeConfig } from '../helpers/msgpipe.ts';
import { conversation, get, SECRET_A, signedQuery, testConfig } from '../unit/query/helpers.ts';
import { event, message, realisticMessages, recall, silent } from '../unit/sink/helpers.ts';

const USER = 'msgpipe';
const PASSWORD = 'p@ss word';

let ch: ClickHouseHttp;
beforeAll(async () => {
  // A server in China keeps China's time: nothing msgpipe stores or answers may depend on it.
  ch = await startClickHouseHttp({ username: USER, password: PASSWORD, timezone: 'Asia/Shanghai' });
});
afterAll(async () => {
  await ch.close();
});

let databases = 0;

/** A store on the stand-in, in a database no other test uses; migrated unless told otherwise. */
async function serverStore(options: { migrate?: boolean } = {}): Promise<Store> {
  databases += 1;
  const store = await openStore({ url: ch.url, database: `server_path_${databases}`, username: USER, password: PASSWORD }, silent);
  if (options.migrate ?? true) await migrate(store, silent);
  return store;
}

/** Runs `fn` on a fresh migrated store and closes it, whatever happens. */
async function withStore(fn: (store: Store) => Promise<void>): Promise<void> {
  const store = await serverStore();
  try {
    await fn(store);
  } finally {
    await store.close();
  }
}

const FAST_RETRY = { attempts: 3, minMs: 1, maxMs: 5, factor: 2 } as const;

function writer(store: Store, options: SinkWriterOptions = {}): SinkWriter {
  return new SinkWriter(store, silent, { retry: FAST_RETRY, maxAgeMs: 60_000, ...options });
}

function unit(
  parts: { messages?: MessageRow[]; events?: EventRow[]; deadLetters?: DeadLetterRow[]; recalls?: RecallMark[] },
  cursor?: string,
): SinkUnit {
  return {
    output: { messages: parts.messages ?? [], events: parts.events ?? [], deadLetters: parts.deadLetters ?? [], recalls: parts.recalls ?? [] },
    ...(cursor === undefined ? {} : { cursor: { source: 'shop-a', stream: 'main', cursor } }),
  };
}

type StoredMessage = MessageRow & { recalled: number; recall_time: number | null };

function storedMessages(store: Store): Promise<StoredMessage[]> {
  return store.query<StoredMessage>(`SELECT ${MESSAGE_SELECT} FROM messages ORDER BY msg_time, msgid`);
}

async function count(store: Store, table: string): Promise<number> {
  const [row] = await store.query<{ c: string }>(`SELECT count() AS c FROM ${table}`);
  return Number(row?.c);
}

async function failure(promise: Promise<unknown>): Promise<MsgpipeError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(err instanceof MsgpipeError)) throw new Error(`expected a MsgpipeError, got ${String(err)}`);
  return err;
}

describe('the stand-in over plain HTTP', () => {
  const auth = { Authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` };

  it('answers pings, queries in the URL or the body, compressed both ways, and runs GET read-only', async () => {
    expect(await (await fetch(`${ch.url}/ping`)).text()).toBe('Ok.\n');
    const get = await fetch(`${ch.url}/?query=${encodeURIComponent('SELECT 1 AS a, 2 AS b')}`, { headers: auth });
    expect([get.status, await get.text()]).toEqual([200, '1\t2\n']);
    const body = gzipSync('SELECT number FROM numbers(3) FORMAT JSONEachRow');
    const zipped = await fetch(`${ch.url}/?enable_http_compression=1`, {
      method: 'POST', body, headers: { ...auth, 'Content-Encoding': 'gzip', 'Accept-Encoding': 'gzip' },
    });
    // fetch undoes the Content-Encoding it was answered with.
    expect([zipped.headers.get('content-encoding'), await zipped.text()]).toEqual(['gzip', '{"number":0}\n{"number":1}\n{"number":2}\n']);
    const write = await fetch(`${ch.url}/?query=${encodeURIComponent('CREATE TABLE default.t (a UInt8) ENGINE = Memory')}`, { headers: auth });
    expect([write.status, write.headers.get('x-clickhouse-exception-code')]).toEqual([500, '164']);
    expect(await write.text()).toMatch(/^Code: 164\. DB::Exception: .*\(READONLY\) \(version [\d.]+ \(official build\)\)\n$/s);
  });

  it('refuses what a server refuses: a long URI, a long field, and what it does not emulate', async () => {
    const long = await fetch(`${ch.url}/?query=SELECT%201&x=${'a'.repeat(ch.limits.maxUriSize)}`, { method: 'POST', headers: auth });
    expect([long.status, await long.text()]).toEqual([400, '']);
    const field = await fetch(`${ch.url}/?param_x=${'a'.repeat(ch.limits.maxFieldValueSize + 1)}`, { method: 'POST', headers: auth, body: 'SELECT {x:String}' });
    expect([field.status, field.headers.get('x-clickhouse-exception-code')]).toEqual([500, '1000']);
    expect(await field.text()).toMatch(/^Poco::Exception\. Code: 1000, e\.code\(\) = 0, HTML Form Exception: Field value too long/);
    const session = await fetch(`${ch.url}/?session_id=s1`, { method: 'POST', headers: auth, body: 'SELECT 1' });
    expect([session.status, session.headers.get('x-clickhouse-exception-code')]).toEqual([501, '48']);
  });
});

describe('the stand-in as the store sees it', () => {
  it('keeps settings and the dedup token to the one request that sent them', async () => {
    await withStore(async (store) => {
      expect(await store.query('SELECT timezone() AS tz')).toEqual([{ tz: 'Asia/Shanghai' }]);
      const limit = (): Promise<{ v: string }[]> => store.query("SELECT toString(getSetting('max_execution_time')) AS v");
      expect(await store.query("SELECT toString(getSetting('max_execution_time')) AS v", {}, { settings: { max_execution_time: 7 } })).toEqual([{ v: '7' }]);
      expect(await limit()).toEqual([{ v: '0' }]);
      // The same rows under token a, then b, then a again: the third insert is a retry of the first.
      const rows = [{ source: 's', stream: 'x', cursor: 'c', updated_at: 1_700_000_000_000_000 }];
      for (const token of ['a', 'b', 'a']) await store.insert('cursors', rows, { dedupToken: token });
      expect(await count(store, 'cursors')).toBe(2);
    });
  });

  it('binds parameters from the text the client sends, in the URL and in a multipart body', async () => {
    await withStore(async (store) => {
      const text = "it's \\ a\ttab\nnew line 你好 🌙 \u001f";
      const ids = Array.from({ length: 600 }, (_, i) => `id-${i}'\\`);
      const [row] = await store.query<{ text: string; n: string; last: string; big: string; m: string }>(
        `SELECT {text:String} AS text, toString(length({ids:Array(String)})) AS n, {ids:Array(String)}[600] AS last,
           {big:UInt64} AS big, toString({m:Map(String, Int64)}['k''']) AS m`,
        { text, ids, big: '18446744073709551615', m: { "k'": -9_007_199_254_740_991 } },
      );
      expect(row).toEqual({ text, n: '600', last: "id-599'\\", big: '18446744073709551615', m: '-9007199254740991' });
      // Past 4 096 characters the client moved the parameters into a multipart body.
      expect(ch.requests.at(-1)?.formFields).toEqual(['query', 'param_text', 'param_ids', 'param_big', 'param_m']);
    });
  });

  it('sends a command with its parameters in a multipart body, bound exactly', async () => {
    await withStore(async (store) => {
      await store.command('CREATE TABLE kv (k String, v Int64, tags Array(String)) ENGINE = MergeTree ORDER BY k');
      const text = "it's \\ a\ttab\nnew line 你好 🌙 \u001f".repeat(20);
      await store.command(
        'INSERT INTO kv SELECT {k:String}, {m:Map(String, Int64)}[{k:String}], {tags:Array(String)}',
        { k: text, m: { [text]: -9_007_199_254_740_991 }, tags: ["a'b", 'c\\'] },
      );
      expect(await ch.engineQuery('SELECT k, v, tags FROM kv', store.database)).toEqual([{ k: text, v: '-9007199254740991', tags: ["a'b", 'c\\'] }]);
      const sent = ch.requests.at(-1);
      expect(sent?.formFields).toEqual(['query', 'param_k', 'param_m', 'param_tags']);
      expect(sent?.urlFields.filter((name) => name.startsWith('param_') || name === 'query')).toEqual([]);
    });
  });

  it('reports server errors with the codes and the retry flags the store derives from them', async () => {
    await withStore(async (store) => {
      const unknown = await failure(store.query('SELECT * FROM no_such_table'));
      expect(unknown).toMatchObject({ code: 'MSGPIPE_ERR_CLICKHOUSE', retriable: false, details: { clickhouseCode: 60, clickhouseType: 'UNKNOWN_TABLE' } });
      expect(ch.requests.at(-1)?.status).toBe(404);
      const memory = await failure(
        store.query('SELECT groupArray(number) AS a FROM numbers(10000000)', {}, { settings: { max_memory_usage: '10000000' } }),
      );
      expect(memory).toMatchObject({ retriable: true, details: { clickhouseCode: 241, clickhouseType: 'MEMORY_LIMIT_EXCEEDED' } });
      const two = await failure(store.command('SELECT 1; SELECT 2'));
      expect(two).toMatchObject({ retriable: false, details: { clickhouseType: 'SYNTAX_ERROR' } });
      expect(two.message).toContain('Multi-statements are not allowed');
    });
    const denied = await failure(openStore({ url: ch.url, database: 'server_path_denied', username: USER, password: 'wrong' }, silent));
    expect(denied).toMatchObject({ retriable: false, details: { clickhouseCode: 516, clickhouseType: 'AUTHENTICATION_FAILED' } });
    expect(ch.requests.at(-1)?.status).toBe(403);
  });
});

describe('migrations on a server', () => {
  it('creates every table once and records each migration; a second run applies nothing', async () => {
    const store = await serverStore({ migrate: false });
    try {
      const versions = (await readMigrations()).map((m) => m.version);
      expect(await migrate(store, silent)).toEqual({ applied: versions, alreadyApplied: [] });
      expect(await migrate(store, silent)).toEqual({ applied: [], alreadyApplied: versions });
      const tables = await ch.engineQuery<{ name: string }>(`SELECT name FROM system.tables WHERE database = '${store.database}' ORDER BY name`);
      expect(tables.map((t) => t.name)).toEqual([
        'cursors', 'dead_letters', 'events', 'message_edits', 'messages', 'schema_migrations', 'sessions', 'sessions_agg', 'sessions_mv',
      ]);
      const recorded = await store.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      expect(recorded.map((r) => r.version)).toEqual(versions);
      // The embedded engine's merge bound is not a server's business.
      expect(await applyEmbeddedTableSettings(store, 32 * 1024 * 1024, silent)).toBe(false);
    } finally {
      await store.close();
    }
  });
});

describe('rebuilding the sessions on a server', () => {
  it('fills sessions_agg again from messages, with the view\'s own SELECT', async () => {
    await withStore(async (store) => {
      const w = writer(store);
      await w.add(unit({ messages: realisticMessages(500, { seed: 2 }) }));
      await w.close();
      const sessions = (): Promise<{ n: string; s: string }[]> => store.query('SELECT toString(count()) AS n, toString(sum(msg_count)) AS s FROM sessions');
      const before = await sessions();
      await store.command('TRUNCATE TABLE sessions_agg');
      expect(await sessions()).toEqual([{ n: '0', s: '0' }]);
      expect(await rebuildSessions(store, silent)).toEqual({ sessions: Number(before[0]!.n), messages: 500 });
      expect(await sessions()).toEqual(before);
    });
  });
});

describe('the sink writer on a server', () => {
  it('stores rows exactly: 64-bit ids, arrays, CJK text, times', async () => {
    await withStore(async (store) => {
      const m1 = message({ msgid: '3876235366388279544', seq: '18446744073709551615', tolist: ['a', 'b'], at_user_list: ['c'] });
      const m2 = message({
        msgid: '1767797523284146072', seq: '1', msg_time: m1.msg_time + 1000, content_text: '今天天气很好 "quoted" \\ back\nline', msg_seq: -3, wx_msg_type: 10002,
      });
      const e1 = event({ event_id: '18446744073709551615' });
      const w = writer(store);
      await w.add(unit({ messages: [m1, m2], events: [e1] }, 'kb-1'));
      await w.close();
      expect(await storedMessages(store)).toEqual([
        { ...m1, recalled: 0, recall_time: null },
        { ...m2, recalled: 0, recall_time: null },
      ]);
      expect(await store.query(`SELECT ${EVENT_SELECT} FROM events`)).toEqual([e1]);
      // Read past the HTTP layer: the engine holds the exact values.
      expect(await ch.engineQuery(`SELECT msgid, seq, toString(msg_time) AS t FROM messages ORDER BY msgid`, store.database)).toEqual([
        { msgid: '1767797523284146072', seq: '1', t: '2024-11-08 09:48:33.000' },
        { msgid: '3876235366388279544', seq: '18446744073709551615', t: '2024-11-08 09:48:32.000' },
      ]);
      expect(await new CursorStore(store).load('shop-a', 'main')).toBe('kb-1');
    });
  });

  it('stores a message once when it repeats within a batch, across batches and after a restart', async () => {
    await withStore(async (store) => {
      const rows = realisticMessages(3000, { seed: 11 });
      const units = [0, 1000, 2000].map((i, n) => unit({ messages: rows.slice(i, i + 1000), events: [event({ event_id: `e${n}` })] }, `kb-${n}`));
      const first = writer(store);
      await first.add(unit({ messages: [rows[0]!, rows[0]!] }, 'kb-0'));
      for (const u of units.slice(0, 2)) await first.add(u);
      await first.close();
      const second = writer(store);
      for (const u of units) await second.add(u);
      await second.close();
      expect(await count(store, 'messages')).toBe(3000);
      expect(await count(store, 'events')).toBe(3);
      expect(second.stats.duplicates.messages).toBe(2000);
      const [sums] = await store.query<{ s: string }>('SELECT toString(sum(msg_count)) AS s FROM sessions');
      expect(sums?.s).toBe('3000');
      expect(await new CursorStore(store).load('shop-a', 'main')).toBe('kb-2');
    });
  });

  it('stores a batch of the default size once, and finds all of it again when it is replayed', async () => {
    await withStore(async (store) => {
      // 20 000 rows: the writer's default maxRows; the lookup binds all their ids.
      const rows = realisticMessages(20_000, { seed: 5 });
      const first = new SinkWriter(store, silent, { retry: FAST_RETRY, maxBytes: 64 * 1024 * 1024 });
      await first.add(unit({ messages: rows }, 'kb-1'));
      await first.close();
      const replay = new SinkWriter(store, silent, { retry: FAST_RETRY, maxBytes: 64 * 1024 * 1024 });
      await replay.add(unit({ messages: rows }, 'kb-1'));
      await replay.close();
      expect(first.stats.written.messages).toBe(20_000);
      expect(replay.stats.duplicates.messages).toBe(20_000);
      expect(await ch.engineQuery(`SELECT toString(count()) AS n, toString(uniqExact(msgid)) AS ids FROM messages`, store.database)).toEqual([
        { n: '20000', ids: '20000' },
      ]);
    });
  });

  describe('recalls', () => {
    const target = message({ msgid: '3876235366388279544' });
    const revoke = (t: number, msgid = '3876235366388279999', of: MessageRow = target): MessageRow =>
      message({ msgid, msg_type: 'revoke', action: 'recall', pre_msgid: of.msgid, msg_time: t, session_id: of.session_id, content_text: '张三撤回了一条消息' });

    it('marks a target stored by an earlier batch by UPDATE, idempotently, and one that arrives after its revocation', async () => {
      await withStore(async (store) => {
        const t = target.msg_time + 30_000;
        const late = message({ msgid: '3876235366388270001', msg_time: target.msg_time + 1000 });
        const w = writer(store);
        await w.add(unit({ messages: [target, message({ msgid: '1' })] }, 'kb-1'));
        await w.flush();
        await w.add(unit({ messages: [revoke(t), revoke(t + 1000, '3876235366388279998', late)], recalls: [recall(target, t), recall(late, t + 1000)] }, 'kb-2'));
        await w.flush();
        await w.add(unit({ recalls: [recall(target, t + 99_000)] }, 'kb-3'));
        await w.add(unit({ messages: [late] }, 'kb-4'));
        await w.close();
        const rows = await storedMessages(store);
        expect(rows.find((r) => r.msgid === target.msgid)).toMatchObject({ recalled: 1, recall_time: t });
        expect(rows.find((r) => r.msgid === late.msgid)).toMatchObject({ recalled: 1, recall_time: t + 1000 });
        expect(rows.find((r) => r.msgid === '1')).toMatchObject({ recalled: 0, recall_time: null });
        expect(rows).toHaveLength(5);
      });
    });

    it('applies thousands of recalls of one batch', async () => {
      await withStore(async (store) => {
        const targets = realisticMessages(5000, { seed: 3 });
        const w = writer(store, { maxRows: 100_000 });
        await w.add(unit({ messages: targets }, 'kb-1'));
        await w.flush();
        const revokes = targets.map((m, i) => revoke(m.msg_time + 60_000, String(4_000_000_000_000_000_000n + BigInt(i)), m));
        await w.add(unit({ messages: revokes, recalls: targets.map((m) => recall(m, m.msg_time + 60_000)) }, 'kb-2'));
        await w.close();
        expect(await ch.engineQuery(
          `SELECT toString(count()) AS n, toString(countIf(recall_time = msg_time + INTERVAL 60 SECOND)) AS timed
           FROM messages WHERE msg_type != 'revoke' AND recalled = 1`,
          store.database,
        )).toEqual([{ n: '5000', timed: '5000' }]);
      });
    });
  });

  describe('edits', () => {
    const ORIGIN: Origin = { source: 'yh1', sourceType: 'yunhu', tenant: 'corp1', staffId: '7311890' };
    const NOW = 1_767_225_600_000;
    const SEND = 1_731_059_400_000;
    const yunhuMsg = (text: string, editTime: number, recallTime = 0, id = 'm1', seq = 1): Uint8Array =>
      encodeYunhu('Msg', {
        msg_id: id,
        sender: { chat_id: '7356214', chat_type: 1, name: '小林', avatar_url: 'https://a/x.jpg' },
        direction: 'left',
        content_type: 1,
        content: { text },
        send_time: String(SEND + seq),
        edit_time: String(editTime),
        recall_time: String(recallTime),
        msg_seq: String(seq),
      });
    const entry = (id: number, old: string, at: number, msgId = 'm1'): Uint8Array =>
      Buffer.from(JSON.stringify({ id, msgId, contentType: 1, contentOld: JSON.stringify({ text: old }), createTime: SEND + 1, msgTime: at }));
    const yunhuUnit = (records: Uint8Array[], cursor: string): SinkUnit => {
      const outs = records.map((bytes, index) =>
        transformYunhuRecord({ origin: ORIGIN, bytes, fetchedAt: NOW, cursor: `1:7356214@${cursor}`, index } satisfies RawRecord, NOW),
      );
      return {
        output: {
          messages: outs.flatMap((o) => o.messages),
          events: [],
          deadLetters: outs.flatMap((o) => o.deadLetters),
          recalls: outs.flatMap((o) => o.recalls),
          edits: outs.flatMap((o) => o.edits ?? []),
          editHistory: outs.flatMap((o) => o.editHistory ?? []),
        },
        cursor: { source: 'yh1', stream: '1:7356214', cursor },
      };
    };

    it('shows the last edit, the history once and the recall, whatever is delivered again', async () => {
      await withStore(async (store) => {
        const w = writer(store);
        await w.add(yunhuUnit([yunhuMsg('v1', 0), yunhuMsg('hello', 0, 0, 'm2', 2)], '0'));
        await w.flush();
        const edited = yunhuUnit([yunhuMsg('v3', SEND + 200), entry(11, 'v2', SEND + 200), entry(10, 'v1', SEND + 100)], '2');
        await w.add(edited);
        await w.add(edited);
        await w.flush();
        await w.add(yunhuUnit([yunhuMsg('v2', SEND + 100), entry(10, 'v1', SEND + 100)], '2'));
        await w.add(yunhuUnit([yunhuMsg('', 0, SEND + 300, 'm2', 2)], '2'));
        await w.close();
        expect(await store.query(
          'SELECT msgid, content_text, toString(toUnixTimestamp64Milli(edit_time)) AS edit_time, recalled FROM messages ORDER BY msgid',
        )).toEqual([
          { msgid: 'm1', content_text: 'v3', edit_time: String(SEND + 200), recalled: 0 },
          { msgid: 'm2', content_text: 'hello', edit_time: null, recalled: 1 },
        ]);
        expect(await store.query('SELECT edit_id, content_text_old FROM message_edits ORDER BY edit_time')).toEqual([
          { edit_id: '10', content_text_old: 'v1' },
          { edit_id: '11', content_text_old: 'v2' },
        ]);
        expect(await store.query('SELECT last_msgid, last_content_text, toString(msg_count) AS msg_count FROM sessions')).toEqual([
          { last_msgid: 'm2', last_content_text: 'hello', msg_count: '2' },
        ]);
      });
    });

    it('applies the edits of a batch, one of them to a text longer than a server takes in one parameter', async () => {
      await withStore(async (store) => {
        // 50 000 CJK characters and emoji: about 190 KB of UTF-8 in each of the three texts (raw_content is base64).
        const long = `${'长文🌙'.repeat(16_000)}'\\end`;
        const ids = Array.from({ length: 40 }, (_, i) => `m${i}`);
        const w = writer(store);
        await w.add(yunhuUnit(ids.map((id, i) => yunhuMsg(`first ${i}`, 0, 0, id, i + 1)), '0'));
        await w.flush();
        await w.add(yunhuUnit(ids.map((id, i) => yunhuMsg(i === 7 ? long : `edited ${i} 你好`, SEND + 100, 0, id, i + 1)), '1'));
        await w.close();
        const rows = await ch.engineQuery<{ msgid: string; text: string; raw: string; edited: string }>(
          'SELECT msgid, content_text AS text, raw_content AS raw, toString(toUnixTimestamp64Milli(edit_time)) AS edited FROM messages ORDER BY msg_seq',
          store.database,
        );
        expect(rows.map((r) => r.text)).toEqual(ids.map((_, i) => (i === 7 ? long : `edited ${i} 你好`)));
        // raw_content: the message's bytes, base64.
        expect(rows[7]!.raw).toBe(Buffer.from(yunhuMsg(long, SEND + 100, 0, 'm7', 8)).toString('base64'));
        expect(new Set(rows.map((r) => r.edited))).toEqual(new Set([String(SEND + 100)]));
      });
    });
  });
});

describe('the query API on a server', () => {
  it('answers sessions, messages and search from the server store', async () => {
    await withStore(async (store) => {
      const talk = conversation(30, {}, Date.UTC(2024, 0, 15, 2, 0, 0));
      const last = { ...talk[29]!, seq: '18446744073709551615', content_text: '这是我们最新的产品介绍，请您查看' };
      const w = writer(store);
      await w.add(unit({ messages: [...talk.slice(0, 29), last] }));
      await w.close();
      const app = buildQueryApp({ store, config: testConfig(), log: pino({ level: 'silent' }), sync: { trigger: () => 1 } });
      await app.ready();
      try {
        const A = { ext_corp_id: 'corp123', ext_staff_id: 'staff123' };
        const sessions = await get(app, '/api/v1/chat-msg/sessions', signedQuery({ ...A, session_type: 'external', page: 1, page_size: 20 }, SECRET_A));
        expect(sessions.body).toMatchObject({ code: 0, data: { total: 1, items: [{ session_id: 'sess_abc123', msgid: last.msgid, content_text: last.content_text }] } });
        expect(sessions.text).toContain('"seq":18446744073709551615');

        const page = await get(app, '/api/v1/chat-msg/session-msgs', signedQuery({ ...A, receiver_id: 'customer456', page: 2, page_size: 10 }, SECRET_A));
        const items = (page.body.data as { total: number; items: { msgid: string }[] });
        expect(items.total).toBe(30);
        // Newest first: the second page holds messages 19 … 10.
        expect(items.items.map((m) => m.msgid)).toEqual(talk.slice(10, 20).reverse().map((m) => m.msgid));

        const search = await get(app, '/api/v1/chat-msg/search', signedQuery({ keyword: '消息1', ...A, ext_peer_id: 'customer456' }, SECRET_A));
        const found = search.body.data as { total: number; items: { content_text: string }[] };
        expect(found.items.map((m) => m.content_text).sort()).toEqual(['消息1', ...Array.from({ length: 10 }, (_, i) => `消息1${i}`)].sort());
        expect(found.total).toBe(11);
      } finally {
        await app.close();
      }
    });
  });
});

describe('msgpipe run with clickhouse.url', () => {
  it('stores every upstream message exactly once through the server, and msgpipe sql reads them back', async () => {
    await withTempDir('server-path', async (dir) => {
      const accounts = [
        { provider: 'gewe', id: 'g1', token: 'tok-g', appId: 'wx_app_g1', seed: 'g1', messages: 300, sessions: 20, pageSize: 50, duplicateRate: 0.05 },
      ] as SimulatorAccountInput[];
      const sim = await startSimulator({ accounts });
      try {
        const configFile = await writeConfig(dir, {
          tenants: [{ id: 'corp1', secret: 'test-secret' }],
          sources: [{ type: 'gewe', name: 'g1', tenant: 'corp1', baseUrl: sim.url, token: 'tok-g', appId: 'wx_app_g1', pollIntervalMs: 100 }],
          clickhouse: { url: ch.url, database: 'server_path_run', username: USER, password: PASSWORD },
          sink: { maxAgeMs: 200 },
          query: { port: 0 },
          log: { level: 'info' },
        });
        const proc = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => sim.received('g1').at(-1)?.outcome === 'caught_up', 60_000, 'the pipeline to catch up');
        // Caught up upstream; the last batch may still be on its way to the server.
        const expected = sim.expected('g1').filter((m) => m.destination === 'messages');
        await waitFor(
          async () => Number((await ch.engineQuery<{ n: string }>('SELECT toString(count()) AS n FROM messages', 'server_path_run'))[0]?.n) >= expected.length,
          30_000,
          'the last batch to be stored',
        );
        proc.child.kill('SIGTERM');
        expect(await proc.exited).toBe(0);
        // The log is JSON lines only: the client's own lines too (they came as console text).
        const stderr = proc.stderr().split('\n').filter((line) => line !== '');
        expect(stderr.filter((line) => !line.startsWith('{'))).toEqual([]);
        expect(stderr.some((line) => line.includes('"lib":"@clickhouse/client"'))).toBe(true);

        await expectExactContents(configFile, sim, ['g1']);
        const lastPage = sim.received('g1').filter((r) => r.outcome === 'page').at(-1)!;
        const [cursor] = await sql<{ cursor: string }>(configFile, "SELECT argMax(cursor, updated_at) AS cursor FROM cursors WHERE source = 'g1'");
        expect(cursor?.cursor).toBe(lastPage.returnedKeyBuff);
        // msgpipe sql is read-only in the engine on a server too: a write dressed as a read is refused.
        await expect(sql(configFile, "WITH 'x' AS t INSERT INTO cursors (source, cursor) SELECT 'sneaked', 'c'")).rejects.toThrow(/readonly/);
        expect(await ch.engineQuery("SELECT toString(count()) AS n FROM cursors WHERE source = 'sneaked'", 'server_path_run')).toEqual([{ n: '0' }]);
        // It writes nothing to open the store either (a read-only user could not): a mistyped
        // database is an error, not a new empty database.
        await mkdir(join(dir, 'typo'));
        const typo = await writeConfig(join(dir, 'typo'), {
          clickhouse: { url: ch.url, database: 'server_path_typo', username: USER, password: PASSWORD },
        });
        await expect(sql(typo, 'SELECT 1')).rejects.toMatchObject({
          code: 2,
          stderr: expect.stringContaining('clickhouse.database: there is no database "server_path_typo" (msgpipe migrate creates it)') as unknown,
        });
        expect(await ch.engineQuery("SELECT toString(count()) AS n FROM system.databases WHERE name = 'server_path_typo'", 'default')).toEqual([{ n: '0' }]);
      } finally {
        await sim.close();
      }
    });
  });
});
