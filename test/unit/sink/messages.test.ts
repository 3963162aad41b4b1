import { afterEach, describe, expect, it } from 'vitest';

import { JsonLines, type QueryParams, type Store } from '../../../src/sink/clickhouse.ts';
import { encodeMessageLine, findStored, MESSAGE_COLUMNS, messageLineEnd } from '../../../src/sink/messages.ts';
import { message, openTempStore, realisticMessages, type TempStore } from './helpers.ts';

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

describe('findStored', () => {
  let temp: TempStore | undefined;
  afterEach(async () => {
    await temp?.dispose();
    temp = undefined;
  });

  it('lets the msgid and pre_msgid bloom filters skip granules for a short id list', async () => {
    temp = await openTempStore();
    const { store } = temp;
    await store.command('SYSTEM STOP MERGES messages');
    const rows = realisticMessages(30_000, { seed: 4 });
    for (let i = 0; i < rows.length; i += 5000) {
      const part = rows.slice(i, i + 5000);
      const lines = part.flatMap((r) => [encodeMessageLine(r), messageLineEnd(undefined)]);
      await store.insert('messages', new JsonLines(Buffer.concat(lines), part.length), { columns: MESSAGE_COLUMNS });
    }
    // Ask for two stored messages, and read the plan of the very query findStored sends.
    const plans: string[] = [];
    const explaining: Store = {
      backend: store.backend,
      database: store.database,
      command: store.command.bind(store),
      insert: store.insert.bind(store),
      close: store.close.bind(store),
      query: async <T>(sql: string, params?: QueryParams) => {
        const plan = await store.query<{ explain: string }>(`EXPLAIN indexes = 1 ${sql}`, params);
        plans.push(plan.map((l) => l.explain).join('\n'));
        return [] as T[];
      },
    };
    const asked = [rows[5], rows[25_000]].filter((r) => r !== undefined);
    await findStored(explaining, asked);
    expect(plans).toHaveLength(1);
    const combined = /Name: <Combined skip indexes>[^]*?Granules: (\d+)\/(\d+)/.exec(plans[0] ?? '');
    expect(combined).not.toBeNull();
    const [selected, total] = [Number(combined?.[1]), Number(combined?.[2])];
    expect(total).toBeGreaterThanOrEqual(6);
    expect(selected).toBeLessThanOrEqual(2);
    // The same two messages are found when the query runs.
    expect((await findStored(store, asked)).messages.size).toBe(2);
  });
});
