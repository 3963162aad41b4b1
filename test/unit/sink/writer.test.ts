import { createHash, randomBytes } from 'node:crypto';

import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { SinkUnit } from '../../../src/core/pipeline.ts';
import type { DeadLetterRow, EventRow, MessageRow, RecallMark } from '../../../src/core/types.ts';
import { CursorStore } from '../../../src/sink/cursors.ts';
import { DEAD_LETTER_SELECT } from '../../../src/sink/dead-letters.ts';
import { EVENT_SELECT } from '../../../src/sink/events.ts';
import { findStored, MESSAGE_SELECT, messageKey } from '../../../src/sink/messages.ts';
import { EncodedUnit, SinkWriter, type SinkWriterOptions } from '../../../src/sink/writer.ts';
import {
  deadLetter,
  event,
  FaultyStore,
  message,
  openTempStore,
  realisticMessages,
  recall,
  silent,
  type TempStore,
} from './helpers.ts';
import type { Store } from '../../../src/sink/clickhouse.ts';
import { transformFinderItem } from '../../../src/transform/finder.ts';
import { NOW, itemText, record } from '../transform/support.ts';

const FAST_RETRY = { attempts: 5, minMs: 1, maxMs: 5, factor: 2 } as const;

function unit(
  parts: { messages?: MessageRow[]; events?: EventRow[]; deadLetters?: DeadLetterRow[]; recalls?: RecallMark[] },
  cursor?: string,
): SinkUnit {
  return {
    output: {
      messages: parts.messages ?? [],
      events: parts.events ?? [],
      deadLetters: parts.deadLetters ?? [],
      recalls: parts.recalls ?? [],
    },
    ...(cursor === undefined ? {} : { cursor: { source: 'shop-a', stream: 'main', cursor } }),
  };
}

type StoredMessage = MessageRow & { recalled: number; recall_time: number | null };

async function storedMessages(store: Store): Promise<StoredMessage[]> {
  return store.query<StoredMessage>(`SELECT ${MESSAGE_SELECT} FROM messages ORDER BY msg_time, msgid`);
}

async function count(store: Store, table: string): Promise<number> {
  const [row] = await store.query<{ c: string }>(`SELECT count() AS c FROM ${table}`);
  return Number(row?.c);
}

/** Waits until `w.stats.flushes` is `n` (20 s at most: chDB is slow on a loaded machine). */
async function flushes(w: SinkWriter, n: number): Promise<void> {
  await vi.waitFor(
    () => {
      expect(w.stats.flushes).toBe(n);
    },
    { timeout: 20_000 },
  );
}

function writer(store: Store, options: SinkWriterOptions = {}): SinkWriter {
  return new SinkWriter(store, silent, { retry: FAST_RETRY, maxAgeMs: 60_000, ...options });
}

describe('SinkWriter', () => {
  let temp: TempStore;
  beforeEach(async () => {
    temp = await openTempStore();
  });
  afterEach(async () => {
    await temp.dispose();
  });

  it('stores rows exactly: 64-bit ids, arrays, CJK text, times', async () => {
    const m1 = message({ msgid: '3876235366388279544', seq: '18446744073709551615', tolist: ['a', 'b'], at_user_list: ['c'] });
    const m2 = message({
      msgid: '1767797523284146072',
      seq: '1',
      msg_time: m1.msg_time + 1000,
      content_text: '今天天气很好 "quoted" \\ back\nline',
      msg_seq: -3,
      wx_msg_type: 10002,
    });
    const e1 = event({ event_id: '18446744073709551615' });
    const w = writer(temp.store);
    await w.add(unit({ messages: [m1, m2], events: [e1] }, 'kb-1'));
    await w.close();

    expect(await storedMessages(temp.store)).toEqual([
      { ...m1, recalled: 0, recall_time: null },
      { ...m2, recalled: 0, recall_time: null },
    ]);
    expect(await temp.store.query(`SELECT ${EVENT_SELECT} FROM events`)).toEqual([e1]);
    // The raw columns hold the exact values too, not only their string renderings.
    const raw = await temp.store.query<{ msgid: string; seq: string; t: string }>(
      "SELECT msgid, seq, toString(msg_time) AS t FROM messages WHERE msgid = '3876235366388279544'",
    );
    expect(raw).toEqual([{ msgid: '3876235366388279544', seq: '18446744073709551615', t: '2024-11-08 09:48:32.000' }]);
    expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-1');
    expect(w.stats.written).toMatchObject({ messages: 2, events: 1, cursors: 1 });
  });

  it('stores a unit encoded ahead (as the Kafka sink hands it over) as it stores the unit itself', async () => {
    const m1 = message({ msgid: '3876235366388279544', content_text: '今天 "q" \\ x' });
    const m2 = message({ msgid: '1767797523284146072', msg_time: m1.msg_time + 1000 });
    const bad = message({ msgid: '' });
    const e1 = event({ event_id: 'e-1' });
    const plain = unit({ messages: [m1, bad, m2], events: [e1], recalls: [recall(m2, m2.msg_time + 5000)] }, 'kb-1');
    const encoded = EncodedUnit.of(plain);
    expect(encoded.rows).toBe(5);
    expect(encoded.messages.map((m) => m.msgid)).toEqual([m1.msgid, m2.msgid]);
    expect(encoded.refused.map((r) => r.reason)).toEqual(['msgid is empty']);
    const w = writer(temp.store);
    await w.add(encoded);
    await w.close();

    expect(await storedMessages(temp.store)).toEqual([
      { ...m1, recalled: 0, recall_time: null },
      { ...m2, recalled: 1, recall_time: m2.msg_time + 5000 },
    ]);
    expect(await temp.store.query(`SELECT ${EVENT_SELECT} FROM events`)).toEqual([e1]);
    const letters = await temp.store.query<{ error_message: string }>('SELECT error_message FROM dead_letters');
    expect(letters).toEqual([{ error_message: 'Row refused by the messages sink: msgid is empty.' }]);
    expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-1');
    expect(w.stats.written).toMatchObject({ messages: 2, events: 1, cursors: 1 });
  });

  it('dead-letters a refused row with the bytes of the record it was read from, when it has one', async () => {
    const m1 = message({ msgid: '3876235366388279544' });
    const bad = message({ msgid: '1767797523284146072', msg_time: 1e15 });
    const record = Buffer.from([0x0a, 0x03, 0x61, 0x62, 0x63, 0xff]);
    const encoded = EncodedUnit.of(unit({ messages: [m1, bad] }), (i) => (i === 1 ? { bytes: record, originKey: 'kafka:t.messages-3@11' } : undefined));
    // The same row delivered again: at another offset, transformed at another time.
    const again = EncodedUnit.of(unit({ messages: [{ ...bad, ingested_at: bad.ingested_at + 60_000 }] }), () => ({ bytes: record, originKey: 'kafka:t.messages-3@40' }));
    const w = writer(temp.store);
    await w.add(encoded);
    await w.add(encoded); // read again after a rebalance
    await w.add(again);
    await w.close();
    expect((await storedMessages(temp.store)).map((m) => m.msgid)).toEqual([m1.msgid]);
    const letters = await temp.store.query<{ error_message: string; original_base64: string; origin_key: string }>(
      'SELECT error_message, original_base64, origin_key FROM dead_letters',
    );
    expect(letters).toEqual([
      { error_message: 'Row refused by the messages sink: msg_time is not a unix ms time.', original_base64: record.toString('base64'), origin_key: 'kafka:t.messages-3@11' },
    ]);
  });

  it('stores a unit that crossed a thread boundary (toWire, structured clone, fromWire) as the unit itself', async () => {
    const m1 = message({ msgid: '3876235366388279544', content_text: '今天 "q" \\ x 🌙' });
    const revoke = message({ msgid: '1767797523284146072', msg_type: 'revoke', pre_msgid: m1.msgid, msg_time: m1.msg_time + 1000 });
    const bad = message({ msgid: '' });
    const plain = unit(
      { messages: [m1, bad, revoke], events: [event({ event_id: 'e-1' })], deadLetters: [deadLetter(Buffer.from('<msg>', 'utf8'))], recalls: [recall(m1, revoke.msg_time)] },
      'kb-9',
    );
    const before = EncodedUnit.of(plain);
    const { wire, transfer } = before.toWire();
    const after = EncodedUnit.fromWire(structuredClone(wire, { transfer }));
    // The lines moved: the sender's buffer is detached, the receiver's views read the same bytes.
    expect(wire.lines.byteLength).toBe(0);
    expect(after.messages.map(({ line, ...id }) => ({ ...id, line: line.toString('utf8') }))).toEqual(
      before.messages.map(({ line, ...id }) => ({ ...id, line: line.toString('utf8') })),
    );
    expect(after.messages[1]?.revokes).toBe(before.messages[1]?.revokes);
    const rest = (u: EncodedUnit): unknown => [u.refused, u.events, u.deadLetters, u.recalls, u.edits, u.editHistory, u.cursor, u.rows, u.bytes];
    expect(rest(after)).toEqual(rest(before));

    const w = writer(temp.store);
    await w.add(after);
    await w.close();
    expect(await storedMessages(temp.store)).toEqual([
      { ...m1, recalled: 1, recall_time: revoke.msg_time },
      { ...revoke, recalled: 0, recall_time: null },
    ]);
    expect(await count(temp.store, 'dead_letters')).toBe(2);
    expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-9');
  });

  it('refuses a wire unit whose lines do not match its messages', () => {
    const { wire } = EncodedUnit.of(unit({ messages: [message()] })).toWire();
    expect(() => EncodedUnit.fromWire({ ...wire, identities: [] })).toThrow(/inconsistent/);
  });

  it('dead-letters a recall or edit with an impossible time and stores the rest of the batch, cursor included', async () => {
    const stored = message({ msgid: '100' });
    const w1 = writer(temp.store);
    await w1.add(unit({ messages: [stored] }, 'kb-1'));
    await w1.close();
    const inBatch = message({ msgid: '200', msg_time: stored.msg_time + 1000 });
    // Past 2^53 ms: an UPDATE's Int64 parameter refuses it; past 2299: a DateTime64 cannot hold it.
    const w2 = writer(temp.store);
    await w2.add({
      output: {
        messages: [inBatch],
        events: [],
        deadLetters: [],
        recalls: [recall(stored, 1e16), recall(inBatch, 1e14)],
        edits: [{ tenant: stored.tenant, staff_id: stored.staff_id, session_id: stored.session_id, target_msgid: stored.msgid, edit_time: -5, msg_type: 'text', wx_msg_type: 1, content_text: 'x', content: '{}', raw_content: 'x' }],
        editHistory: [],
      },
      cursor: { source: 'shop-a', stream: 'main', cursor: 'kb-2' },
    });
    await w2.close();

    expect((await storedMessages(temp.store)).map((m) => [m.msgid, m.recalled, m.recall_time])).toEqual([['100', 0, null], ['200', 0, null]]);
    expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-2');
    const letters = await temp.store.query<{ error_message: string; stage: string; tenant: string }>('SELECT error_message, stage, tenant FROM dead_letters ORDER BY error_message');
    expect(letters).toEqual([
      { error_message: 'Row refused by the edits sink: edit_time is not a unix ms time.', stage: 'sink', tenant: stored.tenant },
      { error_message: 'Row refused by the recalls sink: recall_time is not a unix ms time.', stage: 'sink', tenant: stored.tenant },
      { error_message: 'Row refused by the recalls sink: recall_time is not a unix ms time.', stage: 'sink', tenant: stored.tenant },
    ]);
    expect(w2.stats.invalid).toBe(3);
  });

  it('stores a message once when it repeats within a batch and across batches', async () => {
    const m = message();
    const other = message({ msgid: '1767797523284146072' });
    const w = writer(temp.store);
    await w.add(unit({ messages: [m, m] }, 'kb-1'));
    await w.add(unit({ messages: [m, other] }, 'kb-2'));
    await w.flush();
    await w.add(unit({ messages: [other, m], events: [event(), event()] }, 'kb-3'));
    await w.add(unit({ events: [event()] }, 'kb-4'));
    await w.close();

    expect(await count(temp.store, 'messages')).toBe(2);
    expect(await count(temp.store, 'events')).toBe(1);
    // And without FINAL or merges: the view the query service reads is exact too.
    const [session] = await temp.store.query<{ msg_count: string }>('SELECT msg_count FROM sessions');
    expect(session?.msg_count).toBe('2');
    expect(w.stats.duplicates.messages).toBe(4);
    expect(w.stats.duplicates.events).toBe(2);
    expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-4');
  });

  it('stores nothing twice when a restarted pipeline re-adds the same units', async () => {
    const rows = realisticMessages(3000, { seed: 11 });
    const units = [0, 1000, 2000].map((i, n) => unit({ messages: rows.slice(i, i + 1000), events: [event({ event_id: `e${n}` })] }, `kb-${n}`));
    const first = writer(temp.store);
    for (const u of units.slice(0, 2)) await first.add(u);
    await first.close();
    // "Crash": the cursor says kb-1, but a provider replays from an older keyBuff anyway.
    const second = writer(temp.store);
    for (const u of units) await second.add(u);
    await second.close();

    expect(await count(temp.store, 'messages')).toBe(3000);
    expect(await count(temp.store, 'events')).toBe(3);
    expect(second.stats.duplicates.messages).toBe(2000);
    expect(second.stats.written.messages).toBe(1000);
    const [sums] = await temp.store.query<{ n: string; s: string }>('SELECT count() AS n, sum(msg_count) AS s FROM sessions');
    expect(sums?.s).toBe('3000');
    const distinct = await temp.store.query<{ c: string }>('SELECT uniqExact(msgid) AS c FROM messages');
    expect(distinct[0]?.c).toBe('3000');
  });

  describe('recalls', () => {
    const target = message({ msgid: '3876235366388279544' });
    const revoke = (t: number): MessageRow =>
      message({
        msgid: '3876235366388279999',
        msg_type: 'revoke',
        action: 'recall',
        pre_msgid: target.msgid,
        msg_time: t,
        content_text: '张三撤回了一条消息',
      });

    it('marks a target in the same batch before it is written', async () => {
      const t = target.msg_time + 30_000;
      const w = writer(temp.store);
      await w.add(unit({ messages: [target, revoke(t)], recalls: [recall(target, t)] }, 'kb-1'));
      await w.close();
      const rows = await storedMessages(temp.store);
      expect(rows.find((r) => r.msgid === target.msgid)).toMatchObject({ recalled: 1, recall_time: t });
      expect(rows.find((r) => r.msg_type === 'revoke')).toMatchObject({ recalled: 0, pre_msgid: target.msgid });
    });

    it('marks a target stored by an earlier batch, idempotently (the first recall time stays)', async () => {
      const t = target.msg_time + 30_000;
      const w = writer(temp.store);
      await w.add(unit({ messages: [target, message({ msgid: '1' })] }, 'kb-1'));
      await w.flush();
      await w.add(unit({ messages: [revoke(t)], recalls: [recall(target, t)] }, 'kb-2'));
      await w.flush();
      await w.add(unit({ recalls: [recall(target, t + 99_000)] }, 'kb-3'));
      await w.close();
      const rows = await storedMessages(temp.store);
      expect(rows.find((r) => r.msgid === target.msgid)).toMatchObject({ recalled: 1, recall_time: t });
      expect(rows.find((r) => r.msgid === '1')).toMatchObject({ recalled: 0, recall_time: null });
      expect(rows).toHaveLength(3);
    });

    it('keeps the recall when the recalled message is re-delivered later', async () => {
      const t = target.msg_time + 30_000;
      const w = writer(temp.store);
      await w.add(unit({ messages: [target] }, 'kb-1'));
      await w.flush();
      await w.add(unit({ messages: [revoke(t)], recalls: [recall(target, t)] }, 'kb-2'));
      await w.flush();
      await w.add(unit({ messages: [target] }, 'kb-3'));
      await w.close();
      const rows = await storedMessages(temp.store);
      expect(rows.filter((r) => r.msgid === target.msgid)).toEqual([{ ...target, recalled: 1, recall_time: t }]);
    });

    it('stores two revokes that share a pseudo NewMsgId (same second, same account), each recalling its target', async () => {
      // Revoke rows carry NewMsgId == CreateTime: the transform gives each its own msgid.
      const revokeItem = (target: string, session: string): SinkUnit['output'] =>
        transformFinderItem(
          record(
            itemText({
              msgType: 10002,
              newMsgId: '1731060090',
              createTime: 1731060090,
              session,
              content: `<sysmsg type="revokemsg"><revokemsg><session>${session}</session><newmsgid>${target}</newmsgid><replacemsg><![CDATA["小林" 撤回了一条消息]]></replacemsg></revokemsg></sysmsg>`,
            }),
          ),
          NOW,
        );
      const first = message({ msgid: '8412057736190466213', session_id: 's-1@findermsg', msg_time: 1731060000_000 });
      const second = message({ msgid: '8412057736190466999', session_id: 's-2@findermsg', msg_time: 1731060000_000 });
      const w = writer(temp.store);
      await w.add(unit({ messages: [first, second] }, 'kb-1'));
      await w.flush();
      const a = revokeItem(first.msgid, first.session_id);
      const b = revokeItem(second.msgid, second.session_id);
      await w.add(unit({ messages: [...a.messages, ...b.messages], recalls: [...a.recalls, ...b.recalls] }, 'kb-2'));
      await w.add(unit({ ...a }, 'kb-3')); // the first revoke delivered again
      await w.close();
      const rows = await storedMessages(temp.store);
      expect(rows.filter((r) => r.msg_type === 'revoke').map((r) => r.pre_msgid).sort()).toEqual([first.msgid, second.msgid]);
      expect(rows).toHaveLength(4);
      for (const target of [first, second]) expect(rows.find((r) => r.msgid === target.msgid)).toMatchObject({ recalled: 1, recall_time: 1731060090_000 });
    });

    it('sees duplicates and revocations of the batch still being stored when looking up the next one', async () => {
      // The second batch's lookups run while the first is blocked before its insert, so they
      // cannot find its rows in ClickHouse; the writer must add them from the first batch.
      const t = target.msg_time + 30_000;
      const faulty = new FaultyStore(temp.store);
      let release: () => void = () => undefined;
      faulty.gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const w = writer(faulty, { maxRows: 2 });
      const other = message({ msgid: '1' });
      await w.add(unit({ messages: [other, revoke(t)], recalls: [recall(target, t)] }, 'kb-1'));
      await w.add(unit({ messages: [target, other] }, 'kb-2'));
      // Give the second batch's lookups time to finish while the first insert is still held.
      await new Promise((r) => setTimeout(r, 300));
      release();
      await w.close();
      const rows = await storedMessages(temp.store);
      expect(rows).toHaveLength(3);
      expect(rows.filter((r) => r.msgid === '1')).toHaveLength(1);
      expect(rows.find((r) => r.msgid === target.msgid)).toMatchObject({ recalled: 1, recall_time: t });
      expect(w.stats.duplicates.messages).toBe(1);
    });

    it('looks up stored messages and revocations by exact identity in one query', async () => {
      const t = target.msg_time + 30_000;
      const w = writer(temp.store);
      const later = { ...revoke(t + 5000), msgid: '3876235366388270001' };
      // msgid 42 is stored for another staff only: the tenant/staff lists of the query cover it.
      const otherStaff = message({ msgid: '42', staff_id: 'other-staff', msg_time: target.msg_time });
      await w.add(unit({ messages: [target, revoke(t), later, otherStaff], recalls: [recall(target, t), recall(target, t + 5000)] }, 'kb-1'));
      await w.close();
      const asked = [
        target,
        { ...target, staff_id: 'other-staff' },
        { ...target, tenant: 'other-tenant' },
        message({ msgid: '42', msg_time: target.msg_time }),
      ];
      const found = await findStored(temp.store, asked);
      expect([...found.messages]).toEqual([messageKey(target)]);
      // The earliest of the two stored revocations.
      expect([...found.recalls]).toEqual([[messageKey(target), t]]);
      // A stored message outside the batch's time range is not the batch's message.
      const shifted = await findStored(temp.store, [{ ...target, msg_time: target.msg_time - 3_600_000 }]);
      expect(shifted.messages.size).toBe(0);
      expect([...shifted.recalls]).toEqual([[messageKey(target), t]]);
    });

    it('finds ids exactly whether the id list travels joined or, holding the separator, as an array', async () => {
      const w = writer(temp.store);
      const at = (msgid: string) => message({ msgid, msg_time: target.msg_time });
      const odd = ['x\\y', "q'", 't\tn\n', 'c,d'];
      const t = target.msg_time + 30_000;
      await w.add(unit({ messages: [at('a\u001fb'), at('a'), ...odd.map(at), { ...revoke(t), pre_msgid: 'q\'' }] }, 'kb-1'));
      await w.close();
      const keys = (found: { messages: Set<string> }) => [...found.messages].sort();
      // Joined: no id holds the separator. Escapes survive the transport; '' and 'c' match nothing.
      const joined = await findStored(temp.store, [at(''), at('a'), at('c'), ...odd.map(at), at('')]);
      expect(keys(joined)).toEqual(['a', ...odd].map((id) => messageKey(at(id))).sort());
      expect([...joined.recalls]).toEqual([[messageKey(at("q'")), t]]);
      // As an array: 'a\u001fb' would split into 'a' and 'b'; 'b' is not stored. The revocation of
      // "q'" is found on this path too.
      const array = await findStored(temp.store, [at('a\u001fb'), at('b'), at("q'")]);
      expect(keys(array)).toEqual([at('a\u001fb'), at("q'")].map(messageKey).sort());
      expect([...array.recalls]).toEqual([[messageKey(at("q'")), t]]);
    });

    it('marks a target that arrives after its revocation was stored', async () => {
      const t = target.msg_time + 30_000;
      const w = writer(temp.store);
      await w.add(unit({ messages: [revoke(t)], recalls: [recall(target, t)] }, 'kb-1'));
      await w.flush();
      await w.add(unit({ messages: [target] }, 'kb-2'));
      await w.close();
      const rows = await storedMessages(temp.store);
      expect(rows.find((r) => r.msgid === target.msgid)).toMatchObject({ recalled: 1, recall_time: t });
    });
  });

  describe('cursor after rows', () => {
    it('does not move the cursor when an insert fails permanently, and the writer stops', async () => {
      const faulty = new FaultyStore(temp.store);
      const cursors = new CursorStore(temp.store);
      const w = writer(faulty);
      await w.add(unit({ messages: [message({ msgid: '1' })] }, 'kb-1'));
      await w.flush();
      faulty.faults.push({ table: 'events', times: Infinity, retriable: false });
      await w.add(unit({ messages: [message({ msgid: '2' })], events: [event()] }, 'kb-2'));
      await expect(w.flush()).rejects.toThrow(/injected failure on events/);
      await expect(w.add(unit({ messages: [message({ msgid: '3' })] }, 'kb-3'))).rejects.toThrow(/injected failure/);
      await expect(w.close()).rejects.toThrow(/injected failure/);
      expect(await cursors.load('shop-a', 'main')).toBe('kb-1');
      // The messages of the failed batch did land (events failed after them) …
      expect(await count(temp.store, 'messages')).toBe(2);

      // … and a restart re-reading from kb-1 completes the batch without doubling them.
      const restarted = writer(temp.store);
      await restarted.add(unit({ messages: [message({ msgid: '2' })], events: [event()] }, 'kb-2'));
      await restarted.close();
      expect(await count(temp.store, 'messages')).toBe(2);
      expect(await count(temp.store, 'events')).toBe(1);
      expect(await cursors.load('shop-a', 'main')).toBe('kb-2');
    });

    it('says when a flush its age timer started fails, before any later add', async () => {
      const faulty = new FaultyStore(temp.store);
      faulty.faults.push({ table: 'messages', times: Infinity, retriable: false });
      const w = writer(faulty, { maxAgeMs: 50 });
      let failed: unknown;
      w.failed.catch((err: unknown) => {
        failed = err;
      });
      await w.add(unit({ messages: [message({ msgid: '1' })] }, 'kb-1'));
      // No add follows: only the timer flushes, and only `failed` can tell.
      await vi.waitFor(
        () => {
          expect(failed).toBeInstanceOf(Error);
        },
        { timeout: 20_000 },
      );
      expect((failed as Error).message).toMatch(/injected failure on messages/);
      await expect(w.close()).rejects.toThrow(/injected failure/);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBeUndefined();
    });

    it('does not move the cursor while a retriable failure outlasts the attempts', async () => {
      const faulty = new FaultyStore(temp.store);
      faulty.faults.push({ table: 'messages', times: Infinity, retriable: true });
      const w = writer(faulty, { retry: { attempts: 3, minMs: 1, maxMs: 2, factor: 2 } });
      await w.add(unit({ messages: [message()] }, 'kb-1'));
      await expect(w.flush()).rejects.toMatchObject({ code: 'MSGPIPE_ERR_RETRIES_EXHAUSTED' });
      expect(w.stats.retries).toBe(2);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBeUndefined();
      expect(await count(temp.store, 'messages')).toBe(0);
    });

    it('stops retrying when the signal aborts, without saving the cursor', async () => {
      const faulty = new FaultyStore(temp.store);
      faulty.faults.push({ table: 'messages', times: Infinity, retriable: true });
      const stop = new AbortController();
      const w = writer(faulty, { signal: stop.signal, retry: { attempts: Infinity, minMs: 50, maxMs: 50, factor: 1 } });
      await w.add(unit({ messages: [message()] }, 'kb-1'));
      const flushed = w.flush();
      await vi.waitFor(() => {
        expect(w.stats.retries).toBeGreaterThanOrEqual(2);
      });
      const started = Date.now();
      stop.abort(new Error('hard stop'));
      await expect(flushed).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(1000);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBeUndefined();
    });

    it('retries a retriable failure without losing or doubling rows, also when the failed insert had landed', async () => {
      const faulty = new FaultyStore(temp.store);
      faulty.faults.push({ table: 'messages', times: 1, retriable: true, afterWrite: true });
      faulty.faults.push({ table: 'cursors', times: 2, retriable: true });
      const rows = realisticMessages(500, { seed: 5 });
      const w = writer(faulty);
      await w.add(unit({ messages: rows }, 'kb-1'));
      await w.close();
      expect(w.stats.retries).toBe(3);
      expect(await count(temp.store, 'messages')).toBe(500);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-1');
    });

    it('relies on the dedup token when a retry cannot see the rows its first try stored', async () => {
      // Models a replica that has not caught up: the lookup sees nothing, the insert lands
      // but reports a failure, the retry sends the same rows with the same token.
      const faulty = new FaultyStore(temp.store);
      faulty.faults.push({ table: 'messages', times: 1, retriable: true, afterWrite: true });
      faulty.hideLookups = 2;
      const w = writer(faulty);
      await w.add(unit({ messages: realisticMessages(200, { seed: 9 }) }, 'kb-1'));
      await w.close();
      const inserts = faulty.inserts.filter((i) => i.table === 'messages');
      // The failed insert was sent again as it was, then the retry, whose lookup saw none, sent
      // all 200 rows again, with the same token …
      const sent = { table: 'messages', rows: 200, token: expect.stringMatching(/^messages:[0-9a-f]{64}$/) as unknown };
      expect(inserts).toEqual([sent, sent]);
      expect(inserts[1]?.token).toBe(inserts[0]?.token);
      // … and ClickHouse dropped them by token.
      expect(await count(temp.store, 'messages')).toBe(200);
      expect(await temp.store.query('SELECT sum(msg_count) AS n FROM sessions')).toEqual([{ n: '200' }]);
    });
  });

  describe('batch bounds', () => {
    it('flushes when the row bound is reached', async () => {
      const w = writer(temp.store, { maxRows: 5 });
      const rows = realisticMessages(6, { seed: 2 });
      await w.add(unit({ messages: rows.slice(0, 2) }, 'kb-1'));
      await w.add(unit({ messages: rows.slice(2, 4) }, 'kb-2'));
      expect(w.stats.flushes).toBe(0);
      await w.add(unit({ messages: rows.slice(4, 6) }, 'kb-3'));
      await flushes(w, 1);
      expect(await count(temp.store, 'messages')).toBe(6);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-3');
      await w.close();
    });

    it('flushes when the byte bound is reached', async () => {
      const w = writer(temp.store, { maxBytes: 50_000 });
      await w.add(unit({ messages: [message({ msgid: '1', content_text: 'x'.repeat(10_000) })] }, 'kb-1'));
      expect(w.stats.flushes).toBe(0);
      await w.add(unit({ messages: [message({ msgid: '2', raw_content: '消'.repeat(20_000) })] }, 'kb-2'));
      await flushes(w, 1);
      expect(await count(temp.store, 'messages')).toBe(2);
      await w.close();
    });

    it('counts a refused row at the size of its dead letter toward the byte bound', async () => {
      // Millisecond CreateTimes: every row refused, each kept as its 20 kB record in base64.
      const record = Buffer.alloc(20_000, 0x61);
      const refusedUnit = (msgid: string, cursor: string): EncodedUnit =>
        EncodedUnit.of(unit({ messages: [message({ msgid, msg_time: 1e15 })] }, cursor), () => ({ bytes: record, originKey: `k-${msgid}` }));
      const w = writer(temp.store, { maxBytes: 50_000 });
      await w.add(refusedUnit('1', 'kb-1'));
      expect(w.stats.flushes).toBe(0);
      await w.add(refusedUnit('2', 'kb-2'));
      await flushes(w, 1);
      expect(await count(temp.store, 'dead_letters')).toBe(2);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-2');
      await w.close();
    });

    it('flushes a batch when it is maxAgeMs old, cursor-only units included', async () => {
      const w = writer(temp.store, { maxAgeMs: 50 });
      await w.add(unit({ messages: [message()] }, 'kb-1'));
      await flushes(w, 1);
      await w.add(unit({}, 'kb-2'));
      await vi.waitFor(() => {
        expect(w.stats.flushes).toBe(2);
      });
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-2');
      await w.close();
    });

    it('applies backpressure: with one batch in flight and one queued, add waits when the next is full', async () => {
      const faulty = new FaultyStore(temp.store);
      let release: () => void = () => undefined;
      faulty.gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const w = writer(faulty, { maxRows: 2 });
      await w.add(unit({ messages: [message({ msgid: '1' }), message({ msgid: '2' })] }, 'kb-1'));
      // The first batch is in flight and blocked; the second queues behind it (its lookups run).
      await w.add(unit({ messages: [message({ msgid: '3' }), message({ msgid: '4' })] }, 'kb-2'));
      // The third fills up: add must not resolve while two flushes are chained.
      let resolved = false;
      const pending = w.add(unit({ messages: [message({ msgid: '5' }), message({ msgid: '6' })] }, 'kb-3')).then(() => {
        resolved = true;
      });
      await new Promise((r) => setTimeout(r, 100));
      expect(resolved).toBe(false);
      expect(w.stats.flushes).toBe(0);
      release();
      await pending;
      await w.close();
      expect(await count(temp.store, 'messages')).toBe(6);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-3');
    });
  });

  describe('dead letters', () => {
    it('keeps the original bytes exactly: invalid UTF-8 and 5 MB payloads', async () => {
      const invalid = Uint8Array.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0xe4, 0xbd, 0x0a, 0x22, 0x5c]);
      const big = randomBytes(5 * 1024 * 1024);
      const d1 = deadLetter(invalid, { origin_key: 'shop-a:kb#1' });
      const d2 = deadLetter(big, { origin_key: 'shop-a:kb#2', error_code: 'MSGPIPE_ERR_TOO_LARGE' });
      const w = writer(temp.store);
      await w.add(unit({ deadLetters: [d1, d2] }, 'kb-1'));
      await w.close();

      const rows = await temp.store.query<DeadLetterRow & { dead_letter_id: string }>(
        `SELECT ${DEAD_LETTER_SELECT} FROM dead_letters ORDER BY origin_key`,
      );
      expect(rows.map(({ dead_letter_id: _id, ...rest }) => rest)).toEqual([d1, d2]);
      expect(Buffer.from(rows[0]!.original_base64, 'base64')).toEqual(Buffer.from(invalid));
      // Decoded inside ClickHouse, the bytes are the same too.
      const decoded = await temp.store.query<{ h: string; size: string; sha: string }>(
        "SELECT hex(original) AS h, original_size AS size, lower(hex(SHA256(original))) AS sha FROM dead_letters ORDER BY origin_key",
      );
      expect(decoded[0]).toMatchObject({ h: Buffer.from(invalid).toString('hex').toUpperCase(), size: '10' });
      expect(decoded[1]).toMatchObject({
        size: String(big.length),
        sha: createHash('sha256').update(big).digest('hex'),
      });
    });

    it('stores a dead letter once when a replay makes it again', async () => {
      const d = deadLetter(Uint8Array.from([1, 2, 3]));
      const w = writer(temp.store);
      await w.add(unit({ deadLetters: [d, d] }, 'kb-1'));
      await w.flush();
      await w.add(unit({ deadLetters: [{ ...d, occurred_at: d.occurred_at + 60_000 }] }, 'kb-1'));
      await w.close();
      expect(await count(temp.store, 'dead_letters')).toBe(1);
    });

    it('stores text holding half of a surrogate pair as U+FFFD instead of failing the whole insert', async () => {
      const w = writer(temp.store);
      await w.add(
        unit(
          {
            messages: [
              message({ msgid: '50', content_text: 'a\ud800b', peer_name: '\udc00张' }),
              // A literal backslash and "ud800" is text, not an escape: it stays as it is.
              message({ msgid: '51', content_text: 'path\\ud800' }),
            ],
            events: [event({ payload: '{"title":"\ud83d"}' })],
            deadLetters: [deadLetter(Uint8Array.from([1]), { error_message: 'End tag </aaa\ud83d> without a start tag' })],
          },
          'kb-1',
        ),
      );
      await w.close();
      const stored = await storedMessages(temp.store);
      expect(stored.map((m) => [m.msgid, m.content_text, m.peer_name])).toEqual([
        ['50', 'a\ufffdb', '\ufffd张'],
        ['51', 'path\\ud800', message().peer_name],
      ]);
      const [storedEvent] = await temp.store.query<EventRow>(`SELECT ${EVENT_SELECT} FROM events`);
      expect(storedEvent?.payload).toBe('{"title":"\ufffd"}');
      const [letter] = await temp.store.query<DeadLetterRow>(`SELECT ${DEAD_LETTER_SELECT} FROM dead_letters`);
      expect(letter?.error_message).toBe('End tag </aaa\ufffd> without a start tag');
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-1');
    });

    it('stores the dead letter of a refused row once when a replay refuses it again with a new ingestion time', async () => {
      const bad = message({ msgid: '44', seq: 'not-a-number' });
      const w = writer(temp.store);
      await w.add(unit({ messages: [bad] }, 'kb-1'));
      await w.flush();
      await w.add(unit({ messages: [{ ...bad, ingested_at: bad.ingested_at + 60_000 }] }, 'kb-1'));
      await w.close();
      expect(await count(temp.store, 'dead_letters')).toBe(1);
    });

    it('refuses an integer outside Int32 for an Int32 column instead of storing it wrapped', async () => {
      const w = writer(temp.store);
      await w.add(unit({ messages: [message({ msgid: '45', wx_msg_type: 2 ** 31 }), message({ msgid: '46', app_type: -(2 ** 31) })] }, 'kb-1'));
      await w.close();
      expect((await storedMessages(temp.store)).map((m) => [m.msgid, m.app_type])).toEqual([['46', -(2 ** 31)]]);
      const [letter] = await temp.store.query<DeadLetterRow>(`SELECT ${DEAD_LETTER_SELECT} FROM dead_letters`);
      expect(letter?.error_message).toContain('wx_msg_type is outside Int32');
    });

    it('turns a row ClickHouse would refuse into a sink dead letter instead of failing the batch', async () => {
      const bad = message({ msgid: '42', seq: 'not-a-number' });
      const w = writer(temp.store);
      await w.add(unit({ messages: [bad, message({ msgid: '43' })] }, 'kb-1'));
      await w.close();
      expect((await storedMessages(temp.store)).map((m) => m.msgid)).toEqual(['43']);
      const [letter] = await temp.store.query<DeadLetterRow>(`SELECT ${DEAD_LETTER_SELECT} FROM dead_letters`);
      expect(letter).toMatchObject({ stage: 'sink', error_code: 'MSGPIPE_ERR_SHAPE', origin_key: expect.stringContaining('42') as unknown });
      expect(JSON.parse(Buffer.from(letter!.original_base64, 'base64').toString('utf8'))).toEqual(bad);
      expect(w.stats.invalid).toBe(1);
      expect(await new CursorStore(temp.store).load('shop-a', 'main')).toBe('kb-1');
    });
  });

  it('keeps the sessions view in step: latest message, counts, peer name', async () => {
    const base = message();
    const w = writer(temp.store);
    await w.add(
      unit(
        {
          messages: [
            message({ msgid: '10', msg_time: base.msg_time, peer_name: '' }),
            message({ msgid: '11', msg_time: base.msg_time + 2000, content_text: '最后一条', peer_name: '张三丰' }),
            message({ msgid: '12', msg_time: base.msg_time + 1000, peer_name: '' }),
            message({ msgid: '20', session_id: 'sess-2', peer_id: 'wxid_2', msg_time: base.msg_time + 500 }),
          ],
        },
        'kb-1',
      ),
    );
    await w.flush();
    await w.add(unit({ messages: [message({ msgid: '13', msg_time: base.msg_time + 3000, peer_name: '' })] }, 'kb-2'));
    await w.close();
    const sessions = await temp.store.query<Record<string, unknown>>(
      `SELECT session_id, peer_id, peer_name, last_msgid, last_content_text, msg_count,
              toUnixTimestamp64Milli(last_msg_time) AS last_ms
       FROM sessions WHERE tenant = 'corp123' AND staff_id = 'staff-a' ORDER BY last_msg_time DESC`,
    );
    expect(sessions).toEqual([
      {
        session_id: 'sess-1',
        peer_id: 'wxid_peer1',
        peer_name: '张三丰',
        last_msgid: '13',
        last_content_text: base.content_text,
        msg_count: '4',
        last_ms: String(base.msg_time + 3000),
      },
      {
        session_id: 'sess-2',
        peer_id: 'wxid_2',
        peer_name: '张三',
        last_msgid: '20',
        last_content_text: base.content_text,
        msg_count: '1',
        last_ms: String(base.msg_time + 500),
      },
    ]);
  });
});
