/** The Yunhu source against the Yunhu simulator over real HTTP. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { sourceSchema } from '../../../src/core/config.ts';
import { MsgpipeError } from '../../../src/core/errors.ts';
import { createSource } from '../../../src/ingest/registry.ts';
import type { Source, SourceContext, SourcePage } from '../../../src/ingest/source.ts';
import { decodeYunhu, encodeYunhu, readListResponse } from '../../../src/ingest/yunhu-proto.ts';
import { highestSeq, type Listed } from '../../../src/ingest/yunhu.ts';
import { yunhuClient } from '../../../src/simulate/yunhu-client.ts';
import { startYunhuSimulator, type YunhuSimulatorHandle, type YunhuSimAccountInput } from '../../../src/simulate/yunhu-server.ts';

const WAIT = { timeout: 15_000, interval: 20 } as const;
const FAST = { attempts: Infinity, minMs: 5, maxMs: 40, factor: 2 };
let sims: YunhuSimulatorHandle[] = [];

afterEach(async () => {
  await Promise.all(sims.map((s) => s.close()));
  sims = [];
});

const ACCOUNT: YunhuSimAccountInput = {
  token: 'tok-yh',
  userId: '7311890',
  chats: [
    { chatId: '51309476', chatType: 2, messages: 45 },
    { chatId: '7356214', chatType: 1, messages: 12 },
    { chatId: '82041957', chatType: 3, messages: 7 },
  ],
  pageSize: 10,
};

async function simulator(account: YunhuSimAccountInput = ACCOUNT): Promise<YunhuSimulatorHandle> {
  const sim = await startYunhuSimulator({ accounts: [account] });
  sims.push(sim);
  return sim;
}

function build(sim: YunhuSimulatorHandle, extra: Record<string, unknown> = {}, retry: typeof FAST = FAST): Source {
  const config = sourceSchema.parse({ type: 'yunhu', name: 'yh', tenant: 'corp1', baseUrl: sim.url, token: 'tok-yh', userId: '7311890', pollIntervalMs: 50, rereadWindow: 20, ...extra });
  return createSource(config, { retry, parkRetryMs: 100 });
}

interface Running {
  readonly pages: SourcePage[];
  readonly cursors: Map<string, string>;
  /** How many times the source has started waiting for its next poll. */
  waits(): number;
  /** Ends the source's wait for its next poll, as `POST /chat-msg/sync` does. */
  wake(): void;
  stop(): Promise<void>;
}

/** Runs `source`; `onEmit` runs for each page before the source goes on, as a slow sink would. */
function run(source: Source, cursors = new Map<string, string>(), onEmit?: (page: SourcePage) => Promise<void>): Running {
  const controller = new AbortController();
  const pages: SourcePage[] = [];
  let waits = 0;
  let wake = (): void => undefined;
  const ctx: SourceContext = {
    signal: controller.signal,
    log: pino({ level: 'silent' }),
    loadCursor: (stream) => Promise.resolve(cursors.get(stream)),
    emit: async (page) => {
      pages.push(page);
      cursors.set(page.stream, page.cursorAfter);
      await onEmit?.(page);
    },
    wakeup: (signal) => new Promise<void>((resolve) => {
      waits++;
      wake = resolve;
      signal.addEventListener('abort', () => { resolve(); }, { once: true });
    }),
  };
  const done = source.run(ctx);
  return { pages, cursors, waits: () => waits, wake: () => { wake(); }, stop: async () => { controller.abort(); await done; } };
}

/** The latest state of each of `ids` in the pages: its text and whether it is recalled. */
function latest(pages: readonly SourcePage[], ids: readonly string[]): { text: string; recalled: boolean }[] {
  const msgs = pages.flatMap((p) => p.records).filter((x) => x.bytes[0] !== 0x7b).map((x) => decodeYunhu('Msg', x.bytes));
  return ids.map((id) => {
    const m = msgs.filter((x) => x['msg_id'] === id).at(-1);
    return { text: (m?.['content'] as { text?: string } | undefined)?.text ?? '', recalled: m !== undefined && m['recall_time'] !== '0' };
  });
}

function msgIds(pages: readonly SourcePage[]): string[] {
  return pages.flatMap((p) => p.records.filter((r) => r.bytes[0] !== 0x7b).map((r) => String(decodeYunhu('Msg', r.bytes)['msg_id'])));
}

describe('yunhu source', () => {
  it('discovers the chats, reads each from its cursor with exact message bytes, and resumes per chat', async () => {
    const sim = await simulator();
    const first = run(build(sim));
    const total = sim.expected('7311890').length;
    await vi.waitFor(() => { expect(new Set(msgIds(first.pages)).size).toBe(total); }, WAIT);
    await first.stop();
    // Every record is the exact span of a list response the simulator sent.
    const bodies = sim.received('7311890').flatMap((r) => (r.body === undefined ? [] : [Buffer.from(r.body)]));
    for (const page of first.pages) for (const r of page.records) expect(bodies.some((b) => b.includes(Buffer.from(r.bytes)))).toBe(true);
    expect(first.cursors).toEqual(new Map([['2:51309476', '45'], ['1:7356214', '12'], ['3:82041957', '7']]));
    for (const page of first.pages) for (const r of page.records) expect(r.cursor).toBe(`${page.stream}@${page.cursorBefore}`);

    // New messages arrive; a new source instance resumes each chat at its stored cursor.
    sim.postAsPeer('7311890', 2, '51309476', 1);
    sim.postAsPeer('7311890', 1, '7356214', 1);
    const before = sim.received('7311890').length;
    const second = run(build(sim), new Map(first.cursors));
    await vi.waitFor(() => { expect(second.cursors.get('2:51309476')).toBe('46'); expect(second.cursors.get('1:7356214')).toBe('13'); }, WAIT);
    await second.stop();
    const starts = sim.received('7311890').slice(before).filter((r) => r.path.endsWith('by-seq')).map((r) => `${r.chat}@${r.msgStart}`);
    expect(starts).toContain('2:51309476@45');
    expect(starts).not.toContain('2:51309476@0');
    const latest = sim.expected('7311890').filter((m) => m.seq === 46 || (m.chat === '1:7356214' && m.seq === 13)).map((m) => m.msgId);
    expect(msgIds(second.pages).filter((id) => latest.includes(id)).sort()).toEqual(latest.sort());
  });

  it('picks up edits (with their history) and recalls made through the API within the re-read window', async () => {
    const sim = await simulator();
    const chat = { chatId: '7356214', chatType: 1 };
    const client = yunhuClient(sim.url, 'tok-yh');
    const a = await client.send(chat, { content: { text: 'v1' } });
    const b = await client.send(chat, { content: { text: 'to recall' } });
    const r = run(build(sim, { chats: [chat] }));
    await vi.waitFor(() => { expect(msgIds(r.pages)).toContain(b); }, WAIT);
    await client.edit(chat, a, 'v2');
    await client.edit(chat, a, 'v3');
    await client.recall(chat, b);
    await vi.waitFor(() => {
      const edited = r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] !== 0x7b).map((x) => decodeYunhu('Msg', x.bytes)).filter((m) => m['msg_id'] === a && m['edit_time'] !== '0');
      expect(edited.some((m) => (m['content'] as { text: string }).text === 'v3')).toBe(true);
      const recalled = r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] !== 0x7b).map((x) => decodeYunhu('Msg', x.bytes)).filter((m) => m['msg_id'] === b && m['recall_time'] !== '0');
      expect(recalled.length).toBeGreaterThan(0);
      const history = r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] === 0x7b).map((x) => JSON.parse(Buffer.from(x.bytes).toString()) as { contentOld: string });
      expect(history.map((h) => h.contentOld)).toEqual(expect.arrayContaining(['{"text":"v1"}', '{"text":"v2"}']));
    }, WAIT);
    await r.stop();
  });

  /**
   * A chat of 5 messages whose newest two, `a` and `b`, are the account's own; `changeThenBurst`
   * edits `a` to "v2", recalls `b`, then lets 30 more arrive: more than the window (20).
   */
  async function twoNewestToChange() {
    const sim = await simulator({ ...ACCOUNT, chats: [{ chatId: '7356214', chatType: 1, messages: 3 }] });
    const chat = { chatId: '7356214', chatType: 1 };
    const client = yunhuClient(sim.url, 'tok-yh');
    const a = await client.send(chat, { content: { text: 'v1' } });
    const b = await client.send(chat, { content: { text: 'to recall' } });
    const changeThenBurst = async (): Promise<void> => {
      await client.edit(chat, a, 'v2');
      await client.recall(chat, b);
      for (let i = 0; i < 30; i++) sim.postAsPeer('7311890', 1, chat.chatId, 1);
    };
    return { sim, chat, a, b, changeThenBurst };
  }

  it('reads the window below its stored cursor again after a restart: edits and recalls made while it was down outlast a longer backlog', async () => {
    const { sim, chat, a, b, changeThenBurst } = await twoNewestToChange();
    const first = run(build(sim, { chats: [chat] }));
    await vi.waitFor(() => { expect(first.cursors.get('1:7356214')).toBe('5'); }, WAIT);
    await first.stop();
    // While it is down: the two newest change, then more than the window (20) arrives.
    await changeThenBurst();
    const second = run(build(sim, { chats: [chat] }), first.cursors);
    await vi.waitFor(() => {
      expect(second.cursors.get('1:7356214')).toBe('35');
      expect(latest(second.pages, [a, b])).toEqual([{ text: 'v2', recalled: false }, { text: '', recalled: true }]);
    }, WAIT);
    await second.stop();
    // The 30 new ones and the two changed ones, each once.
    const ids = msgIds(second.pages);
    expect(ids).toHaveLength(32);
    expect(new Set(ids).size).toBe(32);
  });

  it('reads the window of its last re-read again when more than the window arrived before the next round', async () => {
    const { sim, chat, a, b, changeThenBurst } = await twoNewestToChange();
    const r = run(build(sim, { chats: [chat], pollIntervalMs: 600_000 }));
    // Caught up, re-read, and waiting for the next poll.
    await vi.waitFor(() => {
      expect(r.cursors.get('1:7356214')).toBe('5');
      expect(r.waits()).toBe(1);
    }, WAIT);
    await changeThenBurst();
    r.wake();
    await vi.waitFor(() => { expect(r.waits()).toBe(2); }, WAIT);
    expect(r.cursors.get('1:7356214')).toBe('35');
    expect(latest(r.pages, [a, b])).toEqual([{ text: 'v2', recalled: false }, { text: '', recalled: true }]);
    // The burst was handed on once: only the two changed messages went twice.
    const ids = msgIds(r.pages);
    expect(ids).toHaveLength(35 + 2);
    expect(new Set(ids).size).toBe(35);
    // The next round re-reads the newest window only: nothing is handed on again.
    const pagesThen = r.pages.length;
    r.wake();
    await vi.waitFor(() => { expect(r.waits()).toBe(3); }, WAIT);
    expect(r.pages.length).toBe(pagesThen);
    await r.stop();
  });

  it('dead-letters a persistent error status once per position, although every answer carries a fresh request_id', async () => {
    const sim = await simulator({ ...ACCOUNT, chats: [{ chatId: '7356214', chatType: 1, messages: 5 }] });
    const source = build(sim, { chats: [{ chatId: '7356214', chatType: 1 }] });
    sim.setFaults('7311890', { errorStatusRate: 1 });
    const r = run(source);
    const errorAnswers = (): Uint8Array[] => sim.received('7311890').flatMap((x) => (x.outcome === 'error_status' && x.body !== undefined ? [x.body] : []));
    await vi.waitFor(() => { expect(errorAnswers().length).toBeGreaterThanOrEqual(4); }, WAIT);
    // The answers differ (their request_id), the failure does not.
    expect(new Set(errorAnswers().map((b) => Buffer.from(b).toString('base64'))).size).toBeGreaterThan(1);
    const letters = r.pages.flatMap((p) => p.deadLetters);
    expect(letters.map((d) => d.error_code)).toEqual(['MSGPIPE_ERR_PROVIDER']);
    sim.clearFaults('7311890');
    await vi.waitFor(() => { expect(r.cursors.get('1:7356214')).toBe('5'); }, WAIT);
    expect(r.pages.flatMap((p) => p.deadLetters)).toHaveLength(1);
    await r.stop();
  });

  it('parks on status -101 and dead-letters a negative status and a malformed body with the whole body, without moving the cursor', async () => {
    const sim = await simulator({ ...ACCOUNT, chats: [{ chatId: '7356214', chatType: 1, messages: 25 }] });
    const source = build(sim, { chats: [{ chatId: '7356214', chatType: 1 }] });
    sim.setFaults('7311890', { errorStatusRate: 0.3, malformedRate: 0.3 });
    const r = run(source);
    await vi.waitFor(() => {
      const codes = r.pages.flatMap((p) => p.deadLetters.map((d) => d.error_code));
      expect(codes).toContain('MSGPIPE_ERR_PROVIDER');
      expect(codes).toContain('MSGPIPE_ERR_PAGE_MALFORMED');
    }, WAIT);
    sim.clearFaults('7311890');
    await vi.waitFor(() => { expect(r.cursors.get('1:7356214')).toBe('25'); }, WAIT);
    const letters = r.pages.flatMap((p) => p.deadLetters);
    expect(letters.every((d) => d.stage === 'ingest')).toBe(true);
    const sent = sim.received('7311890').flatMap((x) => (x.outcome === 'malformed' || x.outcome === 'error_status') && x.body !== undefined ? [Buffer.from(x.body).toString('base64')] : []);
    for (const d of letters) expect(sent).toContain(d.original_base64);
    for (const p of r.pages.filter((x) => x.deadLetters.length > 0)) expect(p.cursorAfter).toBe(p.cursorBefore);
    expect(new Set(msgIds(r.pages)).size).toBe(25);

    sim.setFaults('7311890', { tokenExpiresAfter: 0 });
    await vi.waitFor(() => { expect(source.stats.parked).toBe(true); }, WAIT);
    sim.renewToken('7311890');
    sim.clearFaults('7311890');
    await vi.waitFor(() => { expect(source.stats.parked).toBe(false); }, WAIT);
    await r.stop();
  });

  it('keeps reading the other chats while one answers a lasting error status, and reads it once it recovers', async () => {
    const sim = await simulator();
    const source = build(sim, { rereadWindow: 0, chats: ACCOUNT.chats.map((c) => ({ chatId: c.chatId, chatType: c.chatType })) });
    sim.setFaults('7311890', { goneChats: ['2:51309476'] });
    const r = run(source);
    await vi.waitFor(() => {
      expect(r.cursors.get('1:7356214')).toBe('12');
      expect(r.cursors.get('3:82041957')).toBe('7');
    }, WAIT);
    await vi.waitFor(() => {
      expect(sim.received('7311890').filter((x) => x.chat === '2:51309476').length).toBeGreaterThanOrEqual(3);
    }, WAIT);
    expect(r.pages.flatMap((p) => p.deadLetters).map((d) => d.error_code)).toEqual(['MSGPIPE_ERR_PROVIDER']);
    expect(r.cursors.get('2:51309476')).toBe('0');
    sim.clearFaults('7311890');
    await vi.waitFor(() => { expect(r.cursors.get('2:51309476')).toBe('45'); }, WAIT);
    expect(new Set(msgIds(r.pages)).size).toBe(45 + 12 + 7);
    await r.stop();
  });

  it('reads the other chats while one answers HTTP 404 and another 503 past the retries, and reads both once they recover', async () => {
    const sim = await simulator();
    // The failing chats come first in the pass, so a pass that stopped at them would never reach the third.
    const source = build(sim, { rereadWindow: 0, chats: ACCOUNT.chats.map((c) => ({ chatId: c.chatId, chatType: c.chatType })) });
    sim.setFaults('7311890', { chatHttpStatus: { '2:51309476': 404, '1:7356214': 503 } });
    const r = run(source);
    await vi.waitFor(() => { expect(r.cursors.get('3:82041957')).toBe('7'); }, WAIT);
    // Each failing chat is asked again in later passes, not once and never again.
    await vi.waitFor(() => {
      expect(sim.received('7311890').filter((x) => x.chat === '2:51309476').length).toBeGreaterThanOrEqual(3);
      // The 503 chat: 5 attempts per read, then its own backoff, then another read.
      expect(sim.received('7311890').filter((x) => x.chat === '1:7356214').length).toBeGreaterThanOrEqual(6);
    }, WAIT);
    expect(r.cursors.get('2:51309476')).toBeUndefined();
    expect(r.cursors.get('1:7356214')).toBeUndefined();
    sim.clearFaults('7311890');
    await vi.waitFor(() => {
      expect(r.cursors.get('2:51309476')).toBe('45');
      expect(r.cursors.get('1:7356214')).toBe('12');
    }, WAIT);
    expect(new Set(msgIds(r.pages)).size).toBe(45 + 12 + 7);
    await r.stop();
  });

  /** A chat of 3 messages plus `a`, sent as v1 and edited to v2, whose edit record then fails. */
  async function editedWithFailingRecord(): Promise<{ sim: YunhuSimulatorHandle; chat: { chatId: string; chatType: number }; client: ReturnType<typeof yunhuClient>; a: string }> {
    const sim = await simulator({ ...ACCOUNT, chats: [{ chatId: '7356214', chatType: 1, messages: 3 }] });
    const chat = { chatId: '7356214', chatType: 1 };
    const client = yunhuClient(sim.url, 'tok-yh');
    const a = await client.send(chat, { content: { text: 'v1' } });
    await client.edit(chat, a, 'v2');
    sim.setFaults('7311890', { failingEditRecords: true });
    return { sim, chat, client, a };
  }

  it('hands on an edited message without its history when the edit record cannot be read, keeps reading the chat, and asks again later', async () => {
    const { sim, chat, client, a } = await editedWithFailingRecord();
    // Retries spaced enough that the history is still wanted when the fault goes.
    const r = run(build(sim, { chats: [chat] }, { attempts: Infinity, minMs: 300, maxMs: 600, factor: 2 }));
    await vi.waitFor(() => { expect(msgIds(r.pages)).toContain(a); }, WAIT);
    const edited = r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] !== 0x7b).map((x) => decodeYunhu('Msg', x.bytes)).find((m) => m['msg_id'] === a);
    expect((edited?.['content'] as { text: string } | undefined)?.text).toBe('v2');
    expect(r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] === 0x7b)).toHaveLength(0);
    const letters = r.pages.flatMap((p) => p.deadLetters);
    expect(letters.map((d) => d.error_code)).toEqual(['MSGPIPE_ERR_PROVIDER']);
    expect(Buffer.from(letters[0]?.original_base64 ?? '', 'base64').toString()).toBe('{"code":-1,"msg":"消息不存在"}');
    // Later messages of the chat arrive while the edit record still fails.
    const b = await client.send(chat, { content: { text: 'after' } });
    await vi.waitFor(() => {
      expect(msgIds(r.pages)).toContain(b);
      expect(r.cursors.get('1:7356214')).toBe('5');
    }, WAIT);
    // Once the edit record answers, a re-read hands the message on again with its history.
    sim.clearFaults('7311890');
    await vi.waitFor(() => {
      const history = r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] === 0x7b).map((x) => JSON.parse(Buffer.from(x.bytes).toString()) as { contentOld: string });
      expect(history.map((h) => h.contentOld)).toContain('{"text":"v1"}');
    }, WAIT);
    expect(r.pages.flatMap((p) => p.deadLetters)).toHaveLength(1);
    await r.stop();
  });

  it('asks again for a failed edit history after its message has left the re-read window, and hands the history on alone', async () => {
    const { sim, chat, client, a } = await editedWithFailingRecord();
    const r = run(build(sim, { chats: [chat], rereadWindow: 2 }, { attempts: Infinity, minMs: 300, maxMs: 600, factor: 2 }));
    await vi.waitFor(() => { expect(msgIds(r.pages)).toContain(a); }, WAIT);
    // Five more messages: `a` (seq 4) falls below the window of the latest 2, where no read lists it.
    for (let i = 0; i < 5; i++) await client.send(chat, { content: { text: `after ${String(i)}` } });
    await vi.waitFor(() => { expect(r.cursors.get('1:7356214')).toBe('9'); }, WAIT);
    const history = (): { contentOld: string }[] =>
      r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] === 0x7b).map((x) => JSON.parse(Buffer.from(x.bytes).toString()) as { contentOld: string });
    expect(history()).toEqual([]);
    sim.clearFaults('7311890');
    await vi.waitFor(() => { expect(history().map((h) => h.contentOld)).toContain('{"text":"v1"}'); }, WAIT);
    const page = r.pages.find((p) => p.records.some((x) => x.bytes[0] === 0x7b))!;
    expect(page.records.every((x) => x.bytes[0] === 0x7b)).toBe(true);
    expect([page.cursorBefore, page.cursorAfter]).toEqual(['9', '9']);
    // Asked for once it answered, not again.
    const editReads = sim.received('7311890').filter((x) => x.path === '/v1/msg/list-message-edit-record').length;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(sim.received('7311890').filter((x) => x.path === '/v1/msg/list-message-edit-record').length).toBe(editReads);
    await r.stop();
  });

  it('asks for an edit history that keeps failing 10 times, then no more, and hands its message on no more than that', async () => {
    const { sim, chat, a } = await editedWithFailingRecord();
    const r = run(build(sim, { chats: [chat] }));
    const editReads = (): number => sim.received('7311890').filter((x) => x.path === '/v1/msg/list-message-edit-record').length;
    const emitted = (): number => msgIds(r.pages).filter((id) => id === a).length;
    // The tenth answer is logged before the page it ends is handed on: wait for both.
    await vi.waitFor(() => {
      expect(editReads()).toBe(10);
      expect(emitted()).toBe(10);
    }, WAIT);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(editReads()).toBe(10);
    expect(emitted()).toBe(10);
    expect(r.pages.flatMap((p) => p.deadLetters)).toHaveLength(1);
    await r.stop();
  });

  it('hands on at once a recall of a message whose edit history waits for its next attempt', async () => {
    const { sim, chat, client, a } = await editedWithFailingRecord();
    // The history's next attempt is a minute away.
    const r = run(build(sim, { chats: [chat] }, { attempts: Infinity, minMs: 60_000, maxMs: 60_000, factor: 2 }));
    await vi.waitFor(() => { expect(msgIds(r.pages)).toContain(a); }, WAIT);
    await client.recall(chat, a);
    await vi.waitFor(() => { expect(latest(r.pages, [a])).toEqual([{ text: '', recalled: true }]); }, WAIT);
    await r.stop();
  });

  it('takes its fault knobs over HTTP too, as the finder simulators do (/_sim)', async () => {
    const sim = await simulator();
    const call = async (method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown }> => {
      const res = await fetch(`${sim.url}/_sim${path}`, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }) });
      return { status: res.status, json: await res.json() };
    };
    expect(await call('PUT', '/accounts/7311890/faults', { goneChats: ['2:51309476'] })).toMatchObject({ status: 200, json: { own: { goneChats: ['2:51309476'] } } });
    expect((await call('PUT', '/accounts/7311890/faults', { goneChats: 'all' })).status).toBe(400);
    expect((await call('PUT', '/accounts/nobody/faults', {})).status).toBe(404);
    expect(await call('PUT', '/faults', { latencyMs: 1 })).toEqual({ status: 200, json: { latencyMs: 1 } });
    expect(await call('GET', '/faults')).toEqual({ status: 200, json: { latencyMs: 1 } });
    expect(await call('DELETE', '/faults')).toEqual({ status: 200, json: {} });
    // An expired token stays refused once the knob is gone, until it is renewed over HTTP too.
    const list = async (): Promise<number> => {
      const res = await fetch(`${sim.url}/v1/msg/list-message-by-seq`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-protobuf', token: 'tok-yh' },
        body: encodeYunhu('ListMessageBySeqRequest', { msg_start: '0', chat_type: 1, chat_id: '7356214' }),
      });
      return readListResponse(new Uint8Array(await res.arrayBuffer())).status?.code ?? 0;
    };
    expect((await call('PUT', '/faults', { tokenExpiresAfter: 0 })).status).toBe(200);
    expect(await list()).toBe(-101);
    expect(await call('DELETE', '/faults')).toEqual({ status: 200, json: {} });
    expect(await list()).toBe(-101);
    expect(await call('POST', '/accounts/7311890/renew-token', {})).toEqual({ status: 200, json: { token: 'tok-yh' } });
    expect(await list()).toBe(1);
    expect((await call('POST', '/accounts/nobody/renew-token', {})).status).toBe(404);

    const source = build(sim, { rereadWindow: 0, chats: ACCOUNT.chats.map((c) => ({ chatId: c.chatId, chatType: c.chatType })) });
    const r = run(source);
    await vi.waitFor(() => {
      expect(r.cursors.get('1:7356214')).toBe('12');
      expect(sim.received('7311890').filter((x) => x.chat === '2:51309476' && x.outcome === 'error_status').length).toBeGreaterThanOrEqual(1);
    }, WAIT);
    expect(r.cursors.get('2:51309476')).toBe('0');
    expect((await call('DELETE', '/accounts/7311890/faults')).status).toBe(200);
    await vi.waitFor(() => { expect(r.cursors.get('2:51309476')).toBe('45'); }, WAIT);
    await r.stop();
  });

  it('hands on a newest message whose msg_seq cannot be read once, though every read lists it again', async () => {
    const sim = await simulator({ ...ACCOUNT, chats: [{ chatId: '7356214', chatType: 1, messages: 5 }] });
    const source = build(sim, { rereadWindow: 0, chats: [{ chatId: '7356214', chatType: 1 }] });
    const r = run(source);
    await vi.waitFor(() => { expect(r.cursors.get('1:7356214')).toBe('5'); }, WAIT);
    sim.injectHostile('7311890', 1, '7356214', 'unreadable');
    const isDamaged = (bytes: Uint8Array): boolean => bytes[0] === 0x0a && bytes[1] === 0x50;
    await vi.waitFor(() => { expect(r.pages.some((p) => p.records.some((x) => isDamaged(x.bytes)))).toBe(true); }, WAIT);
    const readsThen = sim.received('7311890').length;
    const emptyThen = source.stats.emptyPolls;
    await vi.waitFor(() => { expect(sim.received('7311890').length).toBeGreaterThanOrEqual(readsThen + 5); }, WAIT);
    expect(r.pages.filter((p) => p.records.some((x) => isDamaged(x.bytes)))).toHaveLength(1);
    // Those reads found nothing new, so the source counted them empty and waited between them.
    expect(source.stats.emptyPolls).toBeGreaterThanOrEqual(emptyThen + 4);
    expect(r.cursors.get('1:7356214')).toBe('5');
    await r.stop();
  });

  it('does not count a round as answered when every chat answered an error status', async () => {
    const sim = await simulator({ ...ACCOUNT, chats: [{ chatId: '7356214', chatType: 1, messages: 5 }] });
    const source = build(sim, { rereadWindow: 0, chats: [{ chatId: '7356214', chatType: 1 }] });
    sim.setFaults('7311890', { goneChats: ['1:7356214'] });
    const r = run(source);
    await vi.waitFor(() => { expect(sim.received('7311890').length).toBeGreaterThanOrEqual(4); }, WAIT);
    expect(source.stats.lastSuccessAt).toBeUndefined();
    sim.clearFaults('7311890');
    // The pass records its success once it ends, a moment after its page was handed on.
    await vi.waitFor(() => {
      expect(r.cursors.get('1:7356214')).toBe('5');
      expect(source.stats.lastSuccessAt).toBeTypeOf('number');
    }, WAIT);
    await r.stop();
  });

  it('stops when the pipeline refuses a page, instead of asking the provider again', async () => {
    const sim = await simulator({ ...ACCOUNT, chats: [{ chatId: '7356214', chatType: 1, messages: 5 }, { chatId: '82041957', chatType: 3, messages: 3 }] });
    const source = build(sim, { rereadWindow: 0, chats: [{ chatId: '7356214', chatType: 1 }, { chatId: '82041957', chatType: 3 }] });
    const refusal = new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'the store is down');
    let emits = 0;
    const outcome = source.run({
      signal: new AbortController().signal,
      log: pino({ level: 'silent' }),
      loadCursor: () => Promise.resolve(undefined),
      emit: () => {
        emits++;
        return Promise.reject(refusal);
      },
      wakeup: () => new Promise<void>(() => undefined),
    });
    await expect(outcome).rejects.toBe(refusal);
    expect(emits).toBe(1);
  });
});

describe('yunhu source turns', () => {
  it('lets the account\'s other chats have their turn while one chat reads a long backlog', async () => {
    const sim = await simulator({
      token: 'tok-yh',
      userId: '7311890',
      chats: [
        { chatId: '51309476', chatType: 2, messages: 600 },
        { chatId: '7356214', chatType: 1, messages: 3 },
      ],
      pageSize: 10,
    });
    const source = run(build(sim));
    await vi.waitFor(() => { expect(new Set(msgIds(source.pages)).size).toBe(603); }, WAIT);
    await source.stop();
    const reads = sim.received('7311890').filter((r) => r.path.endsWith('by-seq')).map((r) => r.chat);
    // 60 pages of the big chat; the small one is read after at most 20 of them, not after all.
    expect(reads.indexOf('1:7356214')).toBeGreaterThan(-1);
    expect(reads.indexOf('1:7356214')).toBeLessThanOrEqual(21);
    expect(reads.filter((c) => c === '2:51309476').length).toBeGreaterThanOrEqual(60);
  });

  it.each([
    ['a burst within one turn', 30, false],
    ['a burst longer than two turns', 250, false],
    ['a burst, the round that reads on past it failing in its re-read', 150, true],
  ])('reads the window of a turn that ran out of pages again: the edit of its last message outlasts %s', async (_title, burst, failFirst) => {
    const chat = { chatId: '7356214', chatType: 1 } as const;
    const sim = await simulator({ token: 'tok-yh', userId: '7311890', chats: [{ ...chat, messages: 1 }], pageSize: 10 });
    const client = yunhuClient(sim.url, 'tok-yh');
    for (let i = 0; i < 198; i++) sim.postAsPeer('7311890', 1, chat.chatId, 1);
    // Seq 200: the last of the turn's 20 pages of 10, so the turn ends without a re-read.
    const a = await client.send(chat, { content: { text: 'v1' } });
    let acted = false;
    let failed = false;
    const r = run(build(sim, { chats: [chat] }), new Map(), async (page) => {
      // Once the next turn has read the burst: its re-reads fail.
      if (failFirst && acted && !failed && page.cursorAfter === String(200 + burst)) {
        failed = true;
        sim.setFaults('7311890', { chatHttpStatus: { '1:7356214': 404 } });
      }
      if (acted || page.cursorAfter !== '200') return;
      acted = true;
      // Before the chat's next turn: its newest message is edited, then more than the window arrives.
      await client.edit(chat, a, 'v2');
      for (let i = 0; i < burst; i++) sim.postAsPeer('7311890', 1, chat.chatId, 1);
    });
    if (failFirst) {
      await vi.waitFor(() => { expect(sim.received('7311890').some((x) => x.outcome === 'error')).toBe(true); }, WAIT);
      sim.clearFaults('7311890');
    }
    await vi.waitFor(() => {
      expect(r.cursors.get('1:7356214')).toBe(String(200 + burst));
      expect(latest(r.pages, [a])).toEqual([{ text: 'v2', recalled: false }]);
    }, WAIT);
    await r.stop();
    expect(acted).toBe(true);
  });

  it('hands each message on once when pages list the message at msg_start again and a message twice', async () => {
    const chat = { chatId: '7356214', chatType: 1 } as const;
    const sim = await simulator({ token: 'tok-yh', userId: '7311890', chats: [{ ...chat, messages: 40 }], pageSize: 10, faults: { duplicateRate: 1 } });
    const client = yunhuClient(sim.url, 'tok-yh');
    const a = await client.send(chat, { content: { text: 'v1' } });
    await client.edit(chat, a, 'v2');
    const r = run(build(sim, { chats: [chat], rereadWindow: 15 }));
    await vi.waitFor(() => { expect(r.cursors.get('1:7356214')).toBe('41'); }, WAIT);
    // Rounds that re-read pages with duplicates in them.
    const reads = (): number => sim.received('7311890').filter((x) => x.path === '/v1/msg/list-message-by-seq').length;
    const readsThen = reads();
    await vi.waitFor(() => { expect(reads()).toBeGreaterThanOrEqual(readsThen + 10); }, WAIT);
    await r.stop();
    const ids = msgIds(r.pages);
    expect(ids).toHaveLength(41);
    expect(new Set(ids).size).toBe(41);
    expect(r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] === 0x7b)).toHaveLength(1);
    expect(sim.received('7311890').filter((x) => x.path === '/v1/msg/list-message-edit-record')).toHaveLength(1);
  });

  it('lets a seq read from damaged bytes move the cursor only as far as there are damaged messages', () => {
    const readable = (seq: number): Listed => ({ bytes: new Uint8Array(), msgId: `m${seq}`, decoded: true, seq: BigInt(seq), state: '0:0', editTime: '0' });
    const damaged = (seq: number): Listed => ({ bytes: new Uint8Array(), msgId: undefined, decoded: false, seq: BigInt(seq), state: '', editTime: '0' });
    const page = Array.from({ length: 20 }, (_, i) => readable(i + 1));
    // The damaged newest message, really seq 21: its seq may be read right, or as garbage.
    expect(highestSeq([...page, damaged(21)], 0n)).toBe(21n);
    expect(highestSeq([...page, damaged(35)], 0n)).toBe(20n);
    expect(highestSeq([...page, damaged(21), damaged(22)], 0n)).toBe(22n);
    expect(highestSeq([damaged(3)], 2n)).toBe(3n);
    // A message that decodes but has no msg_id has its own seq: it counts as a readable one.
    const noId = (seq: number): Listed => ({ bytes: new Uint8Array(), msgId: undefined, decoded: true, seq: BigInt(seq), state: '0:0', editTime: '0' });
    expect(highestSeq([...page, noId(35)], 0n)).toBe(35n);
  });
});

describe('yunhu simulator faults', () => {
  it('lets only the sender edit a message through the API', async () => {
    const sim = await simulator();
    const chat = { chatId: '7356214', chatType: 1 };
    const client = yunhuClient(sim.url, 'tok-yh');
    const own = await client.send(chat, { content: { text: 'mine' } });
    sim.postAsPeer('7311890', 1, '7356214', 1);
    const peer = sim.expected('7311890').filter((m) => m.chat === '1:7356214').at(-1)!;
    expect(peer.msgId).not.toBe(own);
    await expect(client.edit(chat, peer.msgId, 'not mine')).rejects.toThrow(/无权限/);
    await client.edit(chat, own, 'mine, edited');
    const after = sim.expected('7311890');
    expect(after.find((m) => m.msgId === peer.msgId)?.text).toBe(peer.text);
    expect(after.find((m) => m.msgId === own)?.text).toBe('mine, edited');
  });

  it('answers malformedRate with bodies that never decode as a shorter page', async () => {
    const chats = Array.from({ length: 100 }, (_v, i) => ({ chatId: `c${i}`, chatType: 2 as const, messages: 1 + (i % 40) }));
    const sim = await startYunhuSimulator({ accounts: [{ token: 't', userId: 'u', pageSize: 30, chats }], faults: { malformedRate: 1 } });
    sims.push(sim);
    let pages = 0;
    for (const c of chats) {
      for (const start of [0, 1, 5, 10]) {
        const res = await fetch(`${sim.url}/v1/msg/list-message-by-seq`, {
          method: 'POST',
          headers: { token: 't', 'content-type': 'application/x-protobuf' },
          body: encodeYunhu('ListMessageBySeqRequest', { msg_start: String(start), chat_type: 2, chat_id: c.chatId }),
        });
        const body = new Uint8Array(await res.arrayBuffer());
        try {
          if (readListResponse(body).status?.code === 1) pages++;
        } catch {
          // Malformed, as asked for.
        }
      }
    }
    // A cut between two fields used to make about 0.6 % of them a valid page of fewer messages.
    expect(pages).toBe(0);
    expect(sim.received('u').filter((r) => r.outcome === 'malformed')).toHaveLength(400);
  });
});

describe('yunhu source re-read', () => {
  let server: Server | undefined;
  afterEach(async () => {
    const open = server;
    server = undefined;
    if (open !== undefined) await new Promise((resolve) => { open.close(resolve); });
  });

  const msg = (seq: number): Uint8Array => encodeYunhu('Msg', { msg_id: `m${String(seq)}`, msg_seq: String(seq), send_time: '1731059400000', content_type: 1, content: { text: `t${String(seq)}` } });
  const list = (entries: readonly Uint8Array[]): Buffer => {
    const head = Buffer.from(encodeYunhu('ListMessageResponse', { status: { request_id: '1', code: 1, msg: 'success' } }));
    return Buffer.concat([head, ...entries.flatMap((e) => [Buffer.from([0x12, e.length]), Buffer.from(e)])]);
  };

  /** A Yunhu stand-in answering each list-by-seq with `answer(msg_start)`; counts the reads. */
  async function scripted(
    answer: (start: number) => Buffer,
    editRecord: (request: { size: number; page: number }) => unknown = () => ({ code: 1, data: { list: [], total: 0 }, msg: 'success' }),
    extra: Record<string, unknown> = {},
  ): Promise<{ source: Source; reads: () => number }> {
    let reads = 0;
    server = createServer((req, res) => {
      reads++;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url?.endsWith('/list-message-edit-record') === true) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(editRecord(JSON.parse(Buffer.concat(chunks).toString()) as { size: number; page: number })));
          return;
        }
        const start = Number(decodeYunhu('ListMessageBySeqRequest', Buffer.concat(chunks))['msg_start']);
        res.writeHead(200, { 'content-type': 'application/x-protobuf' });
        res.end(answer(start));
      });
    });
    await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
    const config = sourceSchema.parse({ type: 'yunhu', name: 'yh', tenant: 'corp1', baseUrl: url, token: 't', userId: 'u', pollIntervalMs: 50, rereadWindow: 20, chats: [{ chatId: 'c', chatType: 2 }], ...extra });
    return { source: createSource(config, { retry: FAST, parkRetryMs: 100 }), reads: () => reads };
  }

  it.each([
    ['hands on an undecodable message that arrived during the round when the re-read moves past it', '5', 1],
    ['does not hand on again an undecodable message below the cursor after a restart', '7', 0],
  ])('%s', async (_title, cursor, damagedSent) => {
    const damaged = Buffer.from([0x0a, 0x50, 0x61, 0x62]);
    // From the cursor (5) nothing is new; the re-read window (from 0) shows seq 1–5, then the
    // damaged message and seq 7, which arrived in between.
    const { source, reads } = await scripted((start) => (start === 0 ? list([1, 2, 3, 4, 5].map(msg).concat([damaged, msg(7)])) : list([])));
    const r = run(source, new Map([['2:c', cursor]]));
    await vi.waitFor(() => { expect(r.cursors.get('2:c')).toBe('7'); }, WAIT);
    // More rounds list the same window again.
    const pagesThen = r.pages.length;
    const readsThen = reads();
    await vi.waitFor(() => { expect(reads()).toBeGreaterThanOrEqual(readsThen + 4); }, WAIT);
    await r.stop();
    const records = r.pages.flatMap((p) => p.records.map((x) => Buffer.from(x.bytes)));
    expect(records.filter((b) => b.equals(damaged))).toHaveLength(damagedSent);
    expect(records.filter((b) => b.equals(Buffer.from(msg(7))))).toHaveLength(damagedSent);
    expect(r.pages.length).toBe(pagesThen);
  });

  it.each([
    ['read from the cursor', '0'],
    ['passed by the re-read', '5'],
  ])('hands on once an undecodable message a page lists twice, %s', async (_title, cursor) => {
    const damaged = Buffer.from([0x0a, 0x50, 0x61, 0x62]);
    const { source } = await scripted((start) => (start === 0 ? list([1, 2, 3, 4, 5].map(msg).concat([damaged, damaged, msg(7)])) : list([])));
    const r = run(source, new Map([['2:c', cursor]]));
    await vi.waitFor(() => { expect(r.cursors.get('2:c')).toBe('7'); }, WAIT);
    await r.stop();
    // Twice would be two dead letters of one message (their origin keys differ by index).
    const records = r.pages.flatMap((p) => p.records.map((x) => Buffer.from(x.bytes)));
    expect(records.filter((b) => b.equals(damaged))).toHaveLength(1);
  });

  it('hands on every message of a page that has no msg_id, each once, so each becomes a dead letter', async () => {
    const noId = (seq: number): Uint8Array => encodeYunhu('Msg', { msg_seq: String(seq), send_time: '1731059400000', content_type: 1, content: { text: `tip ${String(seq)}` } });
    const { source } = await scripted((start) => list([msg(1), noId(2), noId(3), noId(4), msg(5)].filter((_m, i) => i + 1 > start)));
    const r = run(source);
    await vi.waitFor(() => { expect(r.cursors.get('2:c')).toBe('5'); }, WAIT);
    await r.stop();
    const records = r.pages.flatMap((p) => p.records.map((x) => Buffer.from(x.bytes)));
    for (const seq of [2, 3, 4]) expect(records.filter((b) => b.equals(Buffer.from(noId(seq)))), `seq ${String(seq)}`).toHaveLength(1);
    expect(msgIds(r.pages).sort()).toEqual(['', '', '', 'm1', 'm5']);
  });

  it('hands on a message without msg_seq once, though every read lists it again', async () => {
    const noSeq = encodeYunhu('Msg', { msg_id: 'no-seq', send_time: '1731059400000', content_type: 1, content: { text: 'where am I' } });
    const { source, reads } = await scripted((start) => list([...[1, 2].filter((q) => q > start).map(msg), noSeq]));
    const r = run(source);
    await vi.waitFor(() => { expect(reads()).toBeGreaterThanOrEqual(8); }, WAIT);
    await r.stop();
    expect(msgIds(r.pages).sort()).toEqual(['m1', 'm2', 'no-seq']);
    expect(r.cursors.get('2:c')).toBe('2');
  });

  it('hands on a message the provider lists late, below messages already read, once', async () => {
    // Seq 3 becomes visible only after seq 4 was read.
    let visible = [1, 2, 4];
    const { source, reads } = await scripted((start) => list(visible.filter((q) => q > start).map(msg)));
    const r = run(source);
    await vi.waitFor(() => { expect(r.cursors.get('2:c')).toBe('4'); }, WAIT);
    visible = [1, 2, 3, 4];
    await vi.waitFor(() => { expect(msgIds(r.pages)).toContain('m3'); }, WAIT);
    const readsThen = reads();
    await vi.waitFor(() => { expect(reads()).toBeGreaterThanOrEqual(readsThen + 4); }, WAIT);
    await r.stop();
    expect(msgIds(r.pages).sort()).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(r.cursors.get('2:c')).toBe('4');
  });

  const edited = (seq: number, editTime: string): Uint8Array =>
    encodeYunhu('Msg', { msg_id: `m${String(seq)}`, msg_seq: String(seq), send_time: '1731059400000', edit_time: editTime, content_type: 1, content: { text: `t${String(seq)}` } });

  it('reads an edit history to its total when the server answers fewer entries per page than asked for', async () => {
    const versions = Array.from({ length: 25 }, (_v, i) => ({ id: 1000 + i, msgId: 'm1', contentType: 1, contentOld: JSON.stringify({ text: `v${String(i)}` }), createTime: 1731059400000, msgTime: 1731059500000 + i }));
    const asked: string[] = [];
    const { source } = await scripted(
      (start) => list(start < 1 ? [edited(1, '1731059999000')] : []),
      ({ size, page }) => {
        asked.push(`${String(size)}/${String(page)}`);
        // A server that gives 10 at most, whatever the size.
        return { code: 1, data: { list: versions.slice((page - 1) * 10, page * 10), total: versions.length }, msg: 'success' };
      },
    );
    const r = run(source);
    await vi.waitFor(() => { expect(r.pages.flatMap((p) => p.records).filter((x) => x.bytes[0] === 0x7b)).toHaveLength(25); }, WAIT);
    await r.stop();
    expect(asked).toEqual(['50/1', '50/2', '50/3']);
  });

  it('never hands on a page with a cursor older than one it handed on before', async () => {
    // Seq 2 is edited and its history fails at first; seq 11 arrives between a round's read from
    // the cursor and its re-read, which hands it on; the history is then asked for on its own.
    let historyAnswers = false;
    let arrived = false;
    const { source } = await scripted(
      (start) => {
        const seqs = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ...(arrived ? [11] : [])];
        if (historyAnswers && start === 10) arrived = true;
        return list(seqs.filter((q) => q > start).map((q) => (q === 2 ? edited(2, '1731059500000') : msg(q))));
      },
      () => (historyAnswers
        ? { code: 1, data: { list: [{ id: 1, msgId: 'm2', contentType: 1, contentOld: '{"text":"old"}', createTime: 1731059400000, msgTime: 1731059500000 }], total: 1 }, msg: 'success' }
        : { code: -1, msg: 'busy' }),
      { rereadWindow: 3 },
    );
    const r = run(source);
    await vi.waitFor(() => { expect(r.cursors.get('2:c')).toBe('10'); }, WAIT);
    historyAnswers = true;
    await vi.waitFor(() => { expect(r.pages.flatMap((p) => p.records).some((x) => x.bytes[0] === 0x7b)).toBe(true); }, WAIT);
    await r.stop();
    expect(msgIds(r.pages)).toContain('m11');
    const after = r.pages.map((p) => Number(p.cursorAfter));
    expect(after).toEqual([...after].sort((x, y) => x - y));
    expect(r.cursors.get('2:c')).toBe('11');
  });
});
