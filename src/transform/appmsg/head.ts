/**
 * The fields every appmsg (MsgType 49) shares, read once and handed to the sub-type readers.
 *
 * ```text
 * <msg>
 *   <appmsg appid="" sdkver="0">     1   @appid → head.appid
 *     <title>, <des>                 0..1 → head.title, head.des (content_text = title + des)
 *     <type>5</type>                 1    → app_type (CDATA and spaces tolerated: <type><![CDATA[2001]]></type>)
 *     <url>, <thumburl>              0..1 → head.url, head.thumburl
 *     <sourceusername>, <sourcedisplayname> 0..1
 *     …sub-type elements
 *   </appmsg>
 *   <fromusername>                   0..1 → head.fromusername
 * </msg>
 * ```
 */
import { leadingInt } from '../values.ts';
import { attr, selfOrChild, textAt } from '../xml.ts';
import type { XmlElement } from '../xml.ts';

/** The shared appmsg fields. */
export interface AppMsgHead {
  readonly appmsg: XmlElement | undefined;
  readonly type: number;
  readonly title: string;
  readonly des: string;
  readonly url: string;
  readonly thumburl: string;
  readonly appid: string;
  readonly sourceusername: string;
  readonly sourcedisplayname: string;
  readonly fromusername: string;
}

/** Reads the shared fields from the parsed content of a MsgType 49 message. */
export function readAppMsgHead(root: XmlElement | undefined): AppMsgHead {
  const appmsg = selfOrChild(root, 'appmsg');
  return {
    appmsg,
    type: leadingInt(textAt(appmsg, 'type')),
    title: textAt(appmsg, 'title'),
    des: textAt(appmsg, 'des'),
    url: textAt(appmsg, 'url').trim(),
    thumburl: textAt(appmsg, 'thumburl').trim(),
    appid: attr(appmsg, 'appid'),
    sourceusername: textAt(appmsg, 'sourceusername').trim(),
    sourcedisplayname: textAt(appmsg, 'sourcedisplayname'),
    fromusername: (root === appmsg ? '' : textAt(root, 'fromusername')).trim(),
  };
}
