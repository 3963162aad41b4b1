/**
 * Hostile input: anyone can DM a Channels account. Each case must come back as one dead letter
 * with the original bytes (or, where stated, a row), never as an exception or a hang (the
 * vitest timeout bounds every case).
 */
import { describe, expect, it } from 'vitest';

import type { TransformOutput } from '../../../src/core/types.ts';
import { DEFAULT_MAX_ITEM_BYTES, transformFinderItem } from '../../../src/transform/finder.ts';
import { NOW, itemText, record } from './support.ts';

function run(bytes: Uint8Array | string): { out: TransformOutput; bytes: Uint8Array } {
  const b = typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes;
  return { out: transformFinderItem(record(b), NOW), bytes: b };
}

function expectDeadLetter(input: Uint8Array | string, code: string): string {
  const { out, bytes } = run(input);
  expect(out.messages).toEqual([]);
  expect(out.events).toEqual([]);
  expect(out.deadLetters).toHaveLength(1);
  const dl = out.deadLetters[0];
  expect(dl?.error_code).toBe(code);
  expect(Buffer.from(dl?.original_base64 ?? '', 'base64').equals(Buffer.from(bytes))).toBe(true);
  return dl?.error_message ?? '';
}

const BILLION_LAUGHS = [
  '<?xml version="1.0"?>',
  '<!DOCTYPE lolz [',
  ' <!ENTITY lol "lol">',
  ...Array.from({ length: 9 }, (_, i) => ` <!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`),
  ']>',
  '<msg><img md5="&lol9;" /></msg>',
].join('\n');

describe('hostile XML in Content', () => {
  it('billion laughs: a DTD dead letter, nothing expanded', () => {
    expect(expectDeadLetter(itemText({ msgType: 3, content: BILLION_LAUGHS }), 'MSGPIPE_ERR_XML_DTD')).toMatch(/DTD/);
  });

  it('an external entity (XXE): a DTD dead letter', () => {
    const xxe = '<!DOCTYPE x SYSTEM "file:///etc/passwd"><msg><appmsg><title>&xxe;</title><type>5</type></appmsg></msg>';
    expectDeadLetter(itemText({ msgType: 49, content: xxe }), 'MSGPIPE_ERR_XML_DTD');
  });

  it('10 000 levels of nesting: a limit dead letter', () => {
    const deep = `<msg>${'<a>'.repeat(10_000)}${'</a>'.repeat(10_000)}</msg>`;
    expect(expectDeadLetter(itemText({ msgType: 49, content: deep }), 'MSGPIPE_ERR_XML_LIMIT')).toMatch(/deeper than 64/);
  });

  it('a hostile quoted layer does not cost the reply: the row says what failed', () => {
    const inner = BILLION_LAUGHS.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
    const xml = `<msg><appmsg><title>看看</title><type>57</type><refermsg><type>3</type><svrid>7015382946102283117</svrid><content>${inner}</content></refermsg></appmsg></msg>`;
    const { out } = run(itemText({ msgType: 49, content: xml }));
    expect(out.deadLetters).toEqual([]);
    const payload = JSON.parse(out.messages[0]?.content ?? '{}') as { refermsg: { quoted: { error_code: string } } };
    expect(payload.refermsg.quoted.error_code).toBe('MSGPIPE_ERR_XML_DTD');
    expect(out.messages[0]).toMatchObject({ msg_type: 'quote', content_text: '看看', pre_msgid: '7015382946102283117' });
  });

  it('a system template whose members and $names$ multiply a small item is a limit dead letter, built no further', () => {
    // Joining members with a long separator, or repeating one $name$, multiplies the input: these
    // ~100–300 KB items would render to 3–9 million characters (gigabytes, before the fix).
    const line = (template: string, link: string): string =>
      `<sysmsg type="sysmsgtemplate"><sysmsgtemplate><content_template type="tmpl_type_profile"><template>${template}</template><link_list>${link}</link_list></content_template></sysmsgtemplate></sysmsg>`;
    const manyMembers = line('$a$', `<link name="a"><separator>${'好'.repeat(1000)}</separator><memberlist>${'<member><nickname>x</nickname></member>'.repeat(3000)}</memberlist></link>`);
    const manyNames = line('$a$'.repeat(4500), `<link name="a"><memberlist><member><nickname>${'好'.repeat(2000)}</nickname></member></memberlist></link>`);
    for (const content of [manyMembers, manyNames]) {
      expect(expectDeadLetter(itemText({ msgType: 10002, content }), 'MSGPIPE_ERR_XML_LIMIT')).toMatch(/renders to more than 2097152 characters/);
    }
  });

  it('a mention list of 100 000 ids is read in linear time, each id once', () => {
    const ids = Array.from({ length: 100_000 }, (_, i) => `w${i}`); // 690 KB, under the item cap
    const { out } = run(itemText({ msgSource: `<msgsource><atuserlist>${[...ids, ...ids.slice(0, 10)].join(',')}</atuserlist></msgsource>` }));
    expect(out.messages[0]?.at_user_list).toEqual(ids);
    // A hang guard, not a speed target: ~0.1 s now, ~9 s with the quadratic check.
  }, 5_000);

  it('a DTD in MsgSource only costs the mention list', () => {
    const { out } = run(itemText({ msgSource: '<!DOCTYPE x [<!ENTITY a "b">]><msgsource><atuserlist>&a;</atuserlist></msgsource>' }));
    expect(out.messages[0]?.at_user_list).toEqual([]);
    expect(out.deadLetters).toEqual([]);
  });
});

describe('oversized items', () => {
  it('a 5 MB text message is a TOO_LARGE dead letter with every byte kept', () => {
    // Decision (ADR 0003, finder.ts): real letters are KBs; a 5 MB row would be tripled
    // (content_text, content, raw_content) and exceed Kafka's default record size. The bytes
    // stay in the dead-letter table and can be replayed with a raised cap.
    const text = itemText({ content: '哈'.repeat((5 * 1024 * 1024) / 3) });
    expect(new TextEncoder().encode(text).byteLength).toBeGreaterThan(5_000_000);
    expect(expectDeadLetter(text, 'MSGPIPE_ERR_TOO_LARGE')).toMatch(/exceeds the 1048576-byte cap/);
  });

  it('a text just under the cap is still a row, kept whole', () => {
    const body = 'a'.repeat(DEFAULT_MAX_ITEM_BYTES - 1000);
    const { out } = run(itemText({ content: body }));
    expect(out.messages[0]?.content_text).toBe(body);
  });
});

describe('bytes and JSON', () => {
  it('invalid UTF-8 is a UTF8 dead letter with the bytes as they were', () => {
    const head = new TextEncoder().encode(itemText({ content: 'XX' }));
    const at = Buffer.from(head).indexOf('XX');
    const bad = Uint8Array.from(head);
    bad[at] = 0xff;
    bad[at + 1] = 0xc3;
    expectDeadLetter(bad, 'MSGPIPE_ERR_UTF8');
  });

  it('a lone surrogate escape is not an error: it becomes U+FFFD', () => {
    const text = itemText({ content: 'X' }).replace('"X"', '"cut \\ud83d"');
    expect(run(text).out.messages[0]?.content_text).toBe('cut \uFFFD');
  });

  it.each([
    ['empty', ''],
    ['not JSON', 'HTTP/1.1 502 Bad Gateway'],
    ['truncated', itemText().slice(0, 120)],
    ['trailing garbage', `${itemText()}}`],
  ])('%s is a JSON dead letter', (_name, text) => {
    expectDeadLetter(text, 'MSGPIPE_ERR_JSON');
  });

  it('an extinfo nested 100 000 deep is a SHAPE dead letter, not a stack overflow that stops the pipeline', () => {
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    expectDeadLetter(itemText().replace('"extinfo":"CAE="', `"extinfo":${deep}`), 'MSGPIPE_ERR_SHAPE');
  });

  it('an extinfo nested past 64 levels is a SHAPE dead letter naming it, whatever the stack; 64 levels are kept as JSON text', () => {
    const nested = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);
    // 8 000 levels overflow JSON.stringify on the main thread's stack, not on a worker's: the
    // answer must not depend on where the item is transformed (the threads test runs it there).
    for (const depth of [65, 8_000]) {
      expect(expectDeadLetter(itemText().replace('"extinfo":"CAE="', `"extinfo":${nested(depth)}`), 'MSGPIPE_ERR_SHAPE')).toBe(
        'content.extinfo: nested deeper than 64 levels',
      );
    }
    // An array, an object, then 62 arrays: 64 levels.
    const kept = run(itemText().replace('"extinfo":"CAE="', `"extinfo":[{"a":${nested(62)}}]`)).out;
    expect(kept.deadLetters).toEqual([]);
    expect(kept.messages[0]?.extinfo).toBe(`[{"a":${nested(62)}}]`);
  });

  it('a status notify arg nested past 64 levels stays its text, and the event is kept', () => {
    const deep = '['.repeat(8_000) + ']'.repeat(8_000);
    const { out } = run(itemText({ msgType: 51, content: `<msg><op id="5"><name>x</name><arg>${deep}</arg></op></msg>` }));
    expect(out.deadLetters).toEqual([]);
    expect(JSON.parse(out.events[0]?.payload ?? '{}')).toMatchObject({ op_id: 5, arg: deep });
    const shallow = run(itemText({ msgType: 51, content: '<msg><op id="5"><arg>{"ids":[1,2]}</arg></op></msg>' })).out;
    expect(JSON.parse(shallow.events[0]?.payload ?? '{}')).toMatchObject({ arg: { ids: [1, 2] } });
  });

  it('10 000 nested arrays are a SHAPE dead letter (parsed without a stack overflow)', () => {
    expectDeadLetter(`${'['.repeat(10_000)}${']'.repeat(10_000)}`, 'MSGPIPE_ERR_SHAPE');
  });

  it('deep nesting in a field the transform does not read does not matter', () => {
    const text = itemText().replace('"ImgBuf":{"iLen":0}', `"ImgBuf":${'['.repeat(10_000)}${']'.repeat(10_000)}`);
    expect(run(text).out.messages).toHaveLength(1);
  });

  it.each([
    ['item', '"x"', 'item: expected an object, got string'],
    ['content', '{"content":[]}', 'content: expected an object, got array'],
    ['content.msg', '{"content":{"msg":"hi"}}', 'content.msg: expected an object, got string'],
    ['NewMsgId as float', itemText({ newMsgId: '1.5' }), 'content.msg.NewMsgId: expected an integer id, got number'],
    ['NewMsgId as bool', itemText({ newMsgId: 'true' }), 'content.msg.NewMsgId: expected an integer id, got boolean'],
    ['NewMsgId missing', itemText().replace(/"NewMsgId":\d+,/, ''), 'content.msg.NewMsgId: missing, expected an integer id'],
    ['MsgType as object', itemText().replace('"MsgType":1', '"MsgType":{}'), 'content.msg.MsgType: expected an integer, got object'],
    ['CreateTime negative', itemText({ createTime: -5 }), 'content.msg.CreateTime: expected a non-negative integer, got number'],
    ['CreateTime as text', itemText().replace('"CreateTime":1731059312', '"CreateTime":"yesterday"'), 'content.msg.CreateTime: expected an integer, got string'],
    ['FromUserName as number', itemText().replace(/"FromUserName":\{[^}]*\}/, '"FromUserName":42'), 'content.msg.FromUserName: expected an object {string}, got number'],
    ['Content.string as array', itemText().replace(/"Content":\{[^}]*\}/, '"Content":{"string":["a"]}'), 'content.msg.Content.string: expected a string, got array'],
    ['MsgSource as object', itemText().replace('"MsgSource":""', '"MsgSource":{}'), 'content.msg.MsgSource: expected a string, got object'],
    ['msgSessionId as number', itemText().replace(/"msgSessionId":"[^"]*"/, '"msgSessionId":5'), 'content.msgSessionId: expected a string, got number'],
    ['seq negative', itemText({ seq: '-1' }), 'content.seq: expected an unsigned integer, got number'],
    ['isSender as 2', itemText({ isSender: '2' }), 'content.isSender: expected a boolean or 0/1, got number'],
  ])('wrong JSON type of %s is a SHAPE dead letter naming the field', (_name, text, message) => {
    expect(expectDeadLetter(text, 'MSGPIPE_ERR_SHAPE')).toBe(message);
  });
});
