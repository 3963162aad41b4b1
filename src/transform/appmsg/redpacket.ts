/**
 * appmsg type 2001: a red packet (红包) → `redpacket`. `<type>` is often CDATA:
 * `<type><![CDATA[2001]]></type>`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>, <des>                                  → content.title, content.description, content_text
 *   <type><![CDATA[2001]]></type>                   → app_type
 *   <wcpayinfo>                                     1 (children mostly CDATA)
 *     <templateid>, <url>, <iconurl>, <nativeurl>     → content.templateid, content.url, content.iconurl, content.nativeurl
 *     <receivertitle>恭喜发财，大吉大利</receivertitle>   → content.receivertitle (the sender's wish; content_text)
 *     <sendertitle>, <scenetext>, <senderdes>, <receiverdes> → content.sendertitle, …
 *     <sceneid>, <innertype>, <invalidtime>           → content.sceneid, content.innertype, content.invalidtime (numbers)
 *     <paymsgid>                                      → content.paymsgid
 *   </wcpayinfo>
 * </appmsg></msg>
 * ```
 */
import type { MessageKind } from '../kind.ts';
import { joinText, leadingInt } from '../values.ts';
import { child, textAt } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** Reads a red packet. */
export function readRedPacket(head: AppMsgHead): MessageKind {
  const p = child(head.appmsg, 'wcpayinfo');
  const wish = textAt(p, 'receivertitle');
  return {
    kind: 'message',
    msgType: 'redpacket',
    text: joinText(head.title, head.des, wish),
    appType: head.type,
    payload: {
      title: head.title,
      description: head.des,
      templateid: textAt(p, 'templateid').trim(),
      url: textAt(p, 'url').trim(),
      iconurl: textAt(p, 'iconurl').trim(),
      nativeurl: textAt(p, 'nativeurl').trim(),
      receivertitle: wish,
      sendertitle: textAt(p, 'sendertitle'),
      scenetext: textAt(p, 'scenetext'),
      senderdes: textAt(p, 'senderdes'),
      receiverdes: textAt(p, 'receiverdes'),
      sceneid: leadingInt(textAt(p, 'sceneid')),
      innertype: leadingInt(textAt(p, 'innertype')),
      invalidtime: leadingInt(textAt(p, 'invalidtime')),
      paymsgid: textAt(p, 'paymsgid').trim(),
    },
  };
}
