/**
 * appmsg types 3 (music), 4 (video share), 5 (article link; also group invitations) → `link`,
 * and type 1 (text shared from an app) → `text`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>夏季新品上架｜限时 8 折</title>   → content.title, content_text
 *   <des>点击查看详情</des>                 → content.description, content_text
 *   <type>5</type>                        → app_type
 *   <url>https://mp.weixin.qq.com/s?__biz=…&amp;mid=…</url>  → content.link_url (entities decoded)
 *   <thumburl>https://mmbiz.qpic.cn/…</thumburl>            → content.image_url
 *   <dataurl>, <lowurl>                   0..1 (music)      → content.dataurl, content.lowurl
 *   <sourceusername>gh_…</sourceusername>, <sourcedisplayname> → content.sourceusername, content.sourcedisplayname
 * </appmsg><fromusername/></msg>
 * ```
 *
 * Type 5 is also a group invitation whose title is localised ("邀请你加入群聊" / "Group
 * Invitation"); nothing is keyed on display text, so both are links.
 */
import type { MessageKind } from '../kind.ts';
import { joinText } from '../values.ts';
import { textAt } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** Reads a link-like appmsg (types 3, 4, 5). */
export function readLink(head: AppMsgHead): MessageKind {
  return {
    kind: 'message',
    msgType: 'link',
    text: joinText(head.title, head.des),
    appType: head.type,
    payload: {
      title: head.title,
      description: head.des,
      link_url: head.url,
      image_url: head.thumburl,
      dataurl: textAt(head.appmsg, 'dataurl').trim(),
      lowurl: textAt(head.appmsg, 'lowurl').trim(),
      sourceusername: head.sourceusername,
      sourcedisplayname: head.sourcedisplayname,
      appid: head.appid,
    },
  };
}

/** Reads appmsg type 1: text shared from an app; the title is the text. */
export function readAppText(head: AppMsgHead): MessageKind {
  return {
    kind: 'message',
    msgType: 'text',
    text: head.title,
    appType: head.type,
    payload: { content: head.title, appid: head.appid },
  };
}
