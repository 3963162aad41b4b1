/**
 * `msgpipe migrate --rebuild-sessions` (src/sink/sessions-rebuild.ts): messages stored while the
 * view did not see them (a process killed between the two parts of one INSERT) are counted
 * again, and the latest message per session is the latest stored.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { MessageRow } from '../../../src/core/types.ts';
import type { Store } from '../../../src/sink/clickhouse.ts';
import { rebuildSessions, recountSessions, type SessionKey } from '../../../src/sink/sessions-rebuild.ts';
import { SinkWriter } from '../../../src/sink/writer.ts';
import { message, openTempStore, silent, type TempStore } from './helpers.ts';

interface SessionRow {
  session_id: string;
  msg_count: string;
  recall_count: string;
  last_msgid: string;
}

async function sessions(store: Store): Promise<SessionRow[]> {
  return store.query<SessionRow>('SELECT session_id, msg_count, recall_count, last_msgid FROM sessions ORDER BY session_id');
}

/** What `sessions` should say, computed from `messages` alone. */
async function expected(store: Store): Promise<SessionRow[]> {
  return store.query<SessionRow>(
    `SELECT session_id, count() AS msg_count, countIf(action = 'recall') AS recall_count, argMax(msgid, (msg_time, msgid)) AS last_msgid
     FROM messages GROUP BY session_id ORDER BY session_id`,
  );
}

// Each test on a migrated store of its own.
let temp: TempStore;
beforeEach(async () => {
  temp = await openTempStore();
});
afterEach(async () => {
  await temp.dispose();
});

describe('rebuildSessions', () => {
  it('counts again the messages the view missed, and takes their latest message', async () => {
    const store = temp.store;
    const writer = new SinkWriter(store, silent, { maxAgeMs: 60_000 });
    const t0 = Date.UTC(2024, 10, 8, 9, 0, 0);
    const batch = (from: number, n: number) =>
      Array.from({ length: n }, (_v, i) =>
        message({ msgid: String(7_000_000_000_000_000_000n + BigInt(from + i)), session_id: `s-${(from + i) % 3}@findermsg`, msg_time: t0 + (from + i) * 1000, ...((from + i) % 10 === 9 ? { action: 'recall', msg_type: 'revoke' } : {}) }),
      );
    await writer.add({ output: { messages: batch(0, 30), events: [], deadLetters: [], recalls: [] } });
    await writer.flush();
    // The view misses the next batch, as when the process dies between the two parts.
    await store.command('DETACH TABLE sessions_mv');
    await writer.add({ output: { messages: batch(30, 12), events: [], deadLetters: [], recalls: [] } });
    await writer.close();
    await store.command('ATTACH TABLE sessions_mv');

    const before = await sessions(store);
    const truth = await expected(store);
    expect(truth.reduce((n, s) => n + Number(s.msg_count), 0)).toBe(42);
    expect(before.reduce((n, s) => n + Number(s.msg_count), 0)).toBe(30);
    expect(before).not.toEqual(truth);

    expect(await rebuildSessions(store, silent)).toEqual({ sessions: 3, messages: 42 });
    expect(await sessions(store)).toEqual(truth);
    // Run again (an interrupted rebuild is simply repeated): the same, nothing doubled.
    await rebuildSessions(store, silent);
    expect(await sessions(store)).toEqual(truth);
  });

  it('refuses a store without the view, and leaves sessions_agg alone', async () => {
    await temp.store.command('DROP VIEW sessions_mv');
    await expect(rebuildSessions(temp.store, silent)).rejects.toMatchObject({ code: 'MSGPIPE_ERR_MIGRATION' });
  });
});

describe('recountSessions', () => {
  it('recounts exactly the sessions named, in groups, whatever the view left for them, and leaves the others', async () => {
    const writer = new SinkWriter(temp.store, silent, { maxAgeMs: 60_000 });
    // 1 200 sessions (more than one group of statements), two messages each; the last message
    // of each session arrives while the view is detached, so no session counts it.
    const first = Array.from({ length: 1200 }, (_, i) => message({ msgid: String(1_000_000 + i), session_id: `s-${i}`, msg_time: 1_731_000_000_000 + i }));
    const late = Array.from({ length: 1200 }, (_, i) => message({ msgid: String(2_000_000 + i), session_id: `s-${i}`, msg_time: 1_731_100_000_000 + i }));
    await writer.add({ output: { messages: first, events: [], deadLetters: [], recalls: [] } });
    await writer.flush();
    await temp.store.command('DETACH TABLE sessions_mv');
    await writer.add({ output: { messages: late, events: [], deadLetters: [], recalls: [] } });
    await writer.close();
    await temp.store.command('ATTACH TABLE sessions_mv');

    const named = first.slice(0, 1100).map((m) => ({ tenant: m.tenant, staff_id: m.staff_id, session_type: m.session_type, session_id: m.session_id }));
    // Named twice: counted once.
    expect(await recountSessions(temp.store, [...named, ...named])).toBe(1100);
    const rows = await sessions(temp.store);
    const want = await expected(temp.store);
    expect(rows.filter((r) => Number(r.session_id.slice(2)) < 1100)).toEqual(want.filter((r) => Number(r.session_id.slice(2)) < 1100));
    // The sessions not named keep what the view gave them: the first message only.
    const others = rows.filter((r) => Number(r.session_id.slice(2)) >= 1100);
    expect(others).toHaveLength(100);
    expect(others.every((r) => r.msg_count === '1' && r.last_msgid === String(1_000_000 + Number(r.session_id.slice(2))))).toBe(true);
    // Run again (a start interrupted after the recount): the same.
    await recountSessions(temp.store, named);
    expect(await sessions(temp.store)).toEqual(rows);
  });

  it('tells apart two sessions whose key fields, joined, read the same', async () => {
    const a: SessionKey = { tenant: 'corp', staff_id: 'wx\u001eexternal', session_type: 'group', session_id: 'room1' };
    const b: SessionKey = { tenant: 'corp', staff_id: 'wx', session_type: 'external', session_id: 'group\u001eroom1' };
    let id = 0;
    const of = (k: SessionKey): MessageRow => {
      id += 1;
      return message({ ...k, session_type: k.session_type as MessageRow['session_type'], msgid: String(id), msg_time: 1_731_000_000_000 + id });
    };
    const writer = new SinkWriter(temp.store, silent, { maxAgeMs: 60_000 });
    await writer.add({ output: { messages: [of(a), of(b)], events: [], deadLetters: [], recalls: [] } });
    await writer.flush();
    await temp.store.command('DETACH TABLE sessions_mv');
    await writer.add({ output: { messages: [of(a), of(b)], events: [], deadLetters: [], recalls: [] } });
    await writer.close();
    await temp.store.command('ATTACH TABLE sessions_mv');
    expect(await recountSessions(temp.store, [a, b])).toBe(2);
    expect(await temp.store.query('SELECT staff_id, msg_count FROM sessions ORDER BY staff_id')).toEqual([
      { staff_id: 'wx', msg_count: '2' },
      { staff_id: 'wx\u001eexternal', msg_count: '2' },
    ]);
  });
});
