/**
 * `msgpipe sql`: the way to run analytics SQL on the embedded store (no server to connect to).
 */
import { once } from 'node:events';

export type OutputFormat = 'table' | 'json' | 'jsonl';

/** Index just past the comments (`--`, `#` and block comments) and white space that start at `i`. */
function skipTrivia(sql: string, i: number): number {
  for (;;) {
    while (i < sql.length && /\s/.test(sql.charAt(i))) i++;
    if (sql.startsWith('--', i) || sql.startsWith('#', i)) {
      const eol = sql.indexOf('\n', i);
      i = eol === -1 ? sql.length : eol + 1;
    } else if (sql.startsWith('/*', i)) {
      const close = sql.indexOf('*/', i + 2);
      i = close === -1 ? sql.length : close + 2;
    } else {
      return i;
    }
  }
}

/** Index just past the quoted string or identifier that starts at `i` (`'…'`, `"…"` or `` `…` ``). */
function skipQuoted(sql: string, i: number): number {
  const quote = sql[i];
  let j = i + 1;
  while (j < sql.length) {
    const ch = sql[j];
    if (ch === '\\') j += 2;
    else if (ch === quote && sql[j + 1] === quote) j += 2; // a doubled quote stands for itself
    else if (ch === quote) return j + 1;
    else j++;
  }
  return sql.length; // unterminated: the engine reports it
}

/**
 * The statement in `sql` without its leading comments and its final `;`, or `undefined` when a
 * second statement follows. Quoted strings, quoted identifiers and comments are skipped, so
 * `SELECT ';'` is one statement.
 */
export function soleStatement(sql: string): string | undefined {
  const start = skipTrivia(sql, 0);
  let i = start;
  while (i < sql.length) {
    const ch = sql.charAt(i);
    if (ch === "'" || ch === '"' || ch === '`') i = skipQuoted(sql, i);
    else if (sql.startsWith('--', i) || sql.startsWith('#', i) || sql.startsWith('/*', i)) i = skipTrivia(sql, i);
    else if (ch === ';') {
      let rest = i + 1;
      while (rest < sql.length && sql[rest] === ';') rest++;
      return skipTrivia(sql, rest) === sql.length ? sql.slice(start, i) : undefined;
    } else i++;
  }
  return sql.slice(start);
}

/**
 * Why `sql` may not run as `msgpipe sql`, or `undefined` when it may: one statement that only
 * reads (SELECT, WITH, SHOW, DESCRIBE/DESC, EXPLAIN, EXISTS), after any leading comments, and
 * does not name OUTFILE (`INTO OUTFILE` writes a file, and the embedded engine runs it in its
 * readonly mode too). The engine's readonly mode refuses writes to the store.
 */
export function readOnlyProblem(sql: string): string | undefined {
  const statement = soleStatement(sql);
  if (statement === undefined) return 'sql: one statement at a time (a second statement follows the first ";")';
  // A query in parentheses (`(SELECT …) UNION ALL (SELECT …)`) and one that starts FROM read too.
  let head = 0;
  while (statement.charAt(head) === '(') head = skipTrivia(statement, head + 1);
  if (!/^(select|with|show|describe|desc|explain|exists|from)\b/i.test(statement.slice(head))) {
    return 'sql: only SELECT, WITH, SHOW, DESCRIBE and EXPLAIN are allowed';
  }
  // Anywhere in the text, strings and comments included: ClickHouse has more comment and string
  // forms (`#`, nested `/* */`, `$$…$$`) than a scan here would follow, so no form can hide it.
  if (/outfile/i.test(statement)) return 'sql: a statement that names OUTFILE is refused (INTO OUTFILE writes a file); redirect the output instead';
  return undefined;
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value);
}

/** Terminal columns a string takes: East Asian wide characters and emoji take two. */
export function displayWidth(text: string): number {
  let width = 0;
  for (const ch of text) {
    const cp = ch.codePointAt(0) ?? 0;
    const wide =
      (cp >= 0x1100 && cp <= 0x115f) ||
      (cp >= 0x2e80 && cp <= 0xa4cf) ||
      (cp >= 0xac00 && cp <= 0xd7a3) ||
      (cp >= 0xf900 && cp <= 0xfaff) ||
      (cp >= 0xfe30 && cp <= 0xfe4f) ||
      (cp >= 0xff00 && cp <= 0xff60) ||
      (cp >= 0xffe0 && cp <= 0xffe6) ||
      (cp >= 0x1f300 && cp <= 0x1faff) ||
      (cp >= 0x20000 && cp <= 0x3fffd);
    width += wide ? 2 : 1;
  }
  return width;
}

/**
 * One row as a JSON object, its keys in the query's order: `JSON.stringify` of an object would put
 * a name like `10` first, and keep one of two columns that share a name.
 */
function jsonObject(columns: readonly string[], values: readonly unknown[]): string {
  return `{${columns.map((c, i) => `${JSON.stringify(c)}:${JSON.stringify(values[i] ?? null)}`).join(',')}}`;
}

/**
 * Renders query rows (`columns`, then each row's values in that order) as a text table aligned
 * for a terminal, a JSON array of objects, or JSON lines.
 */
export function formatRows(columns: readonly string[], rows: readonly (readonly unknown[])[], format: OutputFormat): string {
  if (format === 'json') return rows.length === 0 ? '[]\n' : `[\n${rows.map((r) => `  ${jsonObject(columns, r)}`).join(',\n')}\n]\n`;
  if (format === 'jsonl') return rows.map((r) => `${jsonObject(columns, r)}\n`).join('');
  if (rows.length === 0) return '(0 rows)\n';
  const cells = rows.map((r) => tableCells(columns, r));
  const widths = tableWidths(columns, cells);
  const line = tableLine(widths);
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line), `(${rows.length} rows)`, ''].join('\n');
}

/**
 * Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, and the bidi
 * overrides and isolates that reorder what follows. Stored chat text is written by strangers.
 */
const UNPRINTABLE = /[\p{Cc}\u202a-\u202e\u2066-\u2069]/gu;
const ESCAPES: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function tableCells(columns: readonly string[], row: readonly unknown[]): string[] {
  return columns.map((_, i) => cell(row[i]).replace(UNPRINTABLE, (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

function tableWidths(columns: readonly string[], cells: readonly (readonly string[])[]): number[] {
  return columns.map((c, i) => cells.reduce((w, row) => Math.max(w, displayWidth(row[i] ?? '')), displayWidth(c)));
}

function tableLine(widths: readonly number[]): (values: readonly string[]) => string {
  return (values) => values.map((v, i) => v + ' '.repeat(Math.max(0, (widths[i] ?? 0) - displayWidth(v)))).join('  ').trimEnd();
}

/** Rows a table is aligned by: the first ones; later rows are written as they come, in those widths. */
export const TABLE_ALIGN_ROWS = 10_000;

/** Output gathered before each write: few writes, and never much more than this held. */
const WRITE_CHUNK_CHARS = 64 * 1024;

/**
 * Writes query rows to `out` as {@link formatRows} renders them, as they arrive: the first item
 * of `rows` is the column names. JSON and JSON lines hold no row after it is written; a table is
 * aligned by its first {@link TABLE_ALIGN_ROWS} rows. Waits when `out` is full, so an export of any
 * size runs in bounded memory.
 */
export async function writeRows(
  rows: AsyncIterable<readonly unknown[]> | Iterable<readonly unknown[]>,
  format: OutputFormat,
  out: NodeJS.WritableStream,
): Promise<void> {
  let pending = '';
  const emit = async (text: string, flush = false): Promise<void> => {
    pending += text;
    if (pending.length < WRITE_CHUNK_CHARS && !flush) return;
    const chunk = pending;
    pending = '';
    if (chunk !== '' && !out.write(chunk)) await once(out, 'drain');
  };
  let columns: string[] | undefined;
  let count = 0;
  const held: string[][] = [];
  let line: ((values: readonly string[]) => string) | undefined;
  const startTable = async (): Promise<void> => {
    const names = columns ?? [];
    const widths = tableWidths(names, held);
    line = tableLine(widths);
    await emit(`${line(names)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
    for (const cells of held.splice(0)) await emit(`${line(cells)}\n`);
  };
  for await (const values of rows) {
    if (columns === undefined) {
      columns = values.map(String);
      continue;
    }
    count += 1;
    if (format === 'jsonl') await emit(`${jsonObject(columns, values)}\n`);
    else if (format === 'json') await emit(`${count === 1 ? '[\n' : ',\n'}  ${jsonObject(columns, values)}`);
    else if (line !== undefined) await emit(`${line(tableCells(columns, values))}\n`);
    else {
      held.push(tableCells(columns, values));
      if (held.length >= TABLE_ALIGN_ROWS) await startTable();
    }
  }
  if (format === 'json') await emit(count === 0 ? '[]\n' : '\n]\n', true);
  else if (format === 'jsonl') await emit('', true);
  else if (count === 0) await emit('(0 rows)\n', true);
  else {
    if (line === undefined) await startTable();
    await emit(`(${String(count)} rows)\n`, true);
  }
}
