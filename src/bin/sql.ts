/**
 * `msgpipe sql`: the way to run analytics SQL on the embedded store (no server to connect to).
 */

export type OutputFormat = 'table' | 'json' | 'jsonl';

/**
 * True for statements that only read: SELECT, WITH, SHOW, DESCRIBE/DESC, EXPLAIN, EXISTS.
 * Leading comments and white space are skipped: `-- daily\nSELECT 1` is read-only.
 * Multiple statements are refused, since a second one could write.
 */
export function isReadOnlyStatement(sql: string): boolean {
  const body = sql
    .replace(/^(\s+|--[^\n]*\n?|\/\*[\s\S]*?\*\/)+/, '')
    .replace(/;\s*$/, '');
  if (body.includes(';')) return false;
  return /^(select|with|show|describe|desc|explain|exists)\b/i.test(body);
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

/** Renders query rows as a text table aligned for a terminal, a JSON array, or JSON lines. */
export function formatRows(rows: readonly Record<string, unknown>[], format: OutputFormat): string {
  if (format === 'json') return `${JSON.stringify(rows, null, 2)}\n`;
  if (format === 'jsonl') return rows.map((r) => `${JSON.stringify(r)}\n`).join('');
  const first = rows[0];
  if (first === undefined) return '(0 rows)\n';
  const columns = Object.keys(first);
  const cells = rows.map((r) => columns.map((c) => cell(r[c]).replace(/\n/g, '\\n')));
  const widths = columns.map((c, i) => Math.max(displayWidth(c), ...cells.map((row) => displayWidth(row[i] ?? ''))));
  const line = (values: readonly string[]): string =>
    values.map((v, i) => v + ' '.repeat(Math.max(0, (widths[i] ?? 0) - displayWidth(v)))).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line), `(${rows.length} rows)`, ''].join('\n');
}
