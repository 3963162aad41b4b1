/**
 * The per-kind readers, through the public entry point, on the fields that are easy to get
 * wrong. The golden fixtures pin whole rows; these say why a field has its value.
 */
import { describe, expect, it } from 'vitest';

import type { MessageRow } from '../../../src/core/types.ts';
import { invalidMessageReason } from '../../../src/sink/messages.ts';
import { transformFinderItem } from '../../../src/transform/finder.ts';
import { NOW, itemText, record } from './support.ts';
import type { ItemFields } from './support.ts';

function row(f: ItemFields): MessageRow {
  const out = transformFinderItem(record(itemText(f)), NOW);
  expect(out.deadLetters).toEqual([]);
  const m = out.messages[0];
  if (m === undefined) throw new Error(`no message row: ${JSON.stringify(out)}`);
  return m;
}

function payload(f: ItemFields): Record<string, unknown> {
  return JSON.parse(row(f).content) as Record<string, unknown>;
}

describe('text', () => {
  it('takes off a wxid_ or @suffix sender prefix, and only that', () => {
    expect(row({ content: 'wxid_p4k2m9x7c1a822:\n在吗' })).toMatchObject({ content_text: '在吗', content: '{"content":"在吗","sender":"wxid_p4k2m9x7c1a822"}' });
    expect(row({ content: '12345678901@chatroom:\n在吗' }).content_text).toBe('在吗');
    expect(row({ content: '注意:\n明天发货' }).content_text).toBe('注意:\n明天发货');
    expect(row({ content: 'Question:\nwhen?' }).content_text).toBe('Question:\nwhen?');
    expect(row({ content: 'http://x.cn:\nlink' }).content_text).toBe('http://x.cn:\nlink');
    // An address-like first line of a letter is text, not a WeChat username.
    expect(row({ content: 'support@shop:\n我要退货' }).content_text).toBe('support@shop:\n我要退货');
    expect(row({ content: 'fv1_cb68e6952228@findermsgstranger:\n你好' }).content_text).toBe('你好');
  });

  it('takes off a custom-id prefix only when it is the item sender', () => {
    expect(row({ from: 'xiaolin2024', content: 'xiaolin2024:\n好' }).content_text).toBe('好');
    expect(row({ from: 'someone_else', content: 'xiaolin2024:\n好' }).content_text).toBe('xiaolin2024:\n好');
  });
});

describe('media', () => {
  it('location: x is the latitude, y the longitude; place and address are searchable', () => {
    const m = row({ msgType: 48, content: '<msg><location x="31.230416" y="121.473701" scale="16" label="人民大道200号" poiname="人民广场" /></msg>' });
    expect(JSON.parse(m.content)).toMatchObject({ latitude: 31.230416, longitude: 121.473701, zoom: 16, title: '人民广场', address: '人民大道200号' });
    expect(m.content_text).toBe('人民广场\n人民大道200号');
  });

  it('voice: play_length in seconds, voicelength kept in ms', () => {
    expect(payload({ msgType: 34, content: '<msg><voicemsg voicelength="4170" length="6412" /></msg>' })).toMatchObject({ play_length: 4, voicelength: 4170, voice_size: 6412 });
  });

  it('emoji: spaces around = and &amp; in the URL', () => {
    expect(payload({ msgType: 47, content: '<msg><emoji md5 = "b1" len = "98" width= "240" cdnurl = "http://x/?a=1&amp;b=2"></emoji></msg>' })).toMatchObject({
      md5sum: 'b1',
      imagesize: 98,
      width: 240,
      cdnurl: 'http://x/?a=1&b=2',
    });
  });

  it('reads an XML content after a BOM and white space, and a bare element without <msg>', () => {
    expect(payload({ msgType: 3, content: '\uFEFF \n<img md5="ab" length="12"/>' })).toMatchObject({ md5sum: 'ab', filesize: 12 });
  });

  it('takes off the sender prefix of a group member with a custom id before an XML body', () => {
    const group = { from: '123@chatroom' };
    expect(payload({ ...group, msgType: 3, content: 'zhang-san:\n<msg><img md5="a" length="7"/></msg>' })).toMatchObject({ md5sum: 'a', filesize: 7 });
    expect(row({ ...group, msgType: 49, content: 'alice_88:\n<msg><appmsg><title>t</title><type>5</type></appmsg></msg>' })).toMatchObject({ msg_type: 'link', app_type: 5 });
    // Not XML after the line: the content is malformed, as before.
    const out = transformFinderItem(record(itemText({ ...group, msgType: 3, content: 'alice_88:\nhello' })), NOW);
    expect(out.deadLetters.map((d) => d.error_code)).toEqual(['MSGPIPE_ERR_XML']);
  });

  it('keeps a type number past Int32 as -1 on an unknown row, which the sink stores', () => {
    const wide = row({ msgType: 4294967296, content: 'x' });
    expect(wide).toMatchObject({ msg_type: 'unknown', wx_msg_type: -1 });
    expect(invalidMessageReason(wide)).toBeUndefined();
    const app = row({ msgType: 49, content: '<msg><appmsg><title>hi</title><type>4294967296</type></appmsg></msg>' });
    expect(app).toMatchObject({ msg_type: 'unknown', wx_msg_type: 49, app_type: -1 });
    expect(invalidMessageReason(app)).toBeUndefined();
    expect(app.raw_content).toContain('<type>4294967296</type>');
  });
});

describe('appmsg', () => {
  const app = (inner: string): ItemFields => ({ msgType: 49, content: `<msg><appmsg appid="" sdkver="0">${inner}</appmsg></msg>` });

  it('reads a CDATA and space-padded <type>', () => {
    expect(row(app('<title>微信红包</title><type><![CDATA[2001]]></type>'))).toMatchObject({ msg_type: 'redpacket', app_type: 2001 });
    expect(row(app('<title>t</title><type> 5 </type>'))).toMatchObject({ msg_type: 'link', app_type: 5 });
  });

  it('finder feed: objectId past 2^63 exact, videoPlayDuration junk cut to its leading integer', () => {
    const p = payload(app('<type>51</type><finderFeed><objectId>18446744073709551615</objectId><mediaList><media><videoPlayDuration>10&gt;&gt;</videoPlayDuration></media><media><videoPlayDuration>7</videoPlayDuration></media></mediaList></finderFeed>'));
    expect(p['objectId']).toBe('18446744073709551615');
    expect((p['media'] as { videoPlayDuration: number }[]).map((m) => m.videoPlayDuration)).toEqual([10, 7]);
  });

  it('quote: content_text is the reply, pre_msgid the quoted svrid, the inner XML parsed again', () => {
    const m = row(app('<title>就要这个</title><type>57</type><refermsg><type>3</type><svrid>7015382946102283117</svrid><content>&lt;msg&gt;&lt;img md5="0f6d" length="9"/&gt;&lt;/msg&gt;</content></refermsg>'));
    expect(m).toMatchObject({ msg_type: 'quote', content_text: '就要这个', pre_msgid: '7015382946102283117' });
    expect(JSON.parse(m.content)).toMatchObject({ refermsg: { quoted: { msg_type: 'image', content: { md5sum: '0f6d', filesize: 9 } } } });
  });

  it('quote: stops parsing quoted layers past the nesting limit', () => {
    let xml = '<msg><img md5="deep"/></msg>';
    for (let i = 0; i < 5; i++) {
      const enc = xml.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');
      xml = `<msg><appmsg><title>L${i}</title><type>57</type><refermsg><type>49</type><svrid>1</svrid><content>${enc}</content></refermsg></appmsg></msg>`;
    }
    const text = JSON.stringify(JSON.parse(row({ msgType: 49, content: xml }).content));
    expect(text).toContain('Quote nesting too deep');
    expect(text).not.toContain('"md5sum":"deep"');
  });

  it('chat record: the recorditem CDATA is parsed, with nested records', () => {
    const rec = '<recordinfo><title>记录</title><datalist count="2"><dataitem datatype="1" dataid="a"><datadesc>在吗</datadesc></dataitem><dataitem datatype="17" dataid="b"><recordxml><recordinfo><datalist><dataitem datatype="1"><datadesc>早</datadesc></dataitem></datalist></recordinfo></recordxml></dataitem></datalist></recordinfo>';
    const p = payload(app(`<title>记录</title><des>小林: 在吗</des><type>19</type><recorditem><![CDATA[${rec}]]></recorditem>`));
    const items = (p['record'] as { items: { datadesc: string; record?: { items: { datadesc: string }[] } }[] }).items;
    expect(items.map((i) => i.datadesc)).toEqual(['在吗', '']);
    expect(items[1]?.record?.items[0]?.datadesc).toBe('早');
  });

  it('an unknown sub-type is kept as unknown with title, description and url', () => {
    const m = row(app('<title>群公告</title><des>休息</des><type>87</type><url>https://a/?x=1&amp;y=2</url>'));
    expect(m).toMatchObject({ msg_type: 'unknown', app_type: 87, content_text: '群公告\n休息' });
    expect(JSON.parse(m.content)).toMatchObject({ url: 'https://a/?x=1&y=2' });
  });

  it('empty appmsg content is an unknown row, not a dead letter', () => {
    expect(row({ msgType: 49, content: '' })).toMatchObject({ msg_type: 'unknown', app_type: 0 });
  });
});

describe('sysmsg', () => {
  it('pat renders ${wxid} placeholders as the username', () => {
    const m = row({ msgType: 10002, content: '<sysmsg type="pat"><pat><fromusername>wxid_a</fromusername><template><![CDATA["${wxid_a}" 拍了拍 "${wxid_b}"]]></template></pat></sysmsg>' });
    expect(m).toMatchObject({ msg_type: 'pat', sys_type: 'pat', content_text: '"wxid_a" 拍了拍 "wxid_b"' });
  });

  it('sysmsgtemplate fills $name$ from the link list, nicknames joined by the separator', () => {
    const xml = '<sysmsg type="sysmsgtemplate"><sysmsgtemplate><content_template type="tmpl_type_profile"><template><![CDATA["$adder$"邀请"$names$"加入了群聊]]></template><link_list><link name="adder"><memberlist><member><nickname>小林</nickname></member></memberlist></link><link name="names"><memberlist><member><nickname>A</nickname></member><member><username>wxid_b</username></member></memberlist><separator>, </separator></link></link_list></content_template></sysmsgtemplate></sysmsg>';
    expect(row({ msgType: 10002, content: xml }).content_text).toBe('"小林"邀请"A, wxid_b"加入了群聊');
  });

  it('a group-prefixed sysmsg is still read', () => {
    expect(row({ msgType: 10002, content: '12345678901@chatroom:\n<sysmsg type="pat"><pat><template>x</template></pat></sysmsg>' }).msg_type).toBe('pat');
  });

  it('an unknown sysmsg type is an unknown row; a *notify* type is an event', () => {
    expect(row({ msgType: 10002, content: '<sysmsg type="brandnew"><x/></sysmsg>' })).toMatchObject({ msg_type: 'unknown', sys_type: 'brandnew' });
    const out = transformFinderItem(record(itemText({ msgType: 10002, content: '<sysmsg type="finderlivestartnotify"><a>1</a></sysmsg>' })), NOW);
    expect(out.events[0]).toMatchObject({ event_type: 'finderlivestartnotify', payload: '{"a":"1"}' });
  });

  it('system text 10000 drops link pseudo-tags and keeps their text', () => {
    expect(row({ msgType: 10000, content: '你已添加了<_wc_custom_link_ href="weixin://x">小林</_wc_custom_link_>。' }).content_text).toBe('你已添加了小林。');
  });
});
