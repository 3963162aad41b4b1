/**
 * Keyword search over the ngrams(2) text index on real chDB: Chinese words inside longer runs,
 * mixed Chinese/Latin, emoji, one-character keywords, newest first with paging and total, and
 * never a message of another conversation (same staff, other peer; other staff; other tenant).
 * Search keeps working once a recall or an edit has left a patch part on the messages' part, and
 * `%`, `_` and `\` in a keyword are literal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { MessageRow } from '../../../src/core/types.ts';
import { applyEdits } from '../../../src/sink/edits.ts';
import { applyRecalls } from '../../../src/sink/messages.ts';
import { message } from '../sink/helpers.ts';
import { BASE, type Fixture, get, openFixture, SECRET_A, SECRET_B, signedQuery } from './helpers.ts';

const SEARCH = '/api/v1/chat-msg/search';

const TEXTS = [
  '这是我们最新的产品介绍，请您查看',
  '今天天气很好，我们下午发货',
  'iPhone15手机壳还有现货吗',
  '好的👍👍收到😀',
  '价格可以再优惠一点吗？VIP客户打九折',
  '明天上午十点发货',
  'Hello World 你好',
  '品介', // the bigram alone
  'C:\\\\Users\\\\me',
  'a\\\\b\\c',
];

let id = 3_000_000_000_000_000_000n;
function msg(text: string, i: number, overrides: Partial<MessageRow> = {}): MessageRow {
  id += 1n;
  return message({
    tenant: 'corp123',
    staff_id: 'staff123',
    session_id: 'sess_abc123',
    peer_id: 'customer456',
    msgid: String(id),
    msg_time: BASE + i * 1000,
    content_text: text,
    content: JSON.stringify({ content: text }),
    ...overrides,
  });
}

const mine = TEXTS.map((t, i) => msg(t, i));
// The same words in other conversations: another peer, another staff, another tenant.
const elsewhere = [
  ...TEXTS.map((t, i) => msg(t, i, { peer_id: 'customer789', session_id: 'sess_789' })),
  ...TEXTS.map((t, i) => msg(t, i, { staff_id: 'staff999', session_id: 'sess_x' })),
  ...TEXTS.map((t, i) => msg(t, i, { tenant: 'corp999' })),
];

// chDB opens one data directory per process: each describe opens its fixture and closes it.
let fx: Fixture;

async function search(keyword: string, extra: Record<string, string | number> = {}, secret = SECRET_A): Promise<{ total: number; texts: string[]; items: Record<string, unknown>[] }> {
  const res = await get(fx.app, SEARCH, signedQuery({ ext_corp_id: 'corp123', ext_staff_id: 'staff123', ext_peer_id: 'customer456', keyword, ...extra }, secret));
  expect(res.body.code).toBe(0);
  const data = res.body.data as { total: number; items: Record<string, unknown>[] };
  for (const item of data.items) expect(item).toMatchObject({ ext_corp_id: 'corp123', peer_ext_id: 'customer456', session_id: 'sess_abc123' });
  return { total: data.total, texts: data.items.map((m) => m['content_text'] as string), items: data.items };
}

describe('search', () => {
  beforeAll(async () => {
    fx = await openFixture([...mine, ...elsewhere]);
  });
  afterAll(async () => {
    await fx.dispose();
  });

  it.each([
    ['产品', ['这是我们最新的产品介绍，请您查看']],
    ['品介', ['品介', '这是我们最新的产品介绍，请您查看']],
    ['产品介绍', ['这是我们最新的产品介绍，请您查看']],
    ['发货', ['明天上午十点发货', '今天天气很好，我们下午发货']],
    ['天天', ['今天天气很好，我们下午发货']],
    ['iPhone15手机', ['iPhone15手机壳还有现货吗']],
    ['e15手', ['iPhone15手机壳还有现货吗']],
    ['VIP客户', ['价格可以再优惠一点吗？VIP客户打九折']],
    ['World 你', ['Hello World 你好']],
    ['👍👍', ['好的👍👍收到😀']],
    ['收到😀', ['好的👍👍收到😀']],
    ['😀', ['好的👍👍收到😀']],
    ['货', ['明天上午十点发货', 'iPhone15手机壳还有现货吗', '今天天气很好，我们下午发货']],
    ['产介', []],
    ['介绍产品', []],
    ['iphone', []],
    ['不存在的词', []],
    // Two backslashes at the end: the text index read for such a LIKE pattern looked up the
    // wrong tokens and found nothing.
    ['C:\\\\', ['C:\\\\Users\\\\me']],
    ['\\\\', ['a\\\\b\\c', 'C:\\\\Users\\\\me']],
    ['a\\\\', ['a\\\\b\\c']],
    ['\\', ['a\\\\b\\c', 'C:\\\\Users\\\\me']],
    ['b\\', ['a\\\\b\\c']],
  ])('%s', async (keyword, expected) => {
    const result = await search(keyword);
    expect(result.texts).toEqual(expected);
    expect(result.total).toBe(expected.length);
  });

  it('pages newest first with the total', async () => {
    const first = await search('货', { page: 1, page_size: 2 });
    const second = await search('货', { page: 2, page_size: 2 });
    expect(first.total).toBe(3);
    expect(second.total).toBe(3);
    expect([...first.texts, ...second.texts]).toEqual(['明天上午十点发货', 'iPhone15手机壳还有现货吗', '今天天气很好，我们下午发货']);
    const times = [...first.items, ...second.items].map((m) => m['msg_time'] as number);
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it("finds another tenant's words only with that tenant's own secret", async () => {
    const res = await get(fx.app, SEARCH, signedQuery({ ext_corp_id: 'corp999', ext_staff_id: 'staff123', ext_peer_id: 'customer456', keyword: '产品' }, SECRET_B));
    const data = res.body.data as { total: number; items: Record<string, unknown>[] };
    expect(data.total).toBe(1);
    expect(data.items[0]).toMatchObject({ ext_corp_id: 'corp999' });
  });
});

describe('search after lightweight updates, and keywords with LIKE wildcards', () => {
  const texts = ['这是我们最新的产品介绍，请您查看', '今天天气很好，我们下午发货', '撤回的这一条', '旧的报价单请查收', 'a 100% match', 'under_score', 'underXscore', 'back\\slash'];
  const rows = texts.map((t, i) => msg(t, i));
  let updated: Fixture;
  beforeAll(async () => {
    updated = await openFixture(rows);
    const store = updated.temp.store;
    // Each leaves a patch part on the one part that holds every row.
    await applyRecalls(store, [{ tenant: 'corp123', staff_id: 'staff123', session_id: 'sess_abc123', target_msgid: rows[2]!.msgid, recall_time: BASE + 60_000 }]);
    const edited = '新的产品目录请查看';
    await applyEdits(store, [
      {
        tenant: 'corp123',
        staff_id: 'staff123',
        session_id: 'sess_abc123',
        target_msgid: rows[3]!.msgid,
        edit_time: BASE + 61_000,
        msg_type: 'text',
        wx_msg_type: 1,
        content_text: edited,
        content: JSON.stringify({ content: edited }),
        raw_content: edited,
      },
    ]);
    const patches = await store.query<{ n: string }>("SELECT count() AS n FROM system.parts WHERE database = currentDatabase() AND table = 'messages' AND active AND startsWith(name, 'patch-')");
    expect(Number(patches[0]?.n)).toBeGreaterThan(0);
  });
  afterAll(async () => {
    await updated.dispose();
  });

  async function found(keyword: string): Promise<string[]> {
    const res = await get(updated.app, SEARCH, signedQuery({ ext_corp_id: 'corp123', ext_staff_id: 'staff123', ext_peer_id: 'customer456', keyword }, SECRET_A));
    expect(res.body.code).toBe(0);
    const data = res.body.data as { total: number; items: Record<string, unknown>[] };
    expect(data.total).toBe(data.items.length);
    return data.items.map((m) => m['content_text'] as string);
  }

  it.each([
    ['产品介绍', ['这是我们最新的产品介绍，请您查看']],
    ['产品', ['新的产品目录请查看', '这是我们最新的产品介绍，请您查看']],
    ['发货', ['今天天气很好，我们下午发货']],
    ['撤回', ['撤回的这一条']],
    ['产品目录', ['新的产品目录请查看']],
    ['报价单', []],
    ['100%', ['a 100% match']],
    ['%', ['a 100% match']],
    ['r_s', ['under_score']],
    ['_', ['under_score']],
    ['\\', ['back\\slash']],
    ['k\\s', ['back\\slash']],
  ])('%s', async (keyword, expected) => {
    expect(await found(keyword)).toEqual(expected);
  });
});

