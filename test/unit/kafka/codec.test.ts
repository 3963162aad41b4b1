import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import type { EditMark, MessageEditRow, Origin, RawRecord, TransformOutput } from '../../../src/core/types.ts';
import { encodeYunhu } from '../../../src/ingest/yunhu-proto.ts';
import {
  decodeCursor,
  decodeDeadLetter,
  decodeEvent,
  decodeMessage,
  decodeMessageRecord,
  decodeSyncRequest,
  encodeCursor,
  encodeDeadLetter,
  encodeEditCarrier,
  encodeEvent,
  encodeMessage,
  encodeSyncRequest,
} from '../../../src/kafka/codec.ts';
import type { PartitionBatch } from '../../../src/kafka/consume.ts';
import { rawMessages } from '../../../src/kafka/ingest.ts';
import { decodeBatch } from '../../../src/kafka/sink.ts';
import { rawSession, sessionKey, topicNames } from '../../../src/kafka/topics.ts';
import { outputMessages, transformRawMessage } from '../../../src/kafka/transform.ts';
import { YunhuSimAccount } from '../../../src/simulate/yunhu-state.ts';
import { sessionOfItemWithoutSession, transformFinderItem } from '../../../src/transform/finder.ts';
import { transformForSource } from '../../../src/transform/registry.ts';
import { transformYunhuRecord } from '../../../src/transform/yunhu.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures');

function outputs(file: string): TransformOutput[] {
  const parsed = JSON.parse(readFileSync(join(FIXTURES, file), 'utf8')) as TransformOutput | TransformOutput[];
  return Array.isArray(parsed) ? parsed : [parsed];
}

const ALL = [
  'seeds/gewe-page.rows.json',
  'revoke/revoke.rows.json',
  'text/max-uint64.rows.json',
  'text/negative-newmsgid.rows.json',
  'functionmsg/live-tips.rows.json',
  'malformed/invalid-utf8.rows.json',
  'malformed/not-json.rows.json',
].flatMap(outputs);

describe('codec', () => {
  it('round-trips every message row field exactly, 64-bit ids and recalls included', () => {
    const messages = ALL.flatMap((o) => o.messages.map((m) => ({ m, recalls: o.recalls })));
    expect(messages.length).toBeGreaterThan(3);
    for (const { m, recalls } of messages) {
      const back = decodeMessage(encodeMessage(m, recalls));
      expect(back.row).toStrictEqual(m);
      expect(back.recalls).toStrictEqual(recalls);
    }
    expect(messages.some((x) => x.recalls.length > 0)).toBe(true);
    const max = decodeMessage(encodeMessage({ ...messages[0]!.m, msgid: '18446744073709551615', seq: '18446744073709551615' }));
    expect(max.row.msgid).toBe('18446744073709551615');
    expect(max.row.seq).toBe('18446744073709551615');
  });

  it('round-trips events and dead letters, the original bytes exactly', () => {
    const events = ALL.flatMap((o) => o.events);
    const letters = ALL.flatMap((o) => o.deadLetters);
    expect(events.length).toBeGreaterThan(0);
    expect(letters.length).toBeGreaterThan(1);
    for (const e of events) expect(decodeEvent(encodeEvent(e))).toStrictEqual(e);
    for (const d of letters) expect(decodeDeadLetter(encodeDeadLetter(d))).toStrictEqual(d);
    // Invalid UTF-8 survives as bytes, not as replacement characters.
    const bytes = Buffer.from([0xff, 0xfe, 0x00, 0x41]);
    const d = { ...letters[0]!, original_base64: bytes.toString('base64') };
    expect(Buffer.from(decodeDeadLetter(encodeDeadLetter(d)).original_base64, 'base64')).toEqual(bytes);
  });

  it('round-trips cursors and sync requests', () => {
    const cursor = { source: 'g1', stream: 'wx_app', cursor: 'a\u0000b==', committed_at: 1_767_225_600_123 };
    expect(decodeCursor(encodeCursor(cursor))).toStrictEqual(cursor);
    const sync = { tenant: 'corp1', requested_at: 1_767_225_600_000 };
    expect(decodeSyncRequest(encodeSyncRequest(sync))).toStrictEqual(sync);
  });

  it('throws on bytes that are not a protobuf message', () => {
    expect(() => decodeMessage(Buffer.from('{"not":"protobuf"}'))).toThrow();
    expect(() => decodeDeadLetter(Buffer.from([0xff, 0xff, 0xff]))).toThrow();
  });
});

/** Transform outputs of a simulated Yunhu account whose messages were edited (twice) and recalled. */
function yunhuOutputs(): TransformOutput[] {
  const origin: Origin = { source: 'codec-yunhu', sourceType: 'yunhu', tenant: 'corp-codec', staffId: '7311890' };
  const account = new YunhuSimAccount({
    id: 'codec',
    token: 't',
    userId: '7311890',
    startTime: 1_730_419_200_000,
    chats: [
      { chatId: '51309476', chatType: 2, messages: 20 },
      { chatId: '7356214', chatType: 1, messages: 10 },
    ],
  });
  const records: RawRecord[] = [];
  for (const chat of account.chats.values()) {
    const own = chat.messages.filter((m) => m.contentType === 1 || m.contentType === 3).slice(0, 3);
    for (const m of own.slice(0, 2)) {
      account.edit(chat, m.msgId, 1, { text: `${String(m.content['text'])} (edited)` }, m.sendTime + 5000);
      account.edit(chat, m.msgId, 3, { text: `**${String(m.content['text'])}** 改` }, m.sendTime + 9000);
    }
    for (const m of own.slice(2)) account.recall(chat, m.msgId, m.sendTime + 7000);
    for (const m of chat.messages) {
      const bytes = encodeYunhu('Msg', {
        msg_id: m.msgId,
        sender: m.sender,
        direction: m.sender.chat_id === '7311890' ? 'right' : 'left',
        content_type: m.contentType,
        content: m.content,
        send_time: String(m.sendTime),
        recall_time: String(m.recallTime),
        quote_msg_id: m.quoteMsgId,
        msg_seq: String(m.seq),
        edit_time: String(m.editTime),
      });
      const cursor = `${String(chat.chatType)}:${chat.chatId}@${String(m.seq - 1)}`;
      records.push({ origin, bytes, fetchedAt: 0, cursor, index: 0 });
      m.edits.forEach((e, i) => {
        records.push({ origin, bytes: Buffer.from(JSON.stringify(e)), fetchedAt: 0, cursor, index: i + 1 });
      });
    }
  }
  return records.map((r) => transformYunhuRecord(r, 1_767_225_600_000));
}

describe('codec: yunhu edits and edit history', () => {
  const outs = yunhuOutputs();
  const edits = outs.flatMap((o) => o.edits ?? []);
  const history = outs.flatMap((o) => o.editHistory ?? []);

  it('round-trips edit marks and history rows on a message and on a carrier', () => {
    expect(edits.length).toBeGreaterThanOrEqual(4);
    expect(history.length).toBeGreaterThanOrEqual(8);
    expect(edits.some((e) => e.content.includes('改'))).toBe(true);
    for (const o of outs) {
      for (const m of o.messages) {
        const back = decodeMessage(encodeMessage(m, o.recalls, o.edits ?? [], o.editHistory ?? []));
        expect(back.row).toStrictEqual(m);
        expect(back.recalls).toStrictEqual(o.recalls);
        expect(back.edits).toStrictEqual(o.edits ?? []);
        expect(back.editHistory).toStrictEqual(o.editHistory ?? []);
        expect(decodeMessageRecord(encodeMessage(m, o.recalls, o.edits ?? [])).row).toStrictEqual(m);
      }
    }
    const h = history[0]!;
    const carrier = decodeMessageRecord(encodeEditCarrier(h, edits, history));
    expect(carrier.row).toBeUndefined();
    expect(carrier.editHistory).toStrictEqual(history);
    // A carrier's marks take tenant and staff from the carrier, as a message's marks from the row.
    expect(carrier.edits).toStrictEqual(edits.map((e): EditMark => ({ ...e, tenant: h.tenant, staff_id: h.staff_id })));
    // 64-bit edit ids and times survive exactly.
    const big: MessageEditRow = { ...h, edit_id: '18446744073709551615', edit_time: 8_640_000_000_000_000 - 1 };
    expect(decodeMessageRecord(encodeEditCarrier(h, [], [big])).editHistory).toStrictEqual([big]);
    // A message without edits is still a row, and an empty record is an empty row, not a carrier.
    expect(decodeMessageRecord(new Uint8Array(0)).row?.msgid).toBe('');
  });

  it('carries every mark and history row from transform to sink in its session key', () => {
    const topics = topicNames('codec');
    const records = outs.flatMap((o) => outputMessages(topics, o)).filter((t) => t.topic === topics.messages).flatMap((t) => t.messages);
    let offset = 0;
    const batch: PartitionBatch = {
      topic: topics.messages,
      partition: 0,
      messages: records.map((r) => ({
        key: Buffer.from(r.key as string),
        value: r.value as Buffer,
        offset: String(offset++),
        timestamp: '0',
        attributes: 0,
        headers: {},
      })),
      firstOffset: '0',
      lastOffset: String(offset - 1),
      heartbeat: () => Promise.resolve(),
      signal: new AbortController().signal,
    };
    const sunk = decodeBatch(topics, batch, 0);
    expect(sunk.deadLetters).toStrictEqual([]);
    expect(sunk.messages).toStrictEqual(outs.flatMap((o) => o.messages));
    expect(sunk.recalls).toStrictEqual(outs.flatMap((o) => o.recalls));
    expect(sunk.edits).toStrictEqual(edits);
    expect(sunk.editHistory).toStrictEqual(history);
    // History records are keyed by the session of the message they are a version of.
    const keyOf = new Map(outs.flatMap((o) => o.messages).map((m) => [m.msgid, sessionKey(m)]));
    for (const r of batch.messages) {
      for (const row of decodeMessageRecord(r.value!).editHistory) expect(r.key?.toString()).toBe(keyOf.get(row.msgid));
    }
  });
});

describe('rawSession', () => {
  it('reads the top-level msgSessionId and ignores one inside escaped content', () => {
    const item = '{"content":"{\\"msgSessionId\\":\\"fake\\"}","msgSessionId":"abc@findermsg","x":1}';
    expect(rawSession(Buffer.from(item))).toBe('abc@findermsg');
    expect(rawSession(Buffer.from('not json'))).toBe('');
  });

  it('reads the session as the transform does: UTF-8, with JSON escapes undone', () => {
    const sessions = ['sé@findermsg', '会话😀@findermsg', 'a/b@c', 'tab\there "quoted"', ''];
    for (const session of sessions) {
      const item = Buffer.from(JSON.stringify({ content: '{}', msgSessionId: session, x: 1 }), 'utf8');
      expect(rawSession(item)).toBe((JSON.parse(item.toString('utf8')) as { msgSessionId: string }).msgSessionId);
    }
    // Escapes a provider may write where JSON.stringify would not.
    expect(rawSession(Buffer.from('{"msgSessionId":"a\\/b\\u0040c\\u4f1a"}'))).toBe('a/b@c会');
    // Not a JSON string: no session rather than a wrong one.
    expect(rawSession(Buffer.from('{"msgSessionId":"bad\\qescape"}'))).toBe('');
  });
});

describe('the raw key of a finder item', () => {
  /** Every golden item, as the bytes a provider sends (the editor's final newline dropped). */
  function goldenItems(): { name: string; bytes: Uint8Array }[] {
    const items: { name: string; bytes: Uint8Array }[] = [];
    for (const kind of readdirSync(FIXTURES, { withFileTypes: true })) {
      if (!kind.isDirectory() || kind.name === 'seeds' || kind.name === 'simulate') continue;
      for (const f of readdirSync(join(FIXTURES, kind.name))) {
        if (!f.endsWith('.json') || f.endsWith('.rows.json')) continue;
        const buf = readFileSync(join(FIXTURES, kind.name, f));
        let end = buf.length;
        while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d)) end--;
        items.push({ name: `${kind.name}/${f}`, bytes: new Uint8Array(buf.subarray(0, end)) });
      }
    }
    return items;
  }

  it("is the session of the item's rows, so a session's records share a raw partition and keep their order", () => {
    const origin: Origin = { source: 'gw', sourceType: 'gewe', tenant: 'corp123', staffId: 'staff-a' };
    const items = goldenItems();
    expect(items.length).toBeGreaterThan(50);
    const keys = new Map<string, string>();
    for (const { name, bytes } of items) {
      const record: RawRecord = { origin, bytes, fetchedAt: 1, cursor: 'kb', index: 0 };
      const page = { origin, stream: 'a', cursorBefore: '', cursorAfter: 'kb', records: [record], deadLetters: [] };
      const key = rawMessages(page, 'wx-1')[0]?.key;
      keys.set(name, String(key));
      const out = transformFinderItem(record, 1);
      for (const row of [...out.messages, ...out.events]) expect(`${name} ${String(key)}`).toBe(`${name} gw:${row.session_id}`);
      for (const mark of out.recalls) expect(`${name} ${String(key)}`).toBe(`${name} gw:${mark.session_id}`);
    }
    // The revoke without msgSessionId goes with the conversation it names.
    expect(keys.get('revoke/revoke-no-session.json')).toBe(keys.get('revoke/revoke.json'));
    expect(keys.get('revoke/revoke.json')).not.toBe('gw:');
    // An item that does not parse has no session: its dead letter is keyed by its origin.
    expect(sessionOfItemWithoutSession(Buffer.from('{"content":{"msgSessionId":""'))).toBe('');
    expect(sessionOfItemWithoutSession(Uint8Array.from([0xff, 0xfe]))).toBe('');
  });
});

describe('the raw record of a Yunhu page', () => {
  it('carries the account, so the transform on the Kafka path names the same receiver as the embedded one', () => {
    const origin: Origin = { source: 'yh1', sourceType: 'yunhu', tenant: 'corp1', staffId: 'staff-a', account: '7311890' };
    const bytes = encodeYunhu('Msg', { msg_id: 'a1', sender: { chat_id: '7356214', chat_type: 1, name: 'x' }, direction: 'left', content_type: 1, content: { text: 'hi' }, send_time: '1731059377012', msg_seq: '3' });
    const record: RawRecord = { origin, bytes, fetchedAt: 1, cursor: '1:7356214@2', index: 0, session: '7356214' };
    const page = { origin, stream: '1:7356214', cursorBefore: '2', cursorAfter: '3', records: [record], deadLetters: [] };
    const [raw] = rawMessages(page, '7311890');
    const message = { ...raw!, key: Buffer.from(String(raw!.key)), offset: '0', timestamp: '0', attributes: 0 } as unknown as PartitionBatch['messages'][number];
    const viaKafka = transformRawMessage('yunhu', transformForSource('yunhu')!, 'p.raw.yunhu', 0, message, 5);
    const embedded = transformYunhuRecord(record, 5);
    expect(viaKafka.messages[0]).toMatchObject({ staff_id: 'staff-a', tolist: ['7311890'] });
    expect(viaKafka.messages).toStrictEqual(embedded.messages);
  });
});
