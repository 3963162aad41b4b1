/**
 * appmsg type 19: a merged forward of several messages (合并转发) → `chatrecord`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>小林和小王的聊天记录</title>        → content.title, content_text
 *   <des>小林: 在吗\n小王: [图片]</des>          → content.description, content_text
 *   <type>19</type>                          → app_type
 *   <recorditem><![CDATA[                    1, a second XML document inside CDATA:
 *     <recordinfo>
 *       <title>, <desc>                        → content.record.title, .desc
 *       <datalist count="2">
 *         <dataitem datatype="1" dataid="…">   0..n → content.record.items[]
 *           <datadesc>在吗</datadesc>             → item.datadesc (the text of a text item)
 *           <datatitle>, <sourcename>, <sourcetime>, <srcMsgCreateTime>, <fromnewmsgid>
 *           <datafmt>, <datasize>, <fullmd5>, <cdndataurl>, <cdndatakey>, <cdnthumburl>, <link>
 *           <recordxml><recordinfo>…</recordinfo></recordxml>   datatype 17: a nested record → item.record
 *         </dataitem>
 *       </datalist>
 *     </recordinfo>
 *   ]]></recorditem>
 * </appmsg></msg>
 * ```
 *
 * Datatypes: 1 text, 2 image, 4 video, 5 link, 8 file, 17 nested record, 37 sticker. A bad
 * recorditem keeps the message (title, description) and says what failed in
 * `content.record_error`.
 */
import { PoisonError } from '../../core/errors.ts';
import type { MessageKind } from '../kind.ts';
import { joinText, leadingInt, uint64Text } from '../values.ts';
import { attr, child, childrenNamed, parseXml, selfOrChild, textAt } from '../xml.ts';
import type { XmlElement } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** Deepest record-in-record that is expanded. */
const MAX_RECORD_DEPTH = 4;

interface Record_ {
  title: string;
  desc: string;
  items: Record<string, unknown>[];
}

function nestedRecord(item: XmlElement, depth: number): Record_ | undefined {
  const xml = child(item, 'recordxml');
  if (xml === undefined || depth >= MAX_RECORD_DEPTH) return undefined;
  const info = child(xml, 'recordinfo');
  if (info !== undefined) return readRecordInfo(info, depth + 1);
  // Some senders put the nested record in the element as text (CDATA) rather than as elements.
  const text = xml.text.trim();
  if (!text.startsWith('<')) return undefined;
  try {
    return readRecordInfo(selfOrChild(parseXml(text), 'recordinfo'), depth + 1);
  } catch (err) {
    if (err instanceof PoisonError) return undefined;
    throw err;
  }
}

function readItem(item: XmlElement, depth: number): Record<string, unknown> {
  const out: Record<string, unknown> = {
    datatype: leadingInt(attr(item, 'datatype')),
    dataid: attr(item, 'dataid'),
    datadesc: textAt(item, 'datadesc'),
    datatitle: textAt(item, 'datatitle'),
    sourcename: textAt(item, 'sourcename'),
    sourcetime: textAt(item, 'sourcetime').trim(),
    srcMsgCreateTime: leadingInt(textAt(item, 'srcMsgCreateTime')),
    fromnewmsgid: uint64Text(textAt(item, 'fromnewmsgid')),
    datafmt: textAt(item, 'datafmt').trim(),
    datasize: leadingInt(textAt(item, 'datasize')),
    fullmd5: textAt(item, 'fullmd5').trim(),
    cdndataurl: textAt(item, 'cdndataurl').trim(),
    cdndatakey: textAt(item, 'cdndatakey').trim(),
    cdnthumburl: textAt(item, 'cdnthumburl').trim(),
    link: textAt(item, 'link').trim(),
  };
  const record = nestedRecord(item, depth);
  if (record !== undefined) out['record'] = record;
  return out;
}

function readRecordInfo(info: XmlElement | undefined, depth: number): Record_ {
  return {
    title: textAt(info, 'title'),
    desc: textAt(info, 'desc'),
    items: childrenNamed(child(info, 'datalist'), 'dataitem').map((i) => readItem(i, depth)),
  };
}

/** Reads a merged-forward chat record. */
export function readChatRecord(head: AppMsgHead): MessageKind {
  const payload: Record<string, unknown> = { title: head.title, description: head.des };
  const recordText = textAt(head.appmsg, 'recorditem').trim();
  if (recordText !== '') {
    try {
      payload['record'] = readRecordInfo(selfOrChild(parseXml(recordText), 'recordinfo'), 0);
    } catch (err) {
      if (!(err instanceof PoisonError)) throw err;
      payload['record_error'] = { error_code: err.code, error_message: err.message };
    }
  }
  return { kind: 'message', msgType: 'chatrecord', text: joinText(head.title, head.des), appType: head.type, payload };
}
