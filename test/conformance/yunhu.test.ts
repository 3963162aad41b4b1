/**
 * The Yunhu transform runs the transform conformance suite. Samples: every message of a
 * simulated account (every content type, edits, recalls) as the simulator encodes them, edit
 * history entries, and damaged messages.
 */
import type { Origin, RawRecord, TransformOutput } from '../../src/core/types.ts';
import { decodeYunhu, encodeYunhu } from '../../src/ingest/yunhu-proto.ts';
import { YunhuSimAccount } from '../../src/simulate/yunhu-state.ts';
import { transformYunhuRecord } from '../../src/transform/yunhu.ts';
import { transformConformance } from './transform-suite.ts';

const ORIGIN: Origin = { source: 'conf-yunhu', sourceType: 'yunhu', tenant: 'corp-conformance', staffId: '7311890' };

function samples(): RawRecord[] {
  const account = new YunhuSimAccount({
    id: 'conf',
    token: 't',
    userId: '7311890',
    startTime: 1_730_419_200_000,
    chats: [
      { chatId: '51309476', chatType: 2, messages: 60 },
      { chatId: '7356214', chatType: 1, messages: 30 },
      { chatId: '82041957', chatType: 3, messages: 12 },
    ],
  });
  const out: RawRecord[] = [];
  for (const chat of account.chats.values()) {
    const own = chat.messages.filter((m) => m.contentType === 1 || m.contentType === 3).slice(0, 4);
    for (const m of own.slice(0, 2)) {
      account.edit(chat, m.msgId, 1, { text: `${String(m.content['text'])} (edited)` }, m.sendTime + 5000);
      account.edit(chat, m.msgId, 3, { text: `**${String(m.content['text'])}**` }, m.sendTime + 9000);
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
      const cursor = `${chat.chatType}:${chat.chatId}@${m.seq - 1}`;
      out.push({ origin: ORIGIN, bytes, fetchedAt: 0, cursor, index: 0 });
      m.edits.forEach((e, i) => {
        out.push({ origin: ORIGIN, bytes: Buffer.from(JSON.stringify(e)), fetchedAt: 0, cursor, index: i + 1 });
      });
    }
  }
  // Damaged: a content field running past the end, a wrong wire type, an empty message.
  const good = out[0]!;
  out.push({ ...good, bytes: Buffer.concat([Buffer.from(good.bytes), Buffer.from([0x2a, 0x40, 0x0a])]), index: 90 });
  out.push({ ...good, bytes: Buffer.from([0x0f, 0x01, 0x02]), index: 91 });
  out.push({ ...good, bytes: new Uint8Array(0), index: 92 });
  return out;
}

transformConformance('transformYunhuRecord', transformYunhuRecord, samples(), {
  // Client-made ids: any text without control characters, up to 128 characters.
  msgidPattern: /^\P{Cc}{1,128}$/u,
  exact: {
    // msg_seq is the 64-bit field taken from the input: re-encode the message with another one.
    rewrite: (record, value) => {
      if (record.bytes[0] === 0x7b || record.bytes.length === 0) return undefined;
      let msg: Record<string, unknown>;
      try {
        msg = decodeYunhu('Msg', record.bytes);
      } catch {
        return undefined;
      }
      if (msg['msg_id'] === '') return undefined;
      return { ...record, bytes: encodeYunhu('Msg', { ...msg, msg_seq: value.toString() }) };
    },
    read: (out: TransformOutput) => out.messages[0]?.seq,
  },
});
