/**
 * The sink conformance suite (docs/component-spec.md §Sink): what every {@link UnitSink} does
 * with the units the pipeline adds, checked on what ends up stored.
 *
 * - exact storage: rows come back as they went in (64-bit ids, arrays, CJK text, times, dead
 *   letter bytes), recall marks flag their targets, each stream's cursor is its last unit's;
 * - a flush stores messages, events, dead letters, recall marks, and only then the cursors;
 * - replay after a crash (a new sink on the same store, the same units re-added, re-transformed
 *   with a later `now`) and provider duplicates store nothing twice;
 * - a failing insert leaves the cursor where it was and rejects; a transient one is retried
 *   without doubling rows, also when the failed try had landed;
 * - batches are bounded by rows, bytes and age (a flush happens without `close`);
 * - `close` flushes everything buffered and saves the covered cursors.
 *
 * A sink runs it with one call and a factory for a fresh store. The Kafka mode runs the same
 * suite with factories whose sinks write to topics and read back what the consumers stored.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import type { SinkUnit, UnitSink } from '../../src/core/pipeline.ts';
import type { DeadLetterRow, EventRow, MessageRow, RecallMark } from '../../src/core/types.ts';

/** Where a write goes; `recalls` is the marking of stored targets. */
export type SinkTable = 'messages' | 'events' | 'dead_letters' | 'recalls' | 'cursors';

/** An injected write failure. */
export interface SinkWriteFault {
  readonly table: SinkTable;
  /** How many matching writes fail (Infinity: all). */
  readonly times: number;
  readonly retriable: boolean;
  /** Store the rows, then report the failure anyway (the answer was lost). */
  readonly afterWrite?: boolean;
}

/** Batch bounds for {@link SinkUnderTest.open}; absent ones are large (no flush before close). */
export interface SinkBounds {
  readonly maxRows?: number;
  readonly maxBytes?: number;
  readonly maxAgeMs?: number;
}

/** A stored message: the row as added, plus its recall time (unix ms) once a recall marked it. */
export type StoredMessage = MessageRow & { readonly recall_time: number | null };

/** One fresh store and a way to open sinks on it and read it back. */
export interface SinkUnderTest {
  /**
   * A new sink instance on this store (a restart opens another one). It must retry transient
   * failures quickly (a few ms) and give up on permanent ones.
   */
  open(bounds?: SinkBounds): UnitSink | Promise<UnitSink>;
  /** Every stored message row (no deduplication on read: what is stored twice shows twice). */
  messages(): Promise<StoredMessage[]>;
  events(): Promise<EventRow[]>;
  deadLetters(): Promise<DeadLetterRow[]>;
  cursor(source: string, stream: string): Promise<string | undefined>;
  /** The tables of the writes that reached the store with at least one row, in order. */
  writes(): readonly SinkTable[];
  /** Makes later writes fail as described. */
  fail(fault: SinkWriteFault): void;
  /** Removes the injected faults. */
  heal(): void;
  /** Releases the store and everything it holds. */
  dispose(): Promise<void>;
}

export type SinkFactory = () => Promise<SinkUnderTest>;

const TENANT = 'corp-conformance';
const SOURCE = 'conf-sink';
const STAFF = 'staff-conf';
const BASE = Date.UTC(2024, 10, 8, 9, 48, 32);
const WAIT = { timeout: 10_000, interval: 20 } as const;

function message(i: number, overrides: Partial<MessageRow> = {}): MessageRow {
  return {
    tenant: TENANT,
    source: SOURCE,
    source_type: 'gewe',
    staff_id: STAFF,
    msgid: String(18_446_744_073_709_000_000n + BigInt(i)),
    legacy_msgid: String(1_048_377_195 + i),
    session_id: `sess-${i % 3}@findermsg`,
    session_type: 'external',
    room_id: '',
    action: 'send',
    from_id: `fv1_peer${i % 3}@findermsgstranger`,
    tolist: [STAFF],
    peer_id: `fv1_peer${i % 3}@findermsgstranger`,
    is_sender: i % 2 === 0 ? 0 : 1,
    msg_time: BASE + i * 1000,
    seq: String(9_223_372_036_854_775_000n + BigInt(i)),
    msg_seq: i,
    msg_type: 'text',
    wx_msg_type: 1,
    app_type: 0,
    sys_type: '',
    content_text: `第${i}条消息 "引号" \\ 反斜杠\n换行 😀`,
    content: JSON.stringify({ content: `第${i}条消息` }),
    raw_content: `第${i}条消息`,
    msg_source: '<msgsource><signature>v1_abc</signature></msgsource>',
    at_user_list: i % 4 === 0 ? ['wxid_a', 'wxid_b'] : [],
    pre_msgid: '',
    sync_key_type: 3,
    item_type: 0,
    sub_type: 0,
    status: 3,
    img_status: 1,
    extinfo: '',
    peer_name: `客户${i % 3}`,
    peer_avatar: '',
    ingested_at: BASE + 3_600_000,
    ...overrides,
  };
}

function event(i: number, overrides: Partial<EventRow> = {}): EventRow {
  return {
    tenant: TENANT,
    source: SOURCE,
    source_type: 'gewe',
    staff_id: STAFF,
    event_id: String(9_007_199_254_740_993n + BigInt(i)),
    event_type: 'functionmsg',
    event_time: BASE + i * 1000,
    session_id: '',
    payload: `{"cgi":"/cgi-bin/x","n":${i}}`,
    raw: `<sysmsg type="functionmsg"><n>${i}</n></sysmsg>`,
    ingested_at: BASE + 3_600_000,
    ...overrides,
  };
}

function deadLetter(i: number, overrides: Partial<DeadLetterRow> = {}): DeadLetterRow {
  return {
    tenant: TENANT,
    source: SOURCE,
    source_type: 'gewe',
    stage: 'transform',
    error_code: 'MSGPIPE_ERR_JSON',
    error_message: 'Item is not valid JSON.',
    original_base64: Buffer.from([0xff, 0xfe, 0x00, i & 0xff, 0x22, 0x5c, 0xe4, 0xbd]).toString('base64'),
    origin_key: `${SOURCE}:kb-${i}#${i}`,
    occurred_at: BASE + 3_600_000,
    ...overrides,
  };
}

function recallOf(target: MessageRow, at: number): RecallMark {
  return { tenant: target.tenant, staff_id: target.staff_id, session_id: target.session_id, target_msgid: target.msgid, recall_time: at };
}

interface Parts {
  readonly messages?: readonly MessageRow[];
  readonly events?: readonly EventRow[];
  readonly deadLetters?: readonly DeadLetterRow[];
  readonly recalls?: readonly RecallMark[];
}

function unit(parts: Parts, cursor?: string, stream = 'main'): SinkUnit {
  return {
    output: {
      messages: [...(parts.messages ?? [])],
      events: [...(parts.events ?? [])],
      deadLetters: [...(parts.deadLetters ?? [])],
      recalls: [...(parts.recalls ?? [])],
    },
    ...(cursor === undefined ? {} : { cursor: { source: SOURCE, stream, cursor } }),
  };
}

/** The same unit as a restarted pipeline makes it again: re-transformed later. */
function retransformed(u: SinkUnit): SinkUnit {
  const later = 60_000;
  return {
    ...u,
    output: {
      messages: u.output.messages.map((m) => ({ ...m, ingested_at: m.ingested_at + later })),
      events: u.output.events.map((e) => ({ ...e, ingested_at: e.ingested_at + later })),
      deadLetters: u.output.deadLetters.map((d) => ({ ...d, occurred_at: d.occurred_at + later })),
      recalls: u.output.recalls,
    },
  };
}

const byMsgid = (a: { msgid: string }, b: { msgid: string }): number => (BigInt(a.msgid) < BigInt(b.msgid) ? -1 : 1);
const byEventId = (a: EventRow, b: EventRow): number => (BigInt(a.event_id) < BigInt(b.event_id) ? -1 : 1);
const byOrigin = (a: DeadLetterRow, b: DeadLetterRow): number => a.origin_key.localeCompare(b.origin_key);

function stored(m: MessageRow, recallTime: number | null = null): StoredMessage {
  return { ...m, recall_time: recallTime };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Runs the sink contract cases.
 *
 * @param name the suite's name (the sink)
 * @param factory opens a fresh, empty store for each case
 */
export function sinkConformance(name: string, factory: SinkFactory): void {
  describe(`sink conformance: ${name}`, () => {
    let t: SinkUnderTest;
    beforeEach(async () => {
      t = await factory();
    });
    afterEach(async () => {
      await t.dispose();
    });

    async function sortedMessages(): Promise<StoredMessage[]> {
      return (await t.messages()).sort(byMsgid);
    }

    it('stores rows exactly and saves each stream’s last cursor', async () => {
      const m = [0, 1, 2, 3].map((i) => message(i));
      const maxIds = message(9, { msgid: '18446744073709551615', seq: '18446744073709551615', legacy_msgid: '-9223372036854775808' });
      const e = [event(0), event(1, { event_id: '18446744073709551615', session_id: 'sess-0@findermsg' })];
      const d = [deadLetter(0), deadLetter(1, { stage: 'ingest', original_base64: Buffer.from('<html>502</html>').toString('base64') })];
      const sink = await t.open();
      await sink.add(unit({ messages: [m[0]!, m[1]!], events: [e[0]!] }, 'kb-1'));
      await sink.add(unit({ messages: [m[2]!], deadLetters: [d[0]!] }, 'other-1', 'other'));
      await sink.add(unit({ messages: [m[3]!, maxIds], events: [e[1]!], deadLetters: [d[1]!], recalls: [recallOf(m[1]!, BASE + 99_000)] }, 'kb-2'));
      await sink.add(unit({}, undefined));
      await sink.close();

      expect(await sortedMessages()).toEqual(
        [stored(m[0]!), stored(m[1]!, BASE + 99_000), stored(m[2]!), stored(m[3]!), stored(maxIds)].sort(byMsgid),
      );
      expect((await t.events()).sort(byEventId)).toEqual([...e].sort(byEventId));
      const letters = (await t.deadLetters()).sort(byOrigin);
      expect(letters).toEqual([...d].sort(byOrigin));
      expect(Buffer.from(letters.find((l) => l.stage === 'transform')!.original_base64, 'base64')).toEqual(
        Buffer.from([0xff, 0xfe, 0x00, 0, 0x22, 0x5c, 0xe4, 0xbd]),
      );
      expect(await t.cursor(SOURCE, 'main')).toBe('kb-2');
      expect(await t.cursor(SOURCE, 'other')).toBe('other-1');
      expect(await t.cursor(SOURCE, 'nowhere')).toBeUndefined();
    });

    it('stores messages, events, dead letters and recall marks before the cursor', async () => {
      const target = message(1);
      const first = await t.open();
      await first.add(unit({ messages: [target] }, 'kb-1'));
      await first.close();
      const before = t.writes().length;
      expect(t.writes().at(-1)).toBe('cursors');

      const sink = await t.open();
      await sink.add(unit({ messages: [message(2)], events: [event(2)], deadLetters: [deadLetter(2)], recalls: [recallOf(target, BASE + 50_000)] }, 'kb-2'));
      await sink.close();
      expect(t.writes().slice(before)).toEqual(['messages', 'events', 'dead_letters', 'recalls', 'cursors']);
      expect((await sortedMessages()).find((m) => m.msgid === target.msgid)?.recall_time).toBe(BASE + 50_000);
      expect(await t.cursor(SOURCE, 'main')).toBe('kb-2');
    });

    it('stores nothing twice when a restarted pipeline re-adds units, or a provider repeats rows', async () => {
      const rows = Array.from({ length: 8 }, (_v, i) => message(i));
      const units = [0, 1, 2, 3].map((n) =>
        unit(
          {
            // Unit n repeats the last row of unit n-1 (a provider duplicate across pages) and one of its own.
            messages: [...(n > 0 ? [rows[2 * n - 1]!] : []), rows[2 * n]!, rows[2 * n + 1]!, rows[2 * n]!],
            events: [event(n), event(n)],
            deadLetters: [deadLetter(n)],
            recalls: n === 3 ? [recallOf(rows[0]!, BASE + 70_000)] : [],
          },
          `kb-${n}`,
        ),
      );
      // Flushes after units 0 and 1 (rows bound); unit 2 is still buffered when the process dies.
      const crashed = await t.open({ maxRows: 9, maxAgeMs: 600_000 });
      for (const u of units.slice(0, 3)) await crashed.add(u);
      await vi.waitFor(async () => {
        expect(await t.cursor(SOURCE, 'main')).toBe('kb-1');
      }, WAIT);
      expect(await t.messages()).toHaveLength(4);

      // The restarted pipeline re-reads from an older cursor and re-transforms everything.
      const restarted = await t.open();
      for (const u of units) await restarted.add(retransformed(u));
      await restarted.close();

      const got = await sortedMessages();
      expect(got.map((m) => m.msgid)).toEqual(rows.map((r) => r.msgid));
      // The first stored version stays; the replay adds only what was missing.
      expect(got.slice(0, 4)).toEqual([stored(rows[0]!, BASE + 70_000), ...rows.slice(1, 4).map((r) => stored(r))]);
      expect(got.slice(4).map((m) => m.ingested_at)).toEqual(rows.slice(4).map((r) => r.ingested_at + 60_000));
      expect((await t.events()).map((e) => e.event_id).sort()).toEqual([0, 1, 2, 3].map((n) => event(n).event_id).sort());
      expect(await t.deadLetters()).toHaveLength(4);
      expect(await t.cursor(SOURCE, 'main')).toBe('kb-3');

      // Once more, everything already stored: nothing changes.
      const again = await t.open();
      for (const u of units) await again.add(retransformed(retransformed(u)));
      await again.close();
      expect(await sortedMessages()).toEqual(got);
      expect(await t.events()).toHaveLength(4);
      expect(await t.deadLetters()).toHaveLength(4);
    });

    it('leaves the cursor and rejects when an insert fails permanently; a restart completes the batch once', async () => {
      const first = await t.open();
      await first.add(unit({ messages: [message(1)] }, 'kb-1'));
      await first.close();

      t.fail({ table: 'dead_letters', times: Infinity, retriable: false });
      const failing = await t.open();
      const batch = unit({ messages: [message(2)], events: [event(2)], deadLetters: [deadLetter(2)] }, 'kb-2');
      await failing.add(batch);
      await expect(failing.close()).rejects.toThrow();
      expect(await t.cursor(SOURCE, 'main')).toBe('kb-1');
      expect(await t.deadLetters()).toEqual([]);

      t.heal();
      const restarted = await t.open();
      await restarted.add(retransformed(batch));
      await restarted.close();
      expect((await t.messages()).map((m) => m.msgid).sort()).toEqual([message(1).msgid, message(2).msgid].sort());
      expect(await t.events()).toHaveLength(1);
      expect(await t.deadLetters()).toHaveLength(1);
      expect(await t.cursor(SOURCE, 'main')).toBe('kb-2');
    });

    it('retries a transient failure without losing or doubling rows, also when the failed write had landed', async () => {
      t.fail({ table: 'messages', times: 1, retriable: true, afterWrite: true });
      t.fail({ table: 'events', times: 2, retriable: true });
      t.fail({ table: 'cursors', times: 1, retriable: true });
      const rows = Array.from({ length: 20 }, (_v, i) => message(i));
      const sink = await t.open();
      await sink.add(unit({ messages: rows, events: [event(1)] }, 'kb-1'));
      await sink.close();
      expect(await sortedMessages()).toEqual(rows.map((r) => stored(r)));
      expect(await t.events()).toEqual([event(1)]);
      expect(await t.cursor(SOURCE, 'main')).toBe('kb-1');
    });

    it('flushes when the row bound is reached, not before', async () => {
      const sink = await t.open({ maxRows: 5, maxAgeMs: 600_000 });
      await sink.add(unit({ messages: [message(0), message(1)] }, 'kb-1'));
      await sink.add(unit({ messages: [message(2)], events: [event(2)] }, 'kb-2'));
      await sleep(200);
      expect(await t.messages()).toEqual([]);
      expect(await t.cursor(SOURCE, 'main')).toBeUndefined();
      await sink.add(unit({ messages: [message(3), message(4)] }, 'kb-3'));
      await vi.waitFor(async () => {
        expect(await t.cursor(SOURCE, 'main')).toBe('kb-3');
      }, WAIT);
      expect(await t.messages()).toHaveLength(5);
      await sink.close();
    });

    it('flushes when the byte bound is reached', async () => {
      const sink = await t.open({ maxBytes: 64 * 1024, maxAgeMs: 600_000 });
      await sink.add(unit({ messages: [message(0, { raw_content: '消'.repeat(8_000) })] }, 'kb-1'));
      await sleep(100);
      expect(await t.messages()).toEqual([]);
      await sink.add(unit({ messages: [message(1, { raw_content: '息'.repeat(30_000) })] }, 'kb-2'));
      await vi.waitFor(async () => {
        expect(await t.cursor(SOURCE, 'main')).toBe('kb-2');
      }, WAIT);
      expect(await t.messages()).toHaveLength(2);
      await sink.close();
    });

    it('flushes a batch once it is maxAgeMs old, cursor-only units included', async () => {
      const sink = await t.open({ maxAgeMs: 100 });
      await sink.add(unit({ messages: [message(0)] }, 'kb-1'));
      await vi.waitFor(async () => {
        expect(await t.cursor(SOURCE, 'main')).toBe('kb-1');
      }, WAIT);
      expect(await t.messages()).toHaveLength(1);
      await sink.add(unit({}, 'kb-2'));
      await vi.waitFor(async () => {
        expect(await t.cursor(SOURCE, 'main')).toBe('kb-2');
      }, WAIT);
      await sink.close();
    });

    it('flushes everything buffered on close and saves the covered cursors', async () => {
      const sink = await t.open();
      await sink.add(unit({ messages: [message(0)] }, 'a-1', 'a'));
      await sink.add(unit({ messages: [message(1)] }, 'b-1', 'b'));
      await sink.add(unit({ events: [event(2)] }, 'a-2', 'a'));
      await sink.add(unit({ deadLetters: [deadLetter(3)] }));
      await sleep(150);
      expect(await t.messages()).toEqual([]);
      expect(await t.cursor(SOURCE, 'a')).toBeUndefined();
      await sink.close();
      expect(await t.messages()).toHaveLength(2);
      expect(await t.events()).toHaveLength(1);
      expect(await t.deadLetters()).toHaveLength(1);
      expect(await t.cursor(SOURCE, 'a')).toBe('a-2');
      expect(await t.cursor(SOURCE, 'b')).toBe('b-1');
    });
  });
}
