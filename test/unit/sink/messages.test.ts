import { describe, expect, it } from 'vitest';

import { encodeMessageLine, MESSAGE_COLUMNS, messageLineEnd } from '../../../src/sink/messages.ts';
import { message, realisticMessages } from './helpers.ts';

describe('message lines', () => {
  it('encodes every column in MESSAGE_COLUMNS order, the recall state last', () => {
    for (const row of [message({ tolist: ['a', 'b'], content_text: 'tab\there "quoted" \\ 换行\n' }), ...realisticMessages(50)]) {
      const text = Buffer.concat([encodeMessageLine(row), messageLineEnd(undefined)]).toString('utf8');
      expect(text.endsWith('\n')).toBe(true);
      const values = JSON.parse(text) as unknown[];
      const record = row as unknown as Readonly<Record<string, unknown>>;
      expect(values).toEqual(MESSAGE_COLUMNS.map((c) => (c === 'recalled' ? 0 : c === 'recall_time' ? null : record[c])));
    }
  });

  it('ends a recalled message with recalled = 1 and the recall time', () => {
    const row = message();
    const values = JSON.parse(Buffer.concat([encodeMessageLine(row), messageLineEnd(1_731_059_342_000)]).toString('utf8')) as unknown[];
    expect(values.slice(-2)).toEqual([1, 1_731_059_342_000]);
  });
});
