/**
 * `msgpipe sql`: the way to run analytics SQL on the embedded store (no server to connect to).
 */

export type OutputFormat = 'table' | 'json' | 'jsonl';

/** Index just past the comments and white space that start at `i`. */
function skipTrivia(sql: string, i: number): number {
  for (;;) {
    while (i < sql.length && /\s/.test(sql.charAt(i))) i++;
    if (sql.startsWith('--', i)) {
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
    else if (sql.startsWith('--', i) || sql.startsWith('/*', i)) i = skipTrivia(sql, i);
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
  if (!/^(select|with|show|describe|desc|explain|exists)\b/i.test(statement)) {
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
  const cells = rows.map((r) => columns.map((_, i) => cell(r[i]).replace(/\n/g, '\\n')));
  const widths = columns.map((c, i) => Math.max(displayWidth(c), ...cells.map((row) => displayWidth(row[i] ?? ''))));
  const line = (values: readonly string[]): string =>
    values.map((v, i) => v + ' '.repeat(Math.max(0, (widths[i] ?? 0) - displayWidth(v)))).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line), `(${rows.length} rows)`, ''].join('\n');
}
