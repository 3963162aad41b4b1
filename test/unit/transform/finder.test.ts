import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { itemSpans } from '../../../src/core/json.ts';
import type { TransformOutput } from '../../../src/core/types.ts';
import { createFinderTransform, transformFinderItem } from '../../../src/transform/finder.ts';
import { ME, NOW, ORIGIN, PEER, SESSION, itemText, record } from './support.ts';

const SEEDS = join(import.meta.dirname, '../../fixtures/seeds');

function page(file: string): TransformOutput[] {
  const body = new Uint8Array(readFileSync(join(SEEDS, file)));
  return (itemSpans(body, ['data', 'list']) ?? []).map((s, i) => transformFinderItem(record(body.subarray(s.start, s.end), i), NOW));
}

function only(text: string): TransformOutput {
  return transformFinderItem(record(text), NOW);
}

describe('the syncFinder seed page', () => {
  const out = page('syncfinder-page.json');

  it('yields 19 items: 11 events, 8 messages, no dead letters', () => {
    expect(out).toHaveLength(19);
    expect(out.flatMap((o) => o.events)).toHaveLength(11);
    expect(out.flatMap((o) => o.messages)).toHaveLength(8);
    expect(out.flatMap((o) => o.deadLetters)).toEqual([]);
  });

  it('keeps NewMsgId 3876235366388279544 exactly: the first item, a functionmsg event', () => {
    const [ev] = out[0]?.events ?? [];
    expect(ev?.event_id).toBe('3876235366388279544');
    expect(ev?.event_type).toBe('functionmsg');
    expect(JSON.parse(ev?.payload ?? '{}')).toMatchObject({ cgi: '/cgi-bin/micromsg-bin/findergetlivetips', cmdid: '6407', businessid: '70001' });
    expect(ev?.event_time).toBe(1691926802000);
  });

  it('keeps NewMsgId 1767797523284146072 exactly: the text 哈喽 from a stranger', () => {
    const m = out.flatMap((o) => o.messages).find((r) => r.msgid === '1767797523284146072');
    expect(m).toMatchObject({
      msg_type: 'text',
      content_text: '哈喽',
      content: '{"content":"哈喽"}',
      from_id: PEER,
      tolist: ['v2_060000231003b20faec8c6e18f10c7d6c903ec3db0776955d3d97c6b329d6aa58693bcdb7ad1@finder'],
      peer_id: PEER,
      is_sender: 0,
      seq: '1192',
      msg_time: 1692186142000,
      session_id: 'cb68e6952228400339575a83b40f5a12cdfae818b3164eb999b609e90e139d0a@findermsg',
      source_type: 'gewe',
      action: 'send',
    });
  });

  it('keeps uint64 object ids of live-close events exact in the payload', () => {
    const close = out[1]?.events[0];
    expect(close?.event_type).toBe('finderliveclosenotifymsg');
    expect(JSON.parse(close?.payload ?? '{}')).toMatchObject({ object_id: '14192909587060689023', live_id: '2042557163204371840' });
  });
});

describe('the GeWe seed page', () => {
  it('maps isSender 1 and 0 to the right peer and keeps the documented ids', () => {
    const rows = page('gewe-page.json').flatMap((o) => o.messages);
    expect(rows.map((r) => r.msgid)).toEqual(['5871873953492479000', '1054704077635816600', '243683914400108300', '7648226390526412000', '7744705344788547000']);
    expect(rows[0]).toMatchObject({ is_sender: 1, from_id: 'wxid_0xsqb3o0tsvz22', peer_id: rows[0]?.tolist[0] });
    expect(rows[1]).toMatchObject({ is_sender: 0, peer_id: rows[1]?.from_id, sub_type: 2, sync_key_type: 5 });
    expect(rows[4]).toMatchObject({ msg_type: 'image', wx_msg_type: 3 });
    expect(JSON.parse(rows[4]?.content ?? '{}')).toMatchObject({ md5sum: '704de7ebbc107a51a4f0986253a6d3b6', filesize: 22001, hdlength: 1096 });
  });
});

describe('column mapping', () => {
  it('fills the origin, ids, direction and times (DESIGN §6)', () => {
    const [m] = only(itemText({ newMsgId: '9007199254740993', seq: '18446744073709551615', isSender: 'true', from: ME, to: PEER })).messages;
    expect(m).toMatchObject({
      tenant: ORIGIN.tenant,
      source: ORIGIN.source,
      source_type: ORIGIN.sourceType,
      staff_id: ORIGIN.staffId,
      msgid: '9007199254740993',
      legacy_msgid: '1048377195',
      seq: '18446744073709551615',
      is_sender: 1,
      peer_id: PEER,
      from_id: ME,
      tolist: [PEER],
      session_type: 'external',
      msg_time: 1731059312000,
      ingested_at: NOW,
    });
  });

  it('accepts isSender as true/1 and false/0 alike', () => {
    const peer = (v: string) => only(itemText({ isSender: v, from: ME, to: PEER })).messages[0]?.peer_id;
    expect([peer('1'), peer('true')]).toEqual([PEER, PEER]);
    expect([peer('0'), peer('false')]).toEqual([ME, ME]);
  });

  it('reads mentions from MsgSource in CDATA or plain text, with a leading comma and notify@all', () => {
    const at = (ms: string) => only(itemText({ msgSource: ms })).messages[0]?.at_user_list;
    expect(at('<msgsource><atuserlist><![CDATA[,wxid_a,wxid_b]]></atuserlist></msgsource>')).toEqual(['wxid_a', 'wxid_b']);
    expect(at('<msgsource><atuserlist>notify@all</atuserlist></msgsource>')).toEqual(['notify@all']);
    expect(at('<msgsource><pua>1</pua></msgsource>')).toEqual([]);
    // Broken metadata does not cost the message.
    expect(at('<msgsource><atuserlist>wxid_a')).toEqual([]);
  });

  it('keeps an unknown MsgType as an unknown row with its raw content', () => {
    const xml = '<msg><voipmsg type="VoIPBubbleMsg"><VoIPBubbleMsg><msg><![CDATA[通话时长 00:12]]></msg></VoIPBubbleMsg></voipmsg></msg>';
    const [m] = only(itemText({ msgType: 50, content: xml })).messages;
    expect(m).toMatchObject({ msg_type: 'unknown', wx_msg_type: 50, raw_content: xml, content: '{}' });
  });

  it('is deterministic and leaves the input bytes alone', () => {
    const bytes = new TextEncoder().encode(itemText({ msgType: 3, content: '<msg><img md5="ab" length="1"/></msg>' }));
    const copy = bytes.slice();
    expect(transformFinderItem(record(bytes), NOW)).toEqual(transformFinderItem(record(bytes), NOW));
    expect(bytes).toEqual(copy);
  });
});

describe('revoke', () => {
  const revoke = (session: string) =>
    only(
      itemText({
        msgType: 10002,
        newMsgId: '1731060090',
        createTime: 1731060090,
        session,
        content: `<sysmsg type="revokemsg"><revokemsg><session>${SESSION}</session><msgid>1048377195</msgid><newmsgid>8412057736190466213</newmsgid><replacemsg><![CDATA["小林" 撤回了一条消息]]></replacemsg></revokemsg></sysmsg>`,
      }),
    );

  it('is a recall row pointing at the revoked message, and a recall mark for it', () => {
    const out = revoke(SESSION);
    expect(out.messages[0]).toMatchObject({ msg_type: 'revoke', action: 'recall', pre_msgid: '8412057736190466213', content_text: '"小林" 撤回了一条消息' });
    expect(out.recalls).toEqual([{ tenant: 'corp123', staff_id: 'staff-a', session_id: SESSION, target_msgid: '8412057736190466213', recall_time: 1731060090000 }]);
  });

  it('takes the session from inside the revoke when the item has none', () => {
    const out = revoke('');
    expect(out.recalls[0]?.session_id).toBe(SESSION);
    // The recall row goes to that conversation too, not to a session '' of its own.
    expect(out.messages[0]?.session_id).toBe(SESSION);
  });

  describe('with a pseudo NewMsgId', () => {
    const revokeOf = (target: string, session: string, newMsgId = '1731060090', msgId = '1048377230'): string =>
      itemText({
        msgType: 10002,
        newMsgId,
        msgId,
        createTime: 1731060090,
        session,
        content: `<sysmsg type="revokemsg"><revokemsg><session>${session}</session><newmsgid>${target}</newmsgid><replacemsg><![CDATA["小林" 撤回了一条消息]]></replacemsg></revokemsg></sysmsg>`,
      });
    const OTHER_SESSION = SESSION.replace('8c1e', '9d2f');

    it('stores a msgid derived from the content: two revokes of the same second keep a row each', () => {
      const a = only(revokeOf('8412057736190466213', SESSION)).messages[0]!;
      const b = only(revokeOf('8412057736190466999', OTHER_SESSION)).messages[0]!;
      const c = only(revokeOf('8412057736190466999', SESSION)).messages[0]!;
      expect(new Set([a.msgid, b.msgid, c.msgid]).size).toBe(3);
      for (const m of [a, b, c]) {
        expect(m.msgid).toMatch(/^[1-9][0-9]{0,19}$/);
        expect(BigInt(m.msgid) < 2n ** 64n).toBe(true);
        // What the provider sent stays: MsgId in legacy_msgid, the pseudo id in msg_time.
        expect(m).toMatchObject({ legacy_msgid: '1048377230', msg_time: 1731060090_000 });
      }
    });

    it('derives the same msgid when the revoke is delivered again, whichever stand-in id it carries', () => {
      const first = only(revokeOf('8412057736190466213', SESSION)).messages[0]!.msgid;
      const again = only(revokeOf('8412057736190466213', SESSION).replaceAll(',"', ', "')).messages[0]!.msgid;
      const byMsgId = only(revokeOf('8412057736190466213', SESSION, '77', '77')).messages[0]!.msgid;
      const zero = only(revokeOf('8412057736190466213', SESSION, '0')).messages[0]!.msgid;
      expect([again, byMsgId, zero]).toEqual([first, first, first]);
    });

    it('keeps a real NewMsgId as msgid', () => {
      expect(only(revokeOf('8412057736190466213', SESSION, '3876235366388279544')).messages[0]!.msgid).toBe('3876235366388279544');
      // A 64-bit NewMsgId that a provider also put in MsgId is not a stand-in.
      expect(only(revokeOf('8412057736190466213', SESSION, '3876235366388279544', '3876235366388279544')).messages[0]!.msgid).toBe('3876235366388279544');
    });

    it('leaves the ids of other kinds alone, so quotes and revokes that name them find them', () => {
      for (const [newMsgId, msgId, createTime] of [
        ['8412057736190466213', '8412057736190466213', 1731059312],
        ['5', '5', 1731059312],
        ['1731059312', '1048377195', 1731059312],
      ] as const) {
        expect(only(itemText({ newMsgId, msgId, createTime })).messages[0]!.msgid).toBe(newMsgId);
      }
    });
  });
});

describe('events', () => {
  const fn = '<sysmsg type="functionmsg"><functionmsg><cgi>/cgi-bin/micromsg-bin/findergetlivetips</cgi><cmdid>6407</cmdid></functionmsg></sysmsg>';

  it('uses NewMsgId as event_id when it is a real id', () => {
    const [e] = only(itemText({ msgType: 10002, content: fn, newMsgId: '3876235366388279544', msgId: '1172', createTime: 1691926802 })).events;
    expect(e?.event_id).toBe('3876235366388279544');
  });

  it('replaces a pseudo NewMsgId (== CreateTime or == MsgId) by a SHA-256 of the content, stable across re-deliveries', () => {
    const a = only(itemText({ msgType: 10002, content: fn, newMsgId: '1691926802', createTime: 1691926802, from: '', to: '', session: '' }));
    const canonical = JSON.stringify([10002, 1691926802, '', '', '', fn]);
    expect(a.events[0]?.event_id).toBe(createHash('sha256').update(canonical).digest('hex'));
    // The same event again, re-serialised by another provider (white space, seq): same id.
    const again = itemText({ msgType: 10002, content: fn, newMsgId: '1691926802', createTime: 1691926802, from: '', to: '', session: '', seq: '99' }).replaceAll(',"', ', "');
    expect(only(again).events[0]?.event_id).toBe(a.events[0]?.event_id);
    const byMsgId = only(itemText({ msgType: 10002, content: fn, newMsgId: '77', msgId: '77', createTime: 1691926802, from: '', to: '', session: '' }));
    expect(byMsgId.events[0]?.event_id).toBe(a.events[0]?.event_id);
    const other = only(itemText({ msgType: 10002, content: fn.replace('6407', '6408'), newMsgId: '1691926802', createTime: 1691926802 }));
    expect(other.events[0]?.event_id).not.toBe(a.events[0]?.event_id);
  });

  it('keeps the whole item in raw', () => {
    const text = itemText({ msgType: 51, content: "<msg><op id='5'><name>lastMessage</name></op></msg>" });
    expect(only(text).events[0]).toMatchObject({ event_type: 'statusnotify', raw: text, session_id: SESSION });
  });

  it('makes the file-upload placeholder (appmsg 74) an event, not a message', () => {
    const out = only(itemText({ msgType: 49, content: '<msg><appmsg><title>a.xlsx</title><type>74</type><appattach><totallen>9</totallen></appattach></appmsg></msg>' }));
    expect(out.messages).toEqual([]);
    expect(out.events[0]).toMatchObject({ event_type: 'file_upload', event_id: '8412057736190466213' });
  });
});

describe('dead letters', () => {
  it('refuse an item whose parsed content grows past twice the item cap, keeping its bytes', () => {
    // 19,990 empty <dataitem/> in a chat record: 220 KB of XML, megabytes of parsed items.
    const inner = `<recordinfo><datalist>${'<dataitem/>'.repeat(19_990)}</datalist></recordinfo>`;
    const text = itemText({ msgType: 49, content: `<msg><appmsg><title>聊天记录</title><type>19</type><recorditem><![CDATA[${inner}]]></recorditem></appmsg></msg>` });
    const out = only(text);
    expect(out.messages).toEqual([]);
    expect(out.deadLetters[0]?.error_code).toBe('MSGPIPE_ERR_XML_LIMIT');
    expect(out.deadLetters[0]?.error_message).toMatch(/^Parsed content of \d+ bytes exceeds the 2097152-byte cap$/);
    expect(Buffer.from(out.deadLetters[0]!.original_base64, 'base64').toString('utf8')).toBe(text);
    // A chat record of ordinary length is a row.
    const small = `<recordinfo><datalist>${'<dataitem datatype="1"><datadesc>好的</datadesc></dataitem>'.repeat(300)}</datalist></recordinfo>`;
    const ok = only(itemText({ msgType: 49, content: `<msg><appmsg><title>聊天记录</title><type>19</type><recorditem><![CDATA[${small}]]></recorditem></appmsg></msg>` }));
    expect(ok.messages[0]?.msg_type).toBe('chatrecord');
  });

  it('carry the exact original bytes, even from a slice of a larger page buffer', () => {
    const page = new TextEncoder().encode(`{"list":[${itemText({ msgType: 3, content: '<msg><img>' })}]}`);
    const span = itemSpans(page, ['list'])?.[0];
    const bytes = page.subarray(span?.start ?? 0, span?.end ?? 0);
    const out = transformFinderItem(record(bytes, 7), NOW);
    const dl = out.deadLetters[0];
    expect(dl).toMatchObject({ stage: 'transform', error_code: 'MSGPIPE_ERR_XML', origin_key: 'shop-a:CgwIARCB#7', occurred_at: NOW, tenant: 'corp123', source: 'shop-a', source_type: 'gewe' });
    expect(Buffer.from(dl?.original_base64 ?? '', 'base64')).toEqual(Buffer.from(bytes));
    expect(out.messages).toEqual([]);
  });

  it('honour a configured item cap', () => {
    const small = createFinderTransform({ maxItemBytes: 100 });
    expect(small(record(itemText()), NOW).deadLetters[0]?.error_code).toBe('MSGPIPE_ERR_TOO_LARGE');
    expect(transformFinderItem(record(itemText()), NOW).deadLetters).toEqual([]);
  });
});
