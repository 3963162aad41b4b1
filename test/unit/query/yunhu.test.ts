/**
 * Yunhu messages through the query API: encoded with the real protos, transformed by the real
 * transform, stored by the real SinkWriter in chDB, read back through fastify.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { MessageRow, Origin } from '../../../src/core/types.ts';
import { encodeYunhu } from '../../../src/ingest/yunhu-proto.ts';
import { transformYunhuRecord } from '../../../src/transform/yunhu.ts';
import { type Fixture, get, openFixture, SECRET_A, signedQuery } from './helpers.ts';

const ORIGIN: Origin = { source: 'yh1', sourceType: 'yunhu', tenant: 'corp123', staffId: '7311890' };
const GROUP = '51309476';
const MSGS = '/api/v1/chat-msg/session-msgs';
const SEARCH = '/api/v1/chat-msg/search';

const XIAOLIN = { chat_id: '7356214', chat_type: 1, name: '小林🌙', avatar_url: 'https://chat-img.jwznb.com/xiaolin.jpg' };
const AJIE = { chat_id: '7356990', chat_type: 1, name: '阿杰', avatar_url: 'https://chat-img.jwznb.com/ajie.jpg' };
const ME = { chat_id: '7311890', chat_type: 1, name: '阿明', avatar_url: 'https://chat-img.jwznb.com/me.jpg' };

let seq = 1820;
function row(cursorChat: string, msg: Record<string, unknown>): MessageRow {
  seq++;
  const bytes = encodeYunhu('Msg', { send_time: String(1_731_059_312_457 + seq * 1000), msg_seq: String(seq), ...msg });
  const out = transformYunhuRecord({ origin: ORIGIN, bytes, fetchedAt: 0, cursor: `${cursorChat}@${seq - 1}`, index: 0 }, 1_767_225_600_000);
  expect(out.deadLetters).toEqual([]);
  return out.messages[0]!;
}

const rows: MessageRow[] = [
  row(`2:${GROUP}`, { msg_id: 'g-text', sender: XIAOLIN, direction: 'left', content_type: 1, content: { text: '周六的报价单发一下' } }),
  row(`2:${GROUP}`, {
    msg_id: 'g-file',
    sender: AJIE,
    direction: 'left',
    content_type: 4,
    content: { file_name: '报价单-2024Q3.xlsx', file_url: 'https://chat-file.jwznb.com/a.xlsx', file_size: '482113' },
  }),
  row(`2:${GROUP}`, { msg_id: 'g-voice', sender: XIAOLIN, direction: 'left', content_type: 11, content: { audio_url: 'https://chat-file.jwznb.com/v.m4a', audio_time: '7' } }),
  row(`2:${GROUP}`, { msg_id: 'g-image', sender: AJIE, direction: 'left', content_type: 2, content: { image_url: 'https://chat-img.jwznb.com/i.jpg', file_size: '90210' } }),
  row(`2:${GROUP}`, { msg_id: 'g-mine', sender: ME, direction: 'right', content_type: 1, content: { text: '收到，报价单我看看' } }),
  row('1:7356214', { msg_id: 'p-text', sender: XIAOLIN, direction: 'left', content_type: 1, content: { text: '私聊一下报价单' } }),
];

let fx: Fixture;
beforeAll(async () => {
  fx = await openFixture(rows);
});
afterAll(async () => {
  await fx.dispose();
});

const A = { ext_corp_id: 'corp123', ext_staff_id: '7311890' };
type Item = Record<string, unknown>;

/** The group's messages by msgid, and the response text (to see how numbers are written). */
async function groupMessages(): Promise<{ items: Map<string, Item>; text: string }> {
  const res = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: GROUP, page_size: 100 }, SECRET_A));
  expect(res.body.code).toBe(0);
  return { items: new Map((res.body.data as { items: Item[] }).items.map((m) => [m['msgid'] as string, m])), text: res.text };
}

describe('yunhu messages in the query API', () => {
  it('names the sender of each group message, the account itself included', async () => {
    const { items } = await groupMessages();
    expect(items.get('g-text')).toMatchObject({ from: '7356214', sender_name: '小林🌙', sender_avatar: XIAOLIN.avatar_url, session_type: 'group' });
    expect(items.get('g-file')).toMatchObject({ from: '7356990', sender_name: '阿杰', sender_avatar: AJIE.avatar_url });
    expect(items.get('g-mine')).toMatchObject({ from: '7311890', sender_name: '阿明', sender_avatar: ME.avatar_url });
  });

  it('renders file, voice and image details under the seed keys, numbers as numbers', async () => {
    const { items, text } = await groupMessages();
    expect(items.get('g-file')?.['attachments']).toMatchObject({ md5sum: '', filename: '报价单-2024Q3.xlsx', fileext: 'xlsx', filesize: 482113, file_url: 'https://chat-file.jwznb.com/a.xlsx' });
    expect(items.get('g-file')?.['chat_msg_content']).toMatchObject({ file_name: '报价单-2024Q3.xlsx' });
    expect(items.get('g-voice')?.['attachments']).toMatchObject({ play_length: 7, audio_url: 'https://chat-file.jwznb.com/v.m4a' });
    expect(items.get('g-image')?.['attachments']).toMatchObject({ filesize: 90210, image_url: 'https://chat-img.jwznb.com/i.jpg' });
    expect(text).toContain('"filesize":482113');
  });

  it('names the sender in search results, in a group and in a 1:1 chat', async () => {
    const group = await get(fx.app, SEARCH, signedQuery({ keyword: '报价单', ...A, ext_peer_id: GROUP, page_size: 20 }, SECRET_A));
    const byId = new Map((group.body.data as { items: Item[] }).items.map((m) => [m['msgid'] as string, m['sender_name']]));
    // The file matches by its name (its content_text).
    expect(byId).toEqual(new Map([['g-mine', '阿明'], ['g-file', '阿杰'], ['g-text', '小林🌙']]));
    const direct = await get(fx.app, SEARCH, signedQuery({ keyword: '报价单', ...A, ext_peer_id: '7356214', page_size: 20 }, SECRET_A));
    expect((direct.body.data as { items: Item[] }).items.map((m) => m['sender_name'])).toEqual(['小林🌙']);
  });
});
