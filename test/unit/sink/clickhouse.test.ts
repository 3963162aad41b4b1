import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

import { formatQueryParams } from '@clickhouse/client-common';
import { afterEach, describe, expect, it } from 'vitest';

import { MsgpipeError } from '../../../src/core/errors.ts';

import { CHDB_MALLOC_CONF, formatParam, groupBySize, JsonLines, MAX_PARAM_BYTES, openStore, stringList, textPieces, toStoreError } from '../../../src/sink/clickhouse.ts';
import { openTempStore, silent, type TempStore } from './helpers.ts';

describe('openStore on chDB', () => {
  let temp: TempStore | undefined;
  afterEach(async () => {
    await temp?.dispose();
    temp = undefined;
  });

  it('creates the database, makes it current and quotes 64-bit integers', async () => {
    temp = await openTempStore({ migrate: false, database: 'msgpipe_test' });
    const [row] = await temp.store.query<{ db: string; big: string; small: number }>(
      'SELECT currentDatabase() AS db, toUInt64({big:String}) AS big, toUInt32(7) AS small',
      { big: '18446744073709551615' },
    );
    expect(row).toEqual({ db: 'msgpipe_test', big: '18446744073709551615', small: 7 });
    expect(temp.store.backend).toBe('chdb');
    // Decimals exact too, and NaN and infinities told apart from NULL, on both read paths (`msgpipe sql` streams).
    const odd = "SELECT toDecimal128('12345678901234567890.123', 3) AS d, toDecimal64('123456789012345.678', 3) AS e, nan AS x, -inf AS y, CAST(NULL AS Nullable(Float64)) AS z";
    expect(await temp.store.query(odd)).toEqual([{ d: '12345678901234567890.123', e: '123456789012345.678', x: 'nan', y: '-inf', z: null }]);
    const streamed: (readonly unknown[])[] = [];
    for await (const r of temp.store.queryRows!(odd)) streamed.push(r);
    expect(streamed).toEqual([['d', 'e', 'x', 'y', 'z'], ['12345678901234567890.123', '123456789012345.678', 'nan', '-inf', null]]);
  });

  it('configures the engine’s allocator before libchdb loads', async () => {
    temp = await openTempStore({ migrate: false });
    const [row] = await temp.store.query<{ stats: string }>('SELECT stats FROM system.jemalloc_stats');
    const stats = row?.stats ?? '';
    const conf = process.env['JE_MALLOC_CONF'];
    // Our options unless whoever runs the tests set their own; either way the engine read them.
    expect(conf).toBeDefined();
    expect(stats).toContain(`MALLOC_CONF: "${conf ?? ''}"`);
    if (conf === CHDB_MALLOC_CONF) {
      expect(stats).toMatch(/opt\.narenas: 1\n/);
      expect(stats).toMatch(/opt\.percpu_arena: "disabled"/);
      // The live value (`prof.active`), not only the option read at start.
      expect(stats).toMatch(/opt\.prof_active: false \(prof\.active: false\)/);
      expect(stats).toMatch(/opt\.dirty_decay_ms: 200 /);
    }
  });

  it('does not let one insert’s dedup token leak into the next insert', async () => {
    temp = await openTempStore({ migrate: false });
    const { store } = temp;
    await store.command(
      'CREATE TABLE t (id UInt64) ENGINE = MergeTree ORDER BY id SETTINGS non_replicated_deduplication_window = 100',
    );
    await store.insert('t', [{ id: 1 }], { dedupToken: 'tok' });
    // Same token again: dropped by ClickHouse.
    await store.insert('t', [{ id: 1 }], { dedupToken: 'tok' });
    // No token, different rows: must be stored (chDB SETs settings on the session; a sticky
    // token would silently drop these).
    await store.insert('t', [{ id: 2 }]);
    await store.command('INSERT INTO t VALUES (3)');
    const rows = await store.query<{ id: string }>('SELECT id FROM t ORDER BY id');
    expect(rows.map((r) => r.id)).toEqual(['1', '2', '3']);
  });

  it('does not let a read\'s time limit reach the next insert', async () => {
    temp = await openTempStore({ migrate: false });
    const { store } = temp;
    await store.command('CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x');
    await store.command('CREATE TABLE slow_copy (x UInt8, s UInt8) ENGINE = MergeTree ORDER BY x');
    // A view that makes each insert take about 1.5 s.
    await store.command('CREATE MATERIALIZED VIEW slow_mv TO slow_copy AS SELECT x, sleepEachRow(0.5) AS s FROM t');
    // A read limited to 1 s (as the query API limits its reads): chDB SETs it on the session.
    await store.query('SELECT 1 AS one', undefined, { settings: { max_execution_time: 1 } });
    await store.insert('t', [{ x: 1 }, { x: 2 }, { x: 3 }]);
    expect(await store.query<{ n: string }>('SELECT count() AS n FROM slow_copy')).toEqual([{ n: '3' }]);
  });

  it('streams a read block by block: names first, every row once, 64-bit integers exact', async () => {
    temp = await openTempStore({ migrate: false });
    const rows: (readonly unknown[])[] = [];
    // 20 000 rows are three blocks, each sent with the names again; the rows look like the names.
    for await (const row of temp.store.queryRows!("SELECT 'n' AS n, toUInt64(number) + 18446744073709531615 AS big FROM numbers(20000)")) rows.push(row);
    expect(rows).toHaveLength(20_001);
    expect(rows[0]).toEqual(['n', 'big']);
    expect(rows[1]).toEqual(['n', '18446744073709531615']);
    expect(rows.at(-1)).toEqual(['n', '18446744073709551614']);
    expect(new Set(rows.slice(1).map((r) => r[1])).size).toBe(20_000);
    const empty: (readonly unknown[])[] = [];
    for await (const row of temp.store.queryRows!('SELECT number AS x FROM numbers(0)')) empty.push(row);
    expect(empty).toEqual([['x']]);
    // The block size of the stream is not left on the engine's session.
    const blockSize = (): Promise<unknown> => temp!.store.query("SELECT value FROM system.settings WHERE name = 'max_block_size'");
    expect(await blockSize()).toEqual([{ value: '65409' }]);
    // What the engine does not stream is read whole.
    await temp.store.command('CREATE TABLE t (x UInt8) ENGINE = MergeTree ORDER BY x');
    const tables: (readonly unknown[])[] = [];
    for await (const row of temp.store.queryRows!('SHOW TABLES')) tables.push(row);
    expect(tables).toEqual([['name'], ['t']]);
    expect(await blockSize()).toEqual([{ value: '65409' }]);
  });

  it('fails a streamed read that fails in the middle, and refuses a statement with its own FORMAT clause', async () => {
    temp = await openTempStore({ migrate: false });
    let seen = 0;
    const read = async (): Promise<void> => {
      for await (const _row of temp!.store.queryRows!('SELECT throwIf(number = 30000) AS x FROM numbers(40000)')) seen += 1;
    };
    // As the client's path reports it: the engine's text without its `Code: 395. DB::Exception:`.
    await expect(read()).rejects.toMatchObject({
      code: 'MSGPIPE_ERR_CLICKHOUSE',
      message: expect.stringMatching(/^ClickHouse query failed: Value passed to 'throwIf'/) as unknown,
      details: { clickhouseType: 'FUNCTION_THROW_IF_VALUE_IS_NON_ZERO', clickhouseCode: 395 },
    });
    // The engine may run ahead of the stream and fail before the first block is read: no more
    // than the rows before the failure, and the failure itself, are certain.
    expect(seen).toBeLessThan(30_001);
    const formatted = async (sql: string): Promise<void> => {
      for await (const _row of temp!.store.queryRows!(sql)) seen += 1;
    };
    // Refused as on a server, where the client adds its own FORMAT clause after the statement.
    for (const format of ['TSV', 'CSVWithNames', 'TSVWithNames', 'Null', 'JSONEachRow', 'JSONCompactStringsEachRowWithNames']) {
      await expect(formatted(`SELECT 1 AS x, 'a' AS y FORMAT ${format}`), format).rejects.toMatchObject({ code: 'MSGPIPE_ERR_CLICKHOUSE', message: expect.stringContaining('Syntax error') as unknown, details: { clickhouseCode: 62 } });
    }
    // A comment at the end does not hide the clause.
    const rows: (readonly unknown[])[] = [];
    for await (const row of temp.store.queryRows!('SELECT 1 AS x -- the end')) rows.push(row);
    expect(rows).toEqual([['x'], [1]]);
  });

  it('inserts positional rows when columns are given, missing properties taking the DEFAULT', async () => {
    temp = await openTempStore({ migrate: false });
    const { store } = temp;
    await store.command("CREATE TABLE c (a String, b UInt8 DEFAULT 9, n Nullable(String)) ENGINE = MergeTree ORDER BY a");
    await store.insert('c', [{ a: 'x' }, { a: 'y', b: 1, n: 'z' }], { columns: ['a', 'b', 'n'] });
    expect(await store.query('SELECT a, b, n FROM c ORDER BY a')).toEqual([
      { a: 'x', b: 9, n: null },
      { a: 'y', b: 1, n: 'z' },
    ]);
  });

  it('inserts blocks as they are, as row objects and as encoded lines: rows sharing a sort key are left to merges', async () => {
    temp = await openTempStore({ migrate: false });
    const { store } = temp;
    await store.command('CREATE TABLE r (k UInt8, v String) ENGINE = ReplacingMergeTree ORDER BY k');
    await store.command('SYSTEM STOP MERGES r');
    const rows = [{ k: 1, v: 'a' }, { k: 1, v: 'b' }];
    await store.insert('r', rows);
    await store.insert('r', new JsonLines(Buffer.from('[2,"a"]\n[2,"b"]\n'), 2), { columns: ['k', 'v'] });
    // With ClickHouse's default (optimize_on_insert=1) each block would arrive as one row per key.
    expect(await store.query('SELECT k, v FROM r ORDER BY k, v')).toEqual([
      { k: 1, v: 'a' },
      { k: 1, v: 'b' },
      { k: 2, v: 'a' },
      { k: 2, v: 'b' },
    ]);
    expect(await store.query('SELECT k, v FROM r FINAL ORDER BY k')).toEqual([
      { k: 1, v: 'b' },
      { k: 2, v: 'b' },
    ]);
  });

  it('reports ClickHouse errors with a stable code and a permanent/retriable flag', async () => {
    temp = await openTempStore({ migrate: false });
    const failure = await temp.store.query('SELECT * FROM no_such_table').catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(MsgpipeError);
    expect(failure).toMatchObject({
      code: 'MSGPIPE_ERR_CLICKHOUSE',
      retriable: false,
      details: { clickhouseType: 'UNKNOWN_TABLE', clickhouseCode: 60 },
    });
    const insertFailure = await temp.store.insert('no_such_table', [{ a: 1 }]).catch((err: unknown) => err);
    expect(insertFailure).toMatchObject({ code: 'MSGPIPE_ERR_CLICKHOUSE', retriable: false });
  });

  it('closes so that a store at another directory can open in the same process', async () => {
    temp = await openTempStore({ migrate: false });
    await temp.store.command('CREATE TABLE first (a UInt8) ENGINE = MergeTree ORDER BY a');
    await temp.dispose();
    temp = await openTempStore({ migrate: false });
    const tables = await temp.store.query<{ name: string }>(
      "SELECT name FROM system.tables WHERE database = currentDatabase()",
    );
    expect(tables).toEqual([]);
  });

  it('refuses a database name that is not a plain identifier', async () => {
    await expect(openStore({ path: '/nonexistent', database: 'x; DROP' }, silent)).rejects.toMatchObject({
      code: 'MSGPIPE_ERR_CONFIG',
    });
  });
});

describe('stringList', () => {
  it('joins a list by U+001F for the engine to split, and sends it as an array when it cannot', () => {
    expect(stringList('ids', ['a', '', 'b'])).toEqual({ sql: "splitByChar('\\x1F', {ids:String})", params: { ids: 'a\u001f\u001fb' } });
    // The separator inside an id, or nothing to join (splitting '' gives one empty id).
    expect(stringList('ids', ['a\u001fb', 'b'])).toEqual({ sql: '{ids:Array(String)}', params: { ids: ['a\u001fb', 'b'] } });
    expect(stringList('ids', [])).toEqual({ sql: '{ids:Array(String)}', params: { ids: [] } });
    expect(() => stringList('ids}', ['a'])).toThrow(/not a plain identifier/);
  });

  it('binds a list longer than a server takes in one parameter in pieces, each within MAX_PARAM_BYTES', async () => {
    // 20 000 message ids (a batch of the default size): about 400 KB joined.
    const ids = Array.from({ length: 20_000 }, (_, i) => String(3_876_235_366_388_000_000n + BigInt(i)));
    ids[12_345] = "odd 'quoted' \\ id\u001fwith the separator";
    const list = stringList('ids', ids);
    const names = Object.keys(list.params);
    expect(names.length).toBeGreaterThan(3);
    expect(names).toEqual(names.map((_, i) => `ids_${i}`));
    for (const value of Object.values(list.params)) expect(Buffer.byteLength(formatParam(value))).toBeLessThanOrEqual(MAX_PARAM_BYTES);
    // The piece holding the separator travels as an array; the others joined.
    expect(Object.values(list.params).filter((v) => Array.isArray(v))).toHaveLength(1);
    expect(list.sql).toMatch(/^arrayConcat\(splitByChar\('\\x1F', \{ids_0:String\}\), /);
    const temp = await openTempStore({ migrate: false });
    try {
      const [row] = await temp.store.query<{ list: string[] }>(`SELECT ${list.sql} AS list`, list.params);
      expect(row?.list).toEqual(ids);
    } finally {
      await temp.dispose();
    }
  });
});

describe('groupBySize', () => {
  it('groups items in order up to the size, an oversized item alone', () => {
    expect(groupBySize([3, 4, 2, 9, 1, 1], (n) => n, 8)).toEqual([[3, 4], [2], [9], [1, 1]]);
    expect(groupBySize([], (n: number) => n, 8)).toEqual([]);
  });
});

describe('textPieces', () => {
  it('cuts a text into pieces within the bytes a parameter takes, never inside a character', () => {
    expect(textPieces('')).toEqual(['']);
    expect(textPieces('short')).toEqual(['short']);
    // 'a' 1 byte, '你' 3, '🌙' 4 (two UTF-16 units), "'" 2 escaped.
    expect(textPieces("a你🌙'b🌙", 8)).toEqual(['a你🌙', "'b🌙"]);
    expect(textPieces('abcde🌙x', 8)).toEqual(['abcde', '🌙x']);
    const text = `${'长文🌙\\'.repeat(30_000)}end`;
    const pieces = textPieces(text);
    expect(pieces.join('')).toBe(text);
    expect(pieces.length).toBeGreaterThan(3);
    for (const piece of pieces) {
      expect(Buffer.byteLength(formatParam(piece))).toBeLessThanOrEqual(MAX_PARAM_BYTES);
      expect(piece).not.toMatch(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/);
    }
  });
});

describe('formatParam', () => {
  it('writes parameters as @clickhouse/client does', () => {
    const values: unknown[] = [
      "it's\t\\ \n\r 你好 🌙", '', ['a', "b'c", null, true, 3], { "k'": -9_007_199_254_740_991, z: 'v\\' }, new Map([[1, ['x']]]),
      null, undefined, false, true, 12n, -1.5, Number.NaN, Number.POSITIVE_INFINITY, new Date(1_700_000_000_123), new Date(1_700_000_000_000), [[]],
    ];
    for (const value of values) expect(formatParam(value), String(value)).toBe(formatQueryParams({ value }));
    expect(formatParam(['a', "b'c"])).toBe("['a','b\\'c']");
  });
});

describe('toStoreError', () => {
  const classify = (err: unknown): boolean => toStoreError(err, 'insert').retriable;

  it('retries overload, timeouts, too many parts and network failures', () => {
    expect(classify(Object.assign(new Error('Timeout exceeded'), { code: '159', type: 'TIMEOUT_EXCEEDED' }))).toBe(true);
    expect(classify(Object.assign(new Error('x'), { code: '202', type: 'TOO_MANY_SIMULTANEOUS_QUERIES' }))).toBe(true);
    expect(classify(Object.assign(new Error('x'), { code: '241', type: 'MEMORY_LIMIT_EXCEEDED' }))).toBe(true);
    // chDB's own error: only the numeric code and the name in the text.
    expect(
      classify(
        Object.assign(new Error('Code: 252. DB::Exception: Too many parts (3001). (TOO_MANY_PARTS)'), {
          code: 'CHDB_QUERY',
          clickhouseCode: 252,
        }),
      ),
    ).toBe(true);
    expect(classify(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8123'), { code: 'ECONNREFUSED' }))).toBe(true);
    expect(classify(new Error('Timeout error.'))).toBe(true);
  });

  it('retries the page a proxy answers for a server that is down, as a server reached through it', async () => {
    const pages: [number, string][] = [
      [502, '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n'],
      [503, '<html><head><title>503 Service Temporarily Unavailable</title></head></html>'],
      [504, '504 Gateway Time-out'],
      [503, 'no healthy upstream'],
      [502, 'Bad Gateway'],
    ];
    let answer = 0;
    const proxy = createServer((req, res) => {
      req.resume();
      const [status, body] = pages[answer++ % pages.length]!;
      res.writeHead(status, { 'Content-Type': 'text/html' });
      res.end(body);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const { port } = proxy.address() as AddressInfo;
    try {
      // openStore's CREATE DATABASE meets the first page.
      const opened = openStore({ url: `http://127.0.0.1:${port}`, database: 'msgpipe' }, silent);
      await expect(opened).rejects.toMatchObject({ code: 'MSGPIPE_ERR_CLICKHOUSE', retriable: true });
      for (let i = 1; i < pages.length; i++) {
        const store = await openStore({ url: `http://127.0.0.1:${port}`, database: 'msgpipe' }, silent).catch((err: unknown) => err);
        expect(store, `page ${i}`).toMatchObject({ retriable: true });
      }
    } finally {
      await new Promise((resolve) => { proxy.close(resolve); });
    }
    // A ClickHouse error that mentions such words stays what its code says.
    expect(classify(Object.assign(new Error('Code: 62. DB::Exception: Syntax error near 503 Service Unavailable'), { code: '62', type: 'SYNTAX_ERROR' }))).toBe(false);
  });

  it('does not retry bad data, bad SQL, auth or an abort', () => {
    expect(classify(Object.assign(new Error('x'), { code: '27', type: 'CANNOT_PARSE_INPUT_ASSERTION_FAILED' }))).toBe(false);
    expect(classify(Object.assign(new Error('x'), { code: '62', type: 'SYNTAX_ERROR' }))).toBe(false);
    expect(classify(Object.assign(new Error('x'), { code: '516', type: 'AUTHENTICATION_FAILED' }))).toBe(false);
    const aborted = new AbortController();
    aborted.abort();
    expect(toStoreError(new Error('The user aborted a request.'), 'query', aborted.signal).retriable).toBe(false);
  });

  it('keeps messages short: ClickHouse echoes bound parameters', () => {
    const err = toStoreError(new Error('x'.repeat(100_000)), 'query');
    expect(err.message.length).toBeLessThan(1100);
  });
});

/** One request the stand-in server received. */
interface Captured {
  readonly params: URLSearchParams;
  readonly body: Buffer;
}

/**
 * The HTTP side of a ClickHouse server, as far as an INSERT needs it: every request is kept and
 * answered 200 with an empty body. No server runs here (no Docker); the engine check replays
 * the captured statement and body on chDB.
 */
async function captureServer(): Promise<{ url: string; requests: Captured[]; close: () => Promise<void> }> {
  const requests: Captured[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      requests.push({ params: new URL(req.url ?? '/', 'http://127.0.0.1').searchParams, body: Buffer.concat(chunks) });
      res.writeHead(200, { 'Content-Type': 'text/plain', 'X-ClickHouse-Summary': '{}' });
      res.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, requests, close: () => new Promise((resolve) => { server.close(() => { resolve(); }); }) };
}

describe('openStore on a ClickHouse server', () => {
  it('sends an insert as its JSON lines, well-formed, with the token, and the engine takes them', async () => {
    const server = await captureServer();
    const store = await openStore({ url: server.url, database: 'msgpipe' }, silent);
    try {
      await store.insert('c', [{ a: 'cut \ud83d here', b: 1 }], { columns: ['a', 'b'], dedupToken: 'tok-1' });
      await store.insert('c', new JsonLines(Buffer.from('["x",2]\n["y",3]\n'), 2), { columns: ['a', 'b'], dedupToken: 'tok-2' });
      await store.insert('e', [{ id: '7', text: '你好' }], { dedupToken: 'tok-3' });
    } finally {
      await store.close();
      await server.close();
    }
    const inserts = server.requests.filter((r) => r.params.get('query')?.startsWith('INSERT') === true);
    expect(inserts.map((r) => [r.params.get('query'), r.params.get('insert_deduplication_token'), r.body.toString('utf8')])).toEqual([
      ['INSERT INTO c (a, b) FORMAT JSONCompactEachRow', 'tok-1', '["cut \\ufffd here",1]'],
      ['INSERT INTO c (a, b) FORMAT JSONCompactEachRow', 'tok-2', '["x",2]\n["y",3]\n'],
      ['INSERT INTO e FORMAT JSONEachRow', 'tok-3', '{"id":"7","text":"你好"}'],
    ]);
    // What the server received, replayed on the engine.
    const temp = await openTempStore({ migrate: false });
    try {
      await temp.store.command('CREATE TABLE c (a String, b UInt8) ENGINE = MergeTree ORDER BY a');
      for (const r of inserts.slice(0, 2)) await temp.store.command(`${r.params.get('query') ?? ''}\n${r.body.toString('utf8')}`);
      expect(await temp.store.query('SELECT a, b FROM c ORDER BY a')).toEqual([
        { a: 'cut \ufffd here', b: 1 },
        { a: 'x', b: 2 },
        { a: 'y', b: 3 },
      ]);
    } finally {
      await temp.dispose();
    }
  });
});
