/**
 * Keyset paging properties (fast-check) over real chDB: walking a conversation with `max_id`
 * (newer) or `min_id` (older) visits every message exactly once, in order, whatever the page
 * size and presentation order, also while new messages arrive (newest ones, which the walk must
 * reach, and late deliveries behind the cursor, which it must not repeat).
 */
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { MessageRow } from '../../../src/core/types.ts';
import { message } from '../sink/helpers.ts';
import { type Fixture, get, openFixture, SECRET_A, signedQuery, store } from './helpers.ts';

const MSGS = '/api/v1/chat-msg/session-msgs';
const T0 = Date.UTC(2024, 2, 1);

interface Item {
  id: string;
  msg_time: number;
}

const key = (m: { msg_time: number; id: string }): string => `${String(m.msg_time).padStart(15, '0')}|${m.id}`;

let fx: Fixture;
let run = 0;
let nextId = 4_000_000_000_000_000_000n;
beforeAll(async () => {
  fx = await openFixture([]);
});
afterAll(async () => {
  await fx.dispose();
});

function row(peer: string, msgTime: number): MessageRow {
  nextId += 1n + BigInt(Math.floor(Math.random() * 1000));
  return message({
    tenant: 'corp123',
    staff_id: 'staff123',
    session_id: `sess-${peer}`,
    peer_id: peer,
    msgid: String(nextId),
    msg_time: msgTime,
  });
}

async function page(peer: string, extra: Record<string, string | number>): Promise<Item[]> {
  const res = await get(fx.app, MSGS, signedQuery({ ext_corp_id: 'corp123', ext_staff_id: 'staff123', receiver_id: peer, ...extra }, SECRET_A));
  expect(res.body.code).toBe(0);
  return (res.body.data as { items: Item[] }).items;
}

describe('keyset paging', () => {
  it('visits every message exactly once in order, also while messages arrive', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          // Seconds from T0; repeats make several messages share a msg_time.
          times: fc.array(fc.integer({ min: 0, max: 30 }), { minLength: 0, maxLength: 30 }),
          pageSize: fc.integer({ min: 1, max: 7 }),
          direction: fc.constantFrom('newer' as const, 'older' as const),
          present: fc.constantFrom('asc' as const, 'desc' as const),
          // Per page: how many arrive ahead of the walk, how many land behind it.
          ahead: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 6 }),
          behind: fc.array(fc.integer({ min: 0, max: 2 }), { maxLength: 6 }),
        }),
        async ({ times, pageSize, direction, present, ahead, behind }) => {
          run += 1;
          const peer = `peer-${run}`;
          const initial = times.map((s) => row(peer, T0 + s * 1000));
          await store(fx.temp, initial);
          const all = new Map(initial.map((m) => [m.msgid, key({ msg_time: m.msg_time, id: m.msgid })]));
          const mustVisit = new Set(all.keys());
          const newer = direction === 'newer';
          const visited: Item[] = [];
          const pages: string[][] = [];
          // First page: the oldest (newer walk) or newest (older walk) messages.
          let items = await page(peer, { page_size: pageSize, sort_type: newer ? 'asc' : 'desc' });
          let step = 0;
          while (items.length > 0) {
            visited.push(...items);
            pages.push(items.map(key).sort());
            const keys = items.map(key).sort();
            const cursorKey = newer ? keys[keys.length - 1]! : keys[0]!;
            const cursor = items.find((m) => key(m) === cursorKey)!;
            // Messages arrive: some beyond the cursor (the walk must reach them), some behind it.
            const arriving: MessageRow[] = [];
            for (let i = 0; i < (ahead[step] ?? 0); i++) {
              const t = newer ? T0 + 40_000 + step * 1000 + i : T0 - 40_000 - step * 1000 - i;
              arriving.push(row(peer, t));
            }
            for (let i = 0; i < (behind[step] ?? 0); i++) {
              const t = newer ? cursor.msg_time - 60_000 - i : cursor.msg_time + 60_000 + i;
              arriving.push(row(peer, t));
            }
            if (arriving.length > 0) {
              await store(fx.temp, arriving);
              for (const m of arriving) {
                const k = key({ msg_time: m.msg_time, id: m.msgid });
                all.set(m.msgid, k);
                if (newer ? k > cursorKey : k < cursorKey) mustVisit.add(m.msgid);
              }
            }
            step += 1;
            const anchor = newer ? { max_id: cursor.id } : { min_id: cursor.id };
            items = await page(peer, { page_size: pageSize, sort_type: present, ...anchor });
            // Each page is in the order asked for.
            const pageKeys = items.map(key);
            expect(pageKeys).toEqual([...pageKeys].sort((a, b) => (present === 'asc' ? a.localeCompare(b) : b.localeCompare(a))));
          }
          const visitedIds = visited.map((m) => m.id);
          // Exactly once…
          expect(new Set(visitedIds).size).toBe(visitedIds.length);
          // …every message the walk had ahead of it…
          expect(new Set(visitedIds)).toEqual(mustVisit);
          // …and in walking order: each page lies wholly beyond the one before.
          for (let i = 1; i < pages.length; i++) {
            const prev = pages[i - 1]!;
            const cur = pages[i]!;
            if (newer) expect(cur[0]! > prev[prev.length - 1]!).toBe(true);
            else expect(cur[cur.length - 1]! < prev[0]!).toBe(true);
          }
        },
      ),
      { numRuns: 25 },
    );
    // Each run stores rows several times through the sink; on a loaded machine that takes a while.
  }, 180_000);

  it('pages by offset with a total, ascending and descending', async () => {
    const peer = 'peer-offset';
    const rows = Array.from({ length: 7 }, (_, i) => row(peer, T0 + i * 1000));
    await store(fx.temp, rows);
    const asc = [];
    for (let p = 1; p <= 3; p++) asc.push(...(await page(peer, { page: p, page_size: 3, sort_type: 'asc' })));
    expect(asc.map((m) => m.id)).toEqual(rows.map((r) => r.msgid));
    const res = await get(fx.app, MSGS, signedQuery({ ext_corp_id: 'corp123', ext_staff_id: 'staff123', receiver_id: peer, page: 3, page_size: 3 }, SECRET_A));
    expect(res.body.data).toMatchObject({ total: 7, items: [{ id: rows[0]!.msgid }] });
    // max_id and min_id together: the messages between them.
    const between = await page(peer, { max_id: rows[1]!.msgid, min_id: rows[5]!.msgid, sort_type: 'asc' });
    expect(between.map((m) => m.id)).toEqual(rows.slice(2, 5).map((r) => r.msgid));
  });
});
