/** The Yunhu transform on messages built from the seed's structures and encoded with the real protos. */
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';

import type { Origin, RawRecord } from '../../../src/core/types.ts';
import { encodeYunhu } from '../../../src/ingest/yunhu-proto.ts';
import { decodeMessageRecord, encodeMessage } from '../../../src/kafka/codec.ts';
import { MAX_RECORD_BATCH_BYTES } from '../../../src/kafka/topics.ts';
import { transformYunhuRecord } from '../../../src/transform/yunhu.ts';

const ORIGIN: Origin = { source: 'yh1', sourceType: 'yunhu', tenant: 'corp1', staffId: '7311890' };
const NOW = 1_767_225_600_000;

function record(bytes: Uint8Array, cursor = '2:51309476@1820', index = 0): RawRecord {
  return { origin: ORIGIN, bytes, fetchedAt: NOW, cursor, index };
}

const XIAOLIN = {
  chat_id: '7356214',
  chat_type: 1,
  name: '小林🌙',
  avatar_url: 'https://chat-img.jwznb.com/3f1e9a0c2b7d48e6a5c1d0f9e8b7a6c5.jpg',
  tag_old: ['管理员'],
  tag: [{ id: '61022', text: '管理员', color: '#FF3B82F6' }],
};

describe('transformYunhuRecord', () => {
  it('refuses a message whose parsed content would outgrow a Kafka record, keeping its bytes', () => {
    // 1 MB of control characters: six bytes each once JSON-escaped, and an edit repeats it all.
    const hostile = '\u0001'.repeat(1_000_000);
    const bytes = encodeYunhu('Msg', { msg_id: 'big1', sender: XIAOLIN, direction: 'left', content_type: 1, content: { text: hostile }, send_time: '1731059312457', msg_seq: '5', edit_time: '1731059399000' });
    expect(bytes.byteLength).toBeLessThan(1024 * 1024);
    const out = transformYunhuRecord(record(bytes), NOW);
    expect(out.messages).toEqual([]);
    expect(out.deadLetters[0]).toMatchObject({ error_code: 'MSGPIPE_ERR_TOO_LARGE', original_base64: Buffer.from(bytes).toString('base64') });
    expect(out.deadLetters[0]?.error_message).toMatch(/^Parsed content of \d+ bytes exceeds the 1048576-byte cap$/);
    // The same length of ordinary text is a row, and its Kafka record stays under the 8 MiB limit.
    const plain = encodeYunhu('Msg', { msg_id: 'big2', sender: XIAOLIN, direction: 'left', content_type: 1, content: { text: '好'.repeat(300_000) }, send_time: '1731059312457', msg_seq: '6', edit_time: '1731059399000' });
    const ok = transformYunhuRecord(record(plain), NOW);
    expect(ok.messages).toHaveLength(1);
    expect(ok.edits).toHaveLength(1);
    expect(encodeMessage(ok.messages[0]!, ok.recalls, ok.edits ?? []).byteLength).toBeLessThan(MAX_RECORD_BATCH_BYTES);
  });

  it.each([20_000, 100_000])('keeps a text message whose buttons nest %i deep, with the buttons as the string they are', (levels) => {
    const deep = '['.repeat(levels) + ']'.repeat(levels);
    const bytes = encodeYunhu('Msg', { msg_id: 'deep1', sender: XIAOLIN, direction: 'left', content_type: 1, content: { text: '明天几点开会？', buttons: deep }, send_time: '1731059312457', msg_seq: '5' });
    const out = transformYunhuRecord(record(bytes), NOW);
    expect(out.deadLetters).toEqual([]);
    expect(out.messages[0]?.content_text).toBe('明天几点开会？');
    expect((JSON.parse(out.messages[0]!.content) as { buttons: unknown }).buttons).toBe(deep);
  });

  it('parses buttons and forms as JSON up to 64 levels deep, and keeps a deeper form as its string', () => {
    const at = (levels: number): string => '['.repeat(levels - 1) + '{"a":1}' + ']'.repeat(levels - 1);
    const form = (text: string): unknown => {
      const bytes = encodeYunhu('Msg', { msg_id: 'f1', sender: XIAOLIN, content_type: 5, content: { form: text }, send_time: '1731059312457', msg_seq: '5' });
      return (JSON.parse(transformYunhuRecord(record(bytes), NOW).messages[0]!.content) as { form: unknown }).form;
    };
    expect(form(at(64))).toEqual(JSON.parse(at(64)));
    expect(form(at(65))).toBe(at(65));
  });

  it('keeps integers of buttons and forms exact (big ones as decimal strings)', () => {
    const buttons = '[[{"text":"领取","actionType":3,"value":12345678901234567891}]]';
    const form = '{"id":98765432109876543210,"name":"报名表","fields":[{"id":7,"max":18446744073709551615}]}';
    const text = encodeYunhu('Msg', { msg_id: 'b1', sender: XIAOLIN, content_type: 1, content: { text: 'hi', buttons }, send_time: '1731059312457', msg_seq: '5' });
    const formMsg = encodeYunhu('Msg', { msg_id: 'f2', sender: XIAOLIN, content_type: 5, content: { form }, send_time: '1731059312457', msg_seq: '6' });
    const textContent = JSON.parse(transformYunhuRecord(record(text), NOW).messages[0]!.content) as { buttons: unknown };
    const formContent = JSON.parse(transformYunhuRecord(record(formMsg), NOW).messages[0]!.content) as { form: unknown };
    expect(textContent.buttons).toEqual([[{ text: '领取', actionType: 3, value: '12345678901234567891' }]]);
    expect(formContent.form).toEqual({ id: '98765432109876543210', name: '报名表', fields: [{ id: 7, max: '18446744073709551615' }] });
  });

  it('maps a group text message with mentions, sender tags and exact 64-bit fields', () => {
    const bytes = encodeYunhu('Msg', {
      msg_id: '8f3c2a9e4b1d47c6a0e5f2d9c8b7a613',
      sender: XIAOLIN,
      direction: 'left',
      content_type: 1,
      content: { text: '@阿杰\u2068 明天的活动几点开始？', mentioned_id: ['7311890'] },
      send_time: '1731059312457',
      msg_seq: '18446744073709551615',
    });
    const out = transformYunhuRecord(record(bytes), NOW);
    expect(out.deadLetters).toEqual([]);
    expect(out.recalls).toEqual([]);
    expect(out.edits).toBeUndefined();
    const row = out.messages[0]!;
    expect(row).toMatchObject({
      msgid: '8f3c2a9e4b1d47c6a0e5f2d9c8b7a613',
      session_id: '51309476',
      session_type: 'group',
      room_id: '51309476',
      peer_id: '51309476',
      from_id: '7356214',
      is_sender: 0,
      msg_time: 1_731_059_312_457,
      seq: '18446744073709551615',
      msg_seq: 0,
      msg_type: 'text',
      wx_msg_type: 1,
      content_text: '@阿杰\u2068 明天的活动几点开始？',
      at_user_list: ['7311890'],
      peer_name: '',
      source_type: 'yunhu',
    });
    const content = JSON.parse(row.content) as { kind: string; sender: { name: string; tag: { id: string }[]; tag_old: string[] } };
    expect(content.kind).toBe('text');
    expect(content.sender.name).toBe('小林🌙');
    expect(content.sender.tag[0]!.id).toBe('61022');
    expect(content.sender.tag_old).toEqual(['管理员']);
  });

  it('maps 1:1 and bot chats to external sessions with the peer name from the peer', () => {
    const bytes = encodeYunhu('Msg', {
      msg_id: 'a1',
      sender: XIAOLIN,
      direction: 'left',
      content_type: 2,
      content: { image_url: 'https://chat-img.jwznb.com/x.jpg', file_size: '482113', width: '1080', height: '1440', quote_msg_text: '阿杰: hi' },
      quote_msg_id: 'q1',
      send_time: '1731059377012',
      msg_seq: '1822',
    });
    const row = transformYunhuRecord(record(bytes, '1:7356214@1821'), NOW).messages[0]!;
    expect(row).toMatchObject({
      session_type: 'external',
      room_id: '',
      peer_id: '7356214',
      peer_name: '小林🌙',
      peer_avatar: XIAOLIN.avatar_url,
      tolist: ['7311890'],
      msg_type: 'image',
      pre_msgid: 'q1',
      msg_seq: 1822,
    });
    expect(JSON.parse(row.content)).toMatchObject({ kind: 'image', width: '1080', file_size: '482113', quote: { msg_id: 'q1', text: '阿杰: hi' } });
    const bot = encodeYunhu('Msg', { msg_id: 'b1', sender: { chat_id: '82041957', chat_type: 3, name: '天气助手' }, direction: 'right', content_type: 3, content: { text: '**x**' }, send_time: '1', msg_seq: '5' });
    expect(transformYunhuRecord(record(bot, '3:82041957@4'), NOW).messages[0]).toMatchObject({ session_type: 'external', is_sender: 1, tolist: ['82041957'], msg_type: 'text' });
    // With a staffId of its own, the receiver is still the account's user id, which its own messages are from.
    const staffed = { ...record(bytes, '1:7356214@1821'), origin: { ...ORIGIN, staffId: 'staff-a', account: '7311890' } };
    expect(transformYunhuRecord(staffed, NOW).messages[0]).toMatchObject({ staff_id: 'staff-a', tolist: ['7311890'] });
  });

  it('types every content type, unknown ones included', () => {
    const cases: [number, Record<string, unknown>, string, string, string][] = [
      [1, { text: 't' }, 'text', 'text', 't'],
      [2, { image_url: 'i' }, 'image', 'image', ''],
      [2, { video_url: 'v.mp4' }, 'video', 'video', ''],
      [3, { text: '# md' }, 'markdown', 'text', '# md'],
      [4, { file_name: 'a.pdf', file_url: 'u', file_size: '9' }, 'file', 'file', 'a.pdf'],
      [5, { form: '{"a":1}' }, 'form', 'text', '{"a":1}'],
      [6, { post_title: 'T', post_content: 'C', post_content_type: '2' }, 'post', 'link', 'T\nC'],
      [7, { image: 'expression/abc.jpg', sticker_item_id: '12', sticker_pack_id: '3' }, 'sticker', 'emotion', ''],
      [8, { text: '<b>Hi</b> &amp; <i>you</i>' }, 'html', 'text', 'Hi & you'],
      [11, { audio_url: 'a.m4a', audio_time: '7' }, 'voice', 'voice', ''],
      [13, { room_name: '语音通话', call_status_text: '通话时长 01:23' }, 'call', 'system', '通话时长 01:23'],
      [14, { text: 'a2ui' }, 'unknown', 'unknown', 'a2ui'],
    ];
    for (const [contentType, content, kind, msgType, text] of cases) {
      const bytes = encodeYunhu('Msg', { msg_id: `m${contentType}`, sender: XIAOLIN, content_type: contentType, content, send_time: '1731059312457', msg_seq: '9' });
      const row = transformYunhuRecord(record(bytes), NOW).messages[0]!;
      expect([row.msg_type, row.content_text, (JSON.parse(row.content) as { kind: string }).kind]).toEqual([msgType, text, kind]);
      expect(row.wx_msg_type).toBe(contentType);
    }
  });

  it.each([
    ['closed script and style elements dropped', '<p>a</p><script>x()</script><STYLE>p{}</style >b', 'a b'],
    ['an unclosed script start tag stripped as a tag', '<p>a</p><script>x()', 'a x()'],
    // 1 MB of unclosed start tags (a regex with a lazy body took 18 s for this) and of lone `<`.
    ['many unclosed script start tags', `${'<script>'.repeat(125_000)}end`, 'end'],
    ['many lone angle brackets', `${'<'.repeat(1_000_000)}b>end`, `${'<'.repeat(999_999)} end`],
    // İ lower-cases to two code units: positions found in a lower-cased copy cut the original wrongly.
    ['İ before a script element', 'İİİİİİ<script>alert(1)</script>你好世界 hello', 'İİİİİİ 你好世界 hello'],
    ['İ before mixed-case script and style elements', 'İstanbul<ScRiPt>x()</SCRIPT> gezi <Style>p{}</STYLE>İyi', 'İstanbul gezi İyi'],
    ['a < that opens no tag', '<p>1 < 2 and 3 > 2</p><!-- note --><br/>x <3', '1 < 2 and 3 > 2 x <3'],
    [
      'numeric and named entities',
      '价格 &#165;5 &#x4e2d;&#X6587; &copy; 2024&hellip; &amp;lt; &ldquo;hi&rdquo; &#0; &#xD800; &#1114112; &unknown; & x',
      '价格 ¥5 中文 © 2024… &lt; “hi” \ufffd \ufffd \ufffd &unknown; & x',
    ],
    ['names of Object.prototype, which are no entities', '价格 &constructor; &toString; &hasOwnProperty; 元', '价格 &constructor; &toString; &hasOwnProperty; 元'],
    ['many unfinished tags', `${'<a'.repeat(500_000)}end`, `${'<a'.repeat(500_000)}end`],
    ['many unfinished entities', `${'&#x'.repeat(150_000)}${'&a'.repeat(150_000)}end`, `${'&#x'.repeat(150_000)}${'&a'.repeat(150_000)}end`],
  ])('takes the text of HTML: %s', (_name, html, text) => {
    const bytes = encodeYunhu('Msg', { msg_id: 'h1', sender: XIAOLIN, content_type: 8, content: { text: html }, send_time: '1731059312457', msg_seq: '9' });
    expect(transformYunhuRecord(record(bytes), NOW).messages[0]?.content_text).toBe(text);
    // A hang guard, not a speed target: ~50 ms now, 19 s with the quadratic regex.
  }, 5_000);

  it('turns recall_time into a recall mark and edit_time into an edit mark with the latest content', () => {
    const bytes = encodeYunhu('Msg', {
      msg_id: 'e90a7b6c5d4e4f3a2b1c0d9e8f7a6b5c',
      sender: { chat_id: '82041957', chat_type: 3, name: '天气助手' },
      content_type: 3,
      content: { text: '**今日天气** 晴 26℃', buttons: '[[{"text":"刷新","actionType":3,"value":"refresh"}]]' },
      cmd: { cmd_id: '1043', name: '天气', type: '1' },
      send_time: '1731059400999',
      edit_time: '1731059460123',
      recall_time: '1731059512345',
      msg_seq: '1823',
    });
    const out = transformYunhuRecord(record(bytes), NOW);
    expect(out.recalls).toEqual([{ tenant: 'corp1', staff_id: '7311890', session_id: '51309476', target_msgid: 'e90a7b6c5d4e4f3a2b1c0d9e8f7a6b5c', recall_time: 1_731_059_512_345 }]);
    expect(out.edits).toHaveLength(1);
    expect(out.edits![0]).toMatchObject({ target_msgid: 'e90a7b6c5d4e4f3a2b1c0d9e8f7a6b5c', edit_time: 1_731_059_460_123, content_text: '**今日天气** 晴 26℃', content: out.messages[0]!.content });
    expect(JSON.parse(out.messages[0]!.content)).toMatchObject({ cmd: { cmd_id: '1043', name: '天气' }, buttons: [[{ text: '刷新' }]], edit_time: 1_731_059_460_123 });
  });

  it('marks the edit of a recalled message listed with its content emptied as withheld, so the stored text is not wiped', () => {
    const fields = { msg_id: 'r2', sender: XIAOLIN, direction: 'left', content_type: 1, send_time: '1731059400999', edit_time: '1731059460123', recall_time: '1731059512345', msg_seq: '7' };
    const emptied = transformYunhuRecord(record(encodeYunhu('Msg', { ...fields, content: { text: '' } })), NOW);
    expect(emptied.recalls.map((r) => r.target_msgid)).toEqual(['r2']);
    expect(emptied.edits).toEqual([expect.objectContaining({ target_msgid: 'r2', edit_time: 1_731_059_460_123, content_withheld: true, content_text: '', content: '', raw_content: '' })]);
    // The mark travels through Kafka as it is.
    expect(decodeMessageRecord(encodeMessage(emptied.messages[0]!, emptied.recalls, emptied.edits)).edits).toStrictEqual(emptied.edits);
    // Listed with its (edited) content still there, the edit is taken.
    const kept = transformYunhuRecord(record(encodeYunhu('Msg', { ...fields, content: { text: '改过的' } })), NOW);
    expect(kept.edits?.map((e) => [e.content_text, e.content_withheld])).toEqual([['改过的', undefined]]);
    expect(decodeMessageRecord(encodeMessage(kept.messages[0]!, kept.recalls, kept.edits)).edits).toStrictEqual(kept.edits);
  });

  it('reads an edit-history entry (the seed\'s JSON) into a history row', () => {
    const entry = '{"id":1018702,"msgId":"e90a7b6c5d4e4f3a2b1c0d9e8f7a6b5c","contentType":3,"contentOld":"{\\"text\\":\\"**今日天气** 多云 24℃\\",\\"buttons\\":\\"\\"}","createTime":1731059400999,"msgTime":1731059460123}';
    const out = transformYunhuRecord(record(Buffer.from(entry)), NOW);
    expect(out.messages).toEqual([]);
    expect(out.editHistory).toEqual([
      {
        tenant: 'corp1',
        source: 'yh1',
        source_type: 'yunhu',
        staff_id: '7311890',
        session_id: '51309476',
        msgid: 'e90a7b6c5d4e4f3a2b1c0d9e8f7a6b5c',
        edit_id: '1018702',
        content_type: 3,
        content_old: '{"text":"**今日天气** 多云 24℃","buttons":""}',
        content_text_old: '**今日天气** 多云 24℃',
        msg_time: 1_731_059_400_999,
        edit_time: 1_731_059_460_123,
        raw: entry,
        ingested_at: NOW,
      },
    ]);
  });

  it('keeps the exact message bytes as raw_content, fields the protos do not name included (content type 14 A2UI)', () => {
    // A newer server's A2UI card: content_type 14 whose MsgContent holds only a field 40 we do not decode.
    const a2ui = '{"a2ui":{"type":"card","title":"报名表","fields":[{"id":98765432109876543210}]}}';
    const content = protobuf.Writer.create().uint32((40 << 3) | 2).string(a2ui).finish();
    const head = encodeYunhu('Msg', { msg_id: 'a2ui1', sender: { chat_id: '82041957', chat_type: 3, name: '报名助手' }, direction: 'left', content_type: 14, send_time: '1731059312457', msg_seq: '9' });
    const bytes = Buffer.concat([head, protobuf.Writer.create().uint32((5 << 3) | 2).bytes(content).finish()]);
    const out = transformYunhuRecord(record(bytes, '3:82041957@8'), NOW);
    expect(out.deadLetters).toEqual([]);
    const row = out.messages[0]!;
    expect(row).toMatchObject({ msgid: 'a2ui1', msg_type: 'unknown', wx_msg_type: 14 });
    const raw = Buffer.from(row.raw_content, 'base64');
    expect(raw.equals(bytes)).toBe(true);
    expect(raw.includes(Buffer.from(a2ui))).toBe(true);
    // An edit mark carries the same exact bytes to the stored copy.
    const edited = Buffer.concat([bytes, protobuf.Writer.create().uint32((12 << 3) | 0).uint64('1731059400000').finish()]);
    const mark = transformYunhuRecord(record(edited, '3:82041957@8'), NOW).edits![0]!;
    expect(Buffer.from(mark.raw_content, 'base64').equals(edited)).toBe(true);
  });

  it('skips unknown fields from newer servers', () => {
    const known = encodeYunhu('Msg', { msg_id: 'u1', content_type: 1, content: { text: 'x' }, send_time: '5', msg_seq: '2' });
    // Field 36 (bot_llm_params) inside content would need re-encoding; append top-level field 40 (varint) and 41 (bytes).
    const extra = Buffer.concat([Buffer.from(known), Buffer.from([0xc0, 0x02, 0x07, 0xca, 0x02, 0x02, 0x68, 0x69])]);
    const out = transformYunhuRecord(record(extra), NOW);
    expect(out.deadLetters).toEqual([]);
    expect(out.messages[0]).toMatchObject({ msgid: 'u1', content_text: 'x' });
  });

  it('keeps a message whose sender name the server clipped inside a character, with U+FFFD for the broken part', () => {
    const bytes = Buffer.from(
      encodeYunhu('Msg', { msg_id: 'clip1', sender: { chat_id: '7356214', chat_type: 1, name: '小林云' }, direction: 'left', content_type: 1, content: { text: '明天见' }, send_time: '1731059312457', msg_seq: '7' }),
    );
    // 云 is e4 ba 91; the last byte overwritten keeps every length prefix right.
    bytes[bytes.indexOf(Buffer.from('小林云')) + Buffer.byteLength('小林云') - 1] = 0x21;
    const out = transformYunhuRecord(record(bytes, '1:7356214@6'), NOW);
    expect(out.deadLetters).toEqual([]);
    expect(out.messages[0]).toMatchObject({ msgid: 'clip1', content_text: '明天见', peer_name: '小林\ufffd!' });
    expect((JSON.parse(out.messages[0]!.content) as { sender: { name: string } }).sender.name).toBe('小林\ufffd!');
  });

  it('dead-letters malformed protobuf, a missing msg_id, an oversized record and a record without its chat, with the exact bytes', () => {
    const good = encodeYunhu('Msg', { msg_id: 'ok', content_type: 1, content: { text: 'x' }, send_time: '5', msg_seq: '2' });
    const cases: [RawRecord, string][] = [
      [record(good.subarray(0, good.length - 1)), 'MSGPIPE_ERR_PROTOBUF'],
      [record(Buffer.from([0x0a, 0x05, 0x61])), 'MSGPIPE_ERR_PROTOBUF'],
      [record(encodeYunhu('Msg', { content_type: 1, send_time: '5' })), 'MSGPIPE_ERR_SHAPE'],
      [record(encodeYunhu('Msg', { msg_id: 'big', content_type: 1, content: { text: 'x'.repeat(1024 * 1024 + 1) } })), 'MSGPIPE_ERR_TOO_LARGE'],
      [record(good, 'not-a-chat'), 'MSGPIPE_ERR_SHAPE'],
      [record(Buffer.from('{"id":"x"}')), 'MSGPIPE_ERR_SHAPE'],
      [record(Buffer.from('{"id":1,')), 'MSGPIPE_ERR_JSON'],
    ];
    for (const [rec, code] of cases) {
      const out = transformYunhuRecord(rec, NOW);
      expect(out.messages).toEqual([]);
      expect(out.deadLetters).toHaveLength(1);
      expect(out.deadLetters[0]).toMatchObject({ error_code: code, stage: 'transform', origin_key: `yh1:${rec.cursor}#0` });
      expect(Buffer.from(out.deadLetters[0]!.original_base64, 'base64').equals(Buffer.from(rec.bytes))).toBe(true);
    }
  });
});
