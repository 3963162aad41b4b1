/**
 * Transform worker threads: a page transformed in a thread reaches the sink exactly as one
 * transformed in the main thread (rows, lines, dead letters with their original bytes), pages
 * spread over threads keep their own answers, and a failing thread fails its pages clearly.
 */
import { availableParallelism } from 'node:os';

import { afterEach, describe, expect, it } from 'vitest';

import pino from 'pino';

import { MsgpipeError } from '../../../src/core/errors.ts';
import { countsOf, type CursorUpdate, transformPage } from '../../../src/core/pipeline.ts';
import type { Origin, RawRecord } from '../../../src/core/types.ts';
import type { SourcePage } from '../../../src/ingest/source.ts';
import { encodeYunhu } from '../../../src/ingest/yunhu-proto.ts';
import { EncodedUnit } from '../../../src/sink/writer.ts';
import { DEFAULT_MIX, MessageStream, serializeItem } from '../../../src/simulate/index.ts';
import { transformForSource } from '../../../src/transform/registry.ts';
import { availableCores, defaultTransformWorkers, TransformThreads } from '../../../src/transform/threads.ts';

const NOW = 1_767_225_600_000;
const log = pino({ level: 'silent' });

const FINDER: Origin = { source: 'g1', sourceType: 'gewe', tenant: 'corp1', staffId: 'wx_g1' };
const YUNHU: Origin = { source: 'yh1', sourceType: 'yunhu', tenant: 'corp1', staffId: '7311890' };

/** A page as the finder source cuts it: every record a view into one body buffer. */
function finderPage(seed: number, messages: number, extra: readonly Buffer[] = []): SourcePage {
  const stream = new MessageStream({ provider: 'gewe', seed, messages, sessions: 4, startTime: 1_730_419_200, secondsPerMessage: 20, mix: DEFAULT_MIX });
  const items = Array.from({ length: messages }, (_v, i) => Buffer.from(serializeItem(stream.messageAt(i), { provider: 'gewe', booleanIsSender: false }), 'utf8'));
  const parts = [...items, ...extra];
  const body = Buffer.concat(parts);
  let at = 0;
  const cursor = `kb-${String(seed)}`;
  const records = parts.map((part, index): RawRecord => {
    const bytes = body.subarray(at, at + part.length);
    at += part.length;
    return { origin: FINDER, bytes, fetchedAt: NOW - 5, cursor, index };
  });
  return { origin: FINDER, stream: 'wx_g1', cursorBefore: cursor, cursorAfter: `${cursor}+`, records, deadLetters: [] };
}

function cursorOf(page: SourcePage): CursorUpdate {
  return { source: page.origin.source, stream: page.stream, cursor: page.cursorAfter };
}

/** The unit the main thread makes of a page (transform, then encoding on arrival at the sink). */
function inThread(page: SourcePage): EncodedUnit {
  const transform = transformForSource(page.origin.sourceType);
  if (transform === undefined) throw new Error('no transform');
  return EncodedUnit.of({ output: transformPage(page, transform, NOW), cursor: cursorOf(page) });
}

/** Everything of a unit, the lines as text, for a deep comparison. */
function plain(unit: EncodedUnit): unknown {
  return {
    messages: unit.messages.map(({ line, ...id }) => ({ ...id, line: line.toString('utf8') })),
    refused: unit.refused,
    events: unit.events,
    deadLetters: unit.deadLetters,
    recalls: unit.recalls,
    edits: unit.edits,
    editHistory: unit.editHistory,
    cursor: unit.cursor,
    rows: unit.rows,
    bytes: unit.bytes,
  };
}

const BAD_JSON = Buffer.from('{"NewMsgId": 3876235366388279544, "MsgType": ', 'utf8');
const BAD_UTF8 = Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0xff, 0x22, 0x7d]);
/** A finder item whose extinfo nests 8 000 deep: past the main thread's stack for JSON.stringify, not a worker's. */
function deepExtinfo(): Buffer {
  const stream = new MessageStream({ provider: 'gewe', seed: 3, messages: 1, sessions: 1, startTime: 1_730_419_200, secondsPerMessage: 20, mix: DEFAULT_MIX });
  const item = serializeItem(stream.messageAt(0), {
    provider: 'gewe',
    booleanIsSender: false,
  });
  const parsed = JSON.parse(item) as { content: Record<string, unknown> };
  parsed.content['extinfo'] = '@';
  return Buffer.from(JSON.stringify(parsed).replace('"extinfo":"@"', `"extinfo":${'['.repeat(8_000)}${']'.repeat(8_000)}`), 'utf8');
}
const LAUGHS = Buffer.from(
  '{"NewMsgId":1767797523284146072,"MsgType":49,"FromUserName":{"string":"peer@finder"},"ToUserName":{"string":"me@finder"},' +
    '"CreateTime":1730419300,"Content":{"string":"<!DOCTYPE l [<!ENTITY a \\"aaaaaaaaaa\\"><!ENTITY b \\"&a;&a;&a;&a;&a;&a;\\">]>' +
    '<msg><appmsg><title>&b;</title></appmsg></msg>"}}',
  'utf8',
);

let threads: TransformThreads | undefined;
afterEach(async () => {
  await threads?.close();
  threads = undefined;
});

describe('TransformThreads', () => {
  it('gives the sink exactly the unit the main thread makes, dead letters with their original bytes included', async () => {
    threads = new TransformThreads(1, log);
    const deep = deepExtinfo();
    const page = finderPage(11, 120, [BAD_JSON, BAD_UTF8, LAUGHS, deep]);
    const expected = inThread(page);
    const got = await threads.transform(page, cursorOf(page), NOW);
    expect(plain(got.unit)).toEqual(plain(expected));
    expect(got.counts).toEqual(countsOf(transformPage(page, transformForSource('gewe')!, NOW)));
    expect(got.ms).toBeGreaterThan(0);
    // The poison became four dead letters holding exactly the bytes that came in.
    const originals = got.unit.deadLetters.map((d) => Buffer.from(d.original_base64, 'base64'));
    expect(originals).toEqual([BAD_JSON, BAD_UTF8, LAUGHS, deep]);
    expect(got.unit.deadLetters[3]?.error_message).toBe('content.extinfo: nested deeper than 64 levels');
    // 64-bit ids cross the thread boundary digit for digit.
    expect(got.unit.messages.length).toBeGreaterThan(100);
    for (const m of got.unit.messages) expect(m.line.toString('utf8')).toContain(JSON.stringify(m.msgid));
  });

  it('transforms Yunhu protobuf records in a thread too', async () => {
    threads = new TransformThreads(1, log);
    const bytes = encodeYunhu('Msg', {
      msg_id: '8f3c2a9e4b1d47c6a0e5f2d9c8b7a613',
      sender: { chat_id: '7356214', chat_type: 1, name: '小林🌙' },
      direction: 'left',
      content_type: 1,
      content: { text: '明天的活动几点开始？' },
      send_time: '1731059312457',
      msg_seq: '18446744073709551615',
    });
    const page: SourcePage = {
      origin: YUNHU,
      stream: '1:7356214',
      cursorBefore: '1:7356214@1820',
      cursorAfter: '1:7356214@1821',
      records: [{ origin: YUNHU, bytes, fetchedAt: NOW, cursor: '1:7356214@1820', index: 0 }],
      deadLetters: [],
    };
    const got = await threads.transform(page, cursorOf(page), NOW);
    expect(plain(got.unit)).toEqual(plain(inThread(page)));
    expect(got.unit.messages).toHaveLength(1);
    expect(got.unit.messages[0]!.line.toString('utf8')).toContain('18446744073709551615');
  });

  it('answers each page with its own unit when many are spread over two threads', async () => {
    threads = new TransformThreads(2, log);
    const pages = Array.from({ length: 12 }, (_v, i) => finderPage(100 + i, 30 + i));
    const pool = threads;
    const results = await Promise.all(pages.map(async (page) => pool.transform(page, cursorOf(page), NOW)));
    results.forEach((got, i) => {
      expect(plain(got.unit)).toEqual(plain(inThread(pages[i]!)));
    });
    expect(pool.waiting).toBe(0);
  });

  it('keeps the page-level dead letters of the source in the unit', async () => {
    threads = new TransformThreads(1, log);
    const page = finderPage(7, 3);
    const letter = {
      tenant: 'corp1',
      source: 'g1',
      source_type: 'gewe' as const,
      stage: 'ingest' as const,
      error_code: 'MSGPIPE_ERR_PAGE_MALFORMED',
      error_message: 'Provider page is not JSON.',
      original_base64: Buffer.from('{"data":', 'utf8').toString('base64'),
      origin_key: 'g1:page',
      occurred_at: NOW,
    };
    const withLetter: SourcePage = { ...page, deadLetters: [letter] };
    const got = await threads.transform(withLetter, cursorOf(page), NOW);
    expect(got.unit.deadLetters).toEqual([letter]);
    expect(got.counts.deadLetters).toBe(1);
  });

  it('rejects a page its thread cannot transform with MSGPIPE_ERR_TRANSFORM_THREAD and goes on with the next', async () => {
    threads = new TransformThreads(1, log);
    const wecom: Origin = { source: 'w1', sourceType: 'wecom', tenant: 'corp1', staffId: 's' };
    const page = finderPage(3, 5);
    const orphan: SourcePage = { ...page, origin: wecom, records: page.records.map((r) => ({ ...r, origin: wecom })) };
    const err: unknown = await threads.transform(orphan, cursorOf(page), NOW).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MsgpipeError);
    expect((err as MsgpipeError).code).toBe('MSGPIPE_ERR_TRANSFORM_THREAD');
    expect((err as MsgpipeError).message).toContain('wecom');
    const next = await threads.transform(page, cursorOf(page), NOW);
    expect(next.unit.messages).toHaveLength(inThread(page).messages.length);
  });

  it('fails the page in a thread that dies, and every later page, with MSGPIPE_ERR_TRANSFORM_THREAD', async () => {
    // A thread whose heap is far too small for the page runs out of memory and is gone.
    threads = new TransformThreads(1, log, { resourceLimits: { maxOldGenerationSizeMb: 4, maxYoungGenerationSizeMb: 1 } });
    const page = finderPage(5, 4000);
    const err: unknown = await threads.transform(page, cursorOf(page), NOW).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MsgpipeError);
    expect((err as MsgpipeError).code).toBe('MSGPIPE_ERR_TRANSFORM_THREAD');
    expect((err as MsgpipeError).message).toMatch(/Transform thread 0 (crashed|exited)/);
    const later: unknown = await threads.transform(finderPage(6, 1), cursorOf(page), NOW).catch((e: unknown) => e);
    expect((later as MsgpipeError).code).toBe('MSGPIPE_ERR_TRANSFORM_THREAD');
    // The pipeline hears of it without a page: `failed` rejects with the same error.
    await expect(threads.failed).rejects.toBe(err);
  });

  it('rejects a page still in a thread when the threads close, and any page after', async () => {
    threads = new TransformThreads(1, log);
    const page = finderPage(9, 2000);
    const pending = threads.transform(page, cursorOf(page), NOW).catch((e: unknown) => e);
    await threads.close();
    const err = await pending;
    expect((err as MsgpipeError).code).toBe('MSGPIPE_ERR_TRANSFORM_THREAD');
    const after: unknown = await threads.transform(page, cursorOf(page), NOW).catch((e: unknown) => e);
    expect((after as MsgpipeError).code).toBe('MSGPIPE_ERR_TRANSFORM_THREAD');
  });

  it('refuses a thread count that is not a positive integer', () => {
    expect(() => new TransformThreads(0, log)).toThrow(RangeError);
    expect(() => new TransformThreads(1.5, log)).toThrow(RangeError);
  });

  it('defaults to one thread only when the machine has more than two cores', () => {
    expect([1, 2, 3, 4, 64].map((cores) => defaultTransformWorkers(cores))).toEqual([0, 0, 1, 1, 1]);
  });

  it('counts no more cores than a cgroup CPU quota allows', () => {
    const cpus = availableParallelism();
    expect(availableCores(undefined)).toBe(cpus);
    expect(availableCores('max 100000\n')).toBe(cpus);
    expect(availableCores('100000 100000\n')).toBe(1);
    expect(availableCores('250000 100000\n')).toBe(Math.min(cpus, 2));
    expect(availableCores('50000 100000\n')).toBe(1);
    expect(availableCores('garbage')).toBe(cpus);
  });
});
