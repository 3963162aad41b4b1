/** The Yunhu wire format on bytes encoded with the real protos, then damaged the way a server can. */
import { describe, expect, it } from 'vitest';

import { decodeYunhu, encodeYunhu, readConversationList } from '../../../src/ingest/yunhu-proto.ts';

/**
 * Replaces the last byte of `text`'s UTF-8 in `bytes` (same length, so every length prefix stays
 * right): 云 (e4 ba 91) followed by `!` becomes e4 ba 21, a character clipped after two bytes.
 */
function clipLastChar(bytes: Uint8Array, text: string): Buffer {
  const out = Buffer.from(bytes);
  const at = out.indexOf(Buffer.from(text));
  expect(at).toBeGreaterThanOrEqual(0);
  out[at + Buffer.byteLength(text) - 1] = 0x21;
  return out;
}

describe('yunhu protobuf strings', () => {
  it('reads a string with invalid UTF-8 with U+FFFD in place of the broken sequence, keeping the other fields', () => {
    const bytes = encodeYunhu('Msg', {
      msg_id: 'c1',
      sender: { chat_id: '7356214', chat_type: 1, name: '小林云' },
      content_type: 1,
      content: { text: '明天见' },
      send_time: '1731059312457',
      msg_seq: '18446744073709551615',
    });
    const msg = decodeYunhu('Msg', clipLastChar(bytes, '小林云'));
    expect(msg['msg_id']).toBe('c1');
    expect(msg['msg_seq']).toBe('18446744073709551615');
    expect((msg['sender'] as Record<string, unknown>)['name']).toBe('小林\ufffd!');
    expect((msg['content'] as Record<string, unknown>)['text']).toBe('明天见');
  });

  it('reads a conversation list in which one chat name is clipped inside a character', () => {
    const body = encodeYunhu('ConversationListResponse', {
      status: { request_id: '1', code: 1, msg: 'success' },
      data: [
        { chat_id: '51309476', chat_type: 2, name: '周末徒步群云' },
        { chat_id: '7356214', chat_type: 1, name: '小林' },
      ],
      md5: 'abc',
    });
    const list = readConversationList(clipLastChar(body, '周末徒步群云'));
    expect(list.chats).toEqual([
      { chatId: '51309476', chatType: 2, name: '周末徒步群\ufffd!' },
      { chatId: '7356214', chatType: 1, name: '小林' },
    ]);
  });
});
