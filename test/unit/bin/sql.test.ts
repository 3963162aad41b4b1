import { describe, expect, it } from 'vitest';

import { formatRows, isReadOnlyStatement } from '../../../src/bin/sql.ts';

describe('isReadOnlyStatement', () => {
  it('accepts reads, with comments and a trailing semicolon', () => {
    expect(isReadOnlyStatement('SELECT 1')).toBe(true);
    expect(isReadOnlyStatement('  -- daily counts\n/* x */ with a as (select 1) select * from a;')).toBe(true);
    expect(isReadOnlyStatement('SHOW TABLES')).toBe(true);
  });

  it('refuses writes and stacked statements', () => {
    expect(isReadOnlyStatement('DROP TABLE messages')).toBe(false);
    expect(isReadOnlyStatement('INSERT INTO t VALUES (1)')).toBe(false);
    expect(isReadOnlyStatement('SELECT 1; DROP TABLE messages')).toBe(false);
    expect(isReadOnlyStatement('selectx')).toBe(false);
  });
});

describe('formatRows', () => {
  it('aligns a table by characters, not bytes', () => {
    const text = formatRows([{ k: '天气', n: '12' }, { k: 'ok', n: '3' }], 'table');
    expect(text.split('\n')).toEqual(['k     n', '----  --', '天气  12', 'ok    3', '(2 rows)', '']);
  });

  it('writes JSON lines', () => {
    expect(formatRows([{ a: 1 }, { a: 2 }], 'jsonl')).toBe('{"a":1}\n{"a":2}\n');
    expect(formatRows([], 'table')).toBe('(0 rows)\n');
  });
});
