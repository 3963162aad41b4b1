import { Writable } from 'node:stream';

import { describe, expect, it } from 'vitest';

import { operationalMessage, sqlQueryOperand } from '../../../src/bin/main.ts';
import { MsgpipeError } from '../../../src/core/errors.ts';
import { formatRows, readOnlyProblem, soleStatement, TABLE_ALIGN_ROWS, writeRows, type OutputFormat } from '../../../src/bin/sql.ts';

const ONLY_READS = 'sql: only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN are allowed';
const ONE_STATEMENT = 'sql: one statement at a time (a second statement follows the first ";")';

describe('readOnlyProblem', () => {
  it('accepts reads, with comments and a trailing semicolon', () => {
    expect(readOnlyProblem('SELECT 1')).toBeUndefined();
    expect(readOnlyProblem('  -- daily counts\n/* x */ with a as (select 1) select * from a;')).toBeUndefined();
    expect(readOnlyProblem('SHOW TABLES')).toBeUndefined();
    expect(readOnlyProblem('SELECT 1;; -- done\n/* end */ ')).toBeUndefined();
    // ClickHouse's `#` comments, a query in parentheses, and one that starts FROM are reads too.
    expect(readOnlyProblem('# daily counts\nSELECT 1 # done')).toBeUndefined();
    expect(readOnlyProblem('( /* a */ (SELECT 1)) UNION ALL (SELECT 2)')).toBeUndefined();
    expect(readOnlyProblem('FROM messages SELECT count()')).toBeUndefined();
    expect(readOnlyProblem('(INSERT INTO t VALUES (1))')).toBe(ONLY_READS);
    expect(readOnlyProblem('# x\nDROP TABLE messages')).toBe(ONLY_READS);
    expect(readOnlyProblem('SELECT 1 # ;\n')).toBeUndefined();
  });

  it('accepts a semicolon inside a string, a quoted identifier or a comment', () => {
    expect(readOnlyProblem("SELECT count() FROM messages WHERE content_text LIKE '%;%'")).toBeUndefined();
    expect(readOnlyProblem("SELECT 'it''s; fine', 'a\\'; b' AS x")).toBeUndefined();
    expect(readOnlyProblem('SELECT 1 AS "a;b", 2 AS `c;d`')).toBeUndefined();
    expect(readOnlyProblem('SELECT 1 -- a; b\n/* c; d */')).toBeUndefined();
  });

  it('refuses a read that names OUTFILE, in whatever comment or string form it hides', () => {
    const outfile = 'sql: a statement that names OUTFILE is refused (INTO OUTFILE writes a file); redirect the output instead';
    expect(readOnlyProblem("SELECT 1 AS a INTO OUTFILE '/tmp/x.txt'")).toBe(outfile);
    expect(readOnlyProblem("select * from messages into\n  outfile '/tmp/x' TRUNCATE")).toBe(outfile);
    expect(readOnlyProblem("WITH 1 AS a SELECT a INTO OUTFILE 'f' APPEND FORMAT CSV")).toBe(outfile);
    expect(readOnlyProblem("SELECT 'x' AS x INTO # c\nOUTFILE '/tmp/o1.txt'")).toBe(outfile);
    expect(readOnlyProblem("SELECT 'x' AS x INTO /* a /* b */ c */ OUTFILE '/tmp/o3.txt'")).toBe(outfile);
    expect(readOnlyProblem("SELECT 1 -- it's\nINTO OUTFILE 'x'")).toBe(outfile);
    expect(readOnlyProblem("SELECT 'into outfile' AS x")).toBe(outfile);
    expect(readOnlyProblem('SELECT 1 AS outfit, 2 AS file')).toBeUndefined();
  });

  it('refuses writes and stacked statements, saying which', () => {
    expect(readOnlyProblem('DROP TABLE messages')).toBe(ONLY_READS);
    expect(readOnlyProblem('INSERT INTO t VALUES (1)')).toBe(ONLY_READS);
    expect(readOnlyProblem('selectx')).toBe(ONLY_READS);
    expect(readOnlyProblem('SELECT 1; DROP TABLE messages')).toBe(ONE_STATEMENT);
    expect(readOnlyProblem("SELECT ';'; DROP TABLE messages")).toBe(ONE_STATEMENT);
    expect(readOnlyProblem("SELECT 'a'''; DROP TABLE messages")).toBe(ONE_STATEMENT);
    expect(readOnlyProblem('SELECT 1 /* x */; -- y\nDROP TABLE messages')).toBe(ONE_STATEMENT);
  });
});

describe('soleStatement', () => {
  it('is the statement without leading comments and the final semicolon', () => {
    expect(soleStatement('-- daily\nSELECT 1; -- done')).toBe('SELECT 1');
    expect(soleStatement("SELECT ';' AS x")).toBe("SELECT ';' AS x");
    expect(soleStatement('SELECT 1; SELECT 2')).toBeUndefined();
  });
});

describe('sqlQueryOperand', () => {
  it('moves a query that starts with a -- comment behind "--", where it is read as the query', () => {
    expect(sqlQueryOperand(['sql', '-- daily\nSELECT 1', '--config', 'c.yaml'])).toEqual(['sql', '--config', 'c.yaml', '--', '-- daily\nSELECT 1']);
    expect(sqlQueryOperand(['sql', '-f', 'json', '-- x\nSELECT 1'])).toEqual(['sql', '-f', 'json', '--', '-- x\nSELECT 1']);
    // A comment with no space after its dashes.
    expect(sqlQueryOperand(['sql', '--daily count\nSELECT 1'])).toEqual(['sql', '--', '--daily count\nSELECT 1']);
  });

  it('leaves options, option values and other commands alone', () => {
    for (const argv of [
      ['sql', 'SELECT 1', '--config', 'c.yaml'],
      ['sql', '--config', '-- odd name.yaml', 'SELECT 1'],
      ['sql', '--config=/tmp/cfg dir/m.yaml', 'SELECT 1'],
      ['sql', '-c/tmp/cfg dir/m.yaml', 'SELECT 1'],
      ['sql', '--', '-- x\nSELECT 1'],
      ['run', '--config', 'c.yaml'],
    ]) {
      expect(sqlQueryOperand(argv)).toEqual(argv);
    }
  });
});

describe('formatRows', () => {
  it('aligns a table by characters, not bytes', () => {
    const text = formatRows(['k', 'n'], [['天气', '12'], ['ok', '3']], 'table');
    expect(text.split('\n')).toEqual(['k     n', '----  --', '天气  12', 'ok    3', '(2 rows)', '']);
  });

  it('shows control characters of a table cell as escapes, not as terminal commands', () => {
    const text = formatRows(['x'], [['a\u001b]0;pwned\u0007b\rXY\tz\n\u009b\u202eq']], 'table');
    const line = text.split('\n')[2];
    expect(line).toBe('a\\u001b]0;pwned\\u0007b\\rXY\\tz\\n\\u009b\\u202eq');
    expect(line).not.toMatch(/[\p{Cc}\u202e]/u);
  });

  it('writes JSON lines and a JSON array', () => {
    expect(formatRows(['a'], [[1], [2]], 'jsonl')).toBe('{"a":1}\n{"a":2}\n');
    expect(JSON.parse(formatRows(['a', 'b'], [[1, 'x'], [2, null]], 'json'))).toEqual([{ a: 1, b: 'x' }, { a: 2, b: null }]);
    expect(formatRows(['a'], [], 'json')).toBe('[]\n');
    expect(formatRows(['a'], [], 'table')).toBe('(0 rows)\n');
  });

  it('keeps the columns in the query order, a name like 10 and two columns of one name included', () => {
    expect(formatRows(['x', '10', '5'], [['a', 10, 5]], 'jsonl')).toBe('{"x":"a","10":10,"5":5}\n');
    expect(formatRows(['1', 'plus(1, 0)', '1'], [[1, 1, 1]], 'table').split('\n')[0]).toBe('1  plus(1, 0)  1');
  });
});

/** A slow reader: takes each write after a tick, and says when it is full after 1 KB. */
function slowSink(): { out: Writable; text: () => string; writes: () => number } {
  const chunks: string[] = [];
  const out = new Writable({
    highWaterMark: 1024,
    write: (chunk: Buffer, _enc, done) => {
      chunks.push(chunk.toString('utf8'));
      setImmediate(done);
    },
  });
  return { out, text: () => chunks.join(''), writes: () => chunks.length };
}

function* source(columns: readonly string[], rows: readonly (readonly unknown[])[]): Iterable<readonly unknown[]> {
  yield columns;
  for (const row of rows) yield row;
}

describe('writeRows', () => {
  const rows = Array.from({ length: 3000 }, (_v, i) => [i, `text ${String(i)} 天气`, i % 2 === 0 ? null : { k: i }]);

  it.each<OutputFormat>(['jsonl', 'json', 'table'])('writes %s exactly as formatRows renders it, through a slow stream', async (format) => {
    const sink = slowSink();
    await writeRows(source(['n', 'text', 'obj'], rows), format, sink.out);
    expect(sink.text()).toBe(formatRows(['n', 'text', 'obj'], rows, format));
    // Many writes, each after the last was taken: the output was not built whole first.
    expect(sink.writes()).toBeGreaterThan(1);
    for (const empty of [[]]) expect(await collect(source(['a'], empty), format)).toBe(formatRows(['a'], empty, format));
  });

  it('writes rows before the query has sent them all', async () => {
    const sink = slowSink();
    let written = 0;
    function* endless(): Iterable<readonly unknown[]> {
      yield ['n'];
      for (let i = 0; i < 200_000; i++) {
        // By the 100 000th row, earlier rows must be out.
        if (i === 100_000) written = sink.text().length;
        yield [i];
      }
    }
    await writeRows(endless(), 'jsonl', sink.out);
    expect(written).toBeGreaterThan(1_000_000);
    expect(sink.text().split('\n')).toHaveLength(200_001);
  });

  it('aligns a long table by its first rows and writes the rest in those widths', async () => {
    const many = Array.from({ length: TABLE_ALIGN_ROWS + 2 }, (_v, i) => [i < TABLE_ALIGN_ROWS ? 'x' : 'a wider value']);
    const text = await collect(source(['c'], many), 'table');
    const lines = text.split('\n');
    expect(lines.slice(0, 3)).toEqual(['c', '-', 'x']);
    expect(lines.slice(-4)).toEqual(['a wider value', 'a wider value', `(${String(TABLE_ALIGN_ROWS + 2)} rows)`, '']);
  });
});

async function collect(rows: Iterable<readonly unknown[]>, format: OutputFormat): Promise<string> {
  const sink = slowSink();
  await writeRows(rows, format, sink.out);
  return sink.text();
}

describe('operationalMessage', () => {
  it('gives one line for what the machine or the engine refused, and nothing for a bug', () => {
    const refused = new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'ClickHouse query failed: Unknown table expression identifier \'nosuch\'. ', {
      details: { clickhouseType: 'UNKNOWN_TABLE' },
    });
    expect(operationalMessage(refused)).toBe("ClickHouse query failed: Unknown table expression identifier 'nosuch' (UNKNOWN_TABLE)");
    const named = new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'failed (TOO_MANY_PARTS)', { details: { clickhouseType: 'TOO_MANY_PARTS' } });
    expect(operationalMessage(named)).toBe('failed (TOO_MANY_PARTS)');
    const busy = Object.assign(new Error('listen EADDRINUSE: address already in use 127.0.0.1:9002'), { code: 'EADDRINUSE' });
    expect(operationalMessage(busy)).toBe('listen EADDRINUSE: address already in use 127.0.0.1:9002');
    expect(operationalMessage(new TypeError('x is not a function'))).toBeUndefined();
    expect(operationalMessage(new Error('something else'))).toBeUndefined();
    // The engine's own text, wrapped again by the client, is said once.
    const engine = new Error("Code: 60. DB::Exception: Unknown table expression identifier 'nosuch'. (UNKNOWN_TABLE)");
    const wrapped = new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', "ClickHouse query failed: Unknown table expression identifier 'nosuch'. ", {
      details: { clickhouseType: 'UNKNOWN_TABLE' },
      cause: new Error("Unknown table expression identifier 'nosuch'. ", { cause: engine }),
    });
    expect(operationalMessage(wrapped)).toBe("ClickHouse query failed: Unknown table expression identifier 'nosuch' (UNKNOWN_TABLE)");
    // What a retry gave up on is said, not only that it gave up.
    const parts = new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'ClickHouse insert failed: Too many parts (600). ', {
      details: { clickhouseType: 'TOO_MANY_PARTS' },
      cause: new Error('Code: 252. DB::Exception: Too many parts (600). (TOO_MANY_PARTS)'),
    });
    const gaveUp = new MsgpipeError('MSGPIPE_ERR_RETRIES_EXHAUSTED', 'Gave up after 10 attempts.', { cause: parts });
    expect(operationalMessage(gaveUp)).toBe('Gave up after 10 attempts: ClickHouse insert failed: Too many parts (600) (TOO_MANY_PARTS)');
    // A bug anywhere in the chain keeps its stack.
    const bug = new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'ClickHouse insert failed: Do not know how to serialize a BigInt', {
      cause: new TypeError('Do not know how to serialize a BigInt'),
    });
    expect(operationalMessage(bug)).toBeUndefined();
  });
});
