/**
 * appmsg types 33 and 36: mini program → `weapp`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>限时拼团 ¥19.9</title>, <des>某某商城</des>     → content.title, content.description, content_text
 *   <type>33</type>                                      → app_type
 *   <url>https://mp.weixin.qq.com/mp/waerrpage?…</url>   → content.url
 *   <sourceusername>gh_…@app</sourceusername>            → content.sourceusername
 *   <sourcedisplayname>某某商城</sourcedisplayname>        → content.sourcedisplayname
 *   <weappinfo>                                          0..1 (children often CDATA)
 *     <username>, <appid>, <type>, <version>               → content.username, content.appid, content.weapp_type, content.version
 *     <pagepath>, <weappiconurl>, <shareId>                → content.pagepath, content.weappiconurl, content.shareId
 *   </weappinfo>
 *   <thumburl>                                           0..1 → content.image_url
 * </appmsg></msg>
 * ```
 */
import type { MessageKind } from '../kind.ts';
import { joinText, leadingInt } from '../values.ts';
import { child, textAt } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** Reads a mini-program share. */
export function readWeapp(head: AppMsgHead): MessageKind {
  const w = child(head.appmsg, 'weappinfo');
  return {
    kind: 'message',
    msgType: 'weapp',
    text: joinText(head.title, head.des, head.sourcedisplayname),
    appType: head.type,
    payload: {
      title: head.title,
      description: head.des,
      url: head.url,
      image_url: head.thumburl,
      sourceusername: head.sourceusername,
      sourcedisplayname: head.sourcedisplayname,
      username: textAt(w, 'username').trim(),
      appid: textAt(w, 'appid').trim(),
      weapp_type: leadingInt(textAt(w, 'type')),
      version: leadingInt(textAt(w, 'version')),
      pagepath: textAt(w, 'pagepath').trim(),
      weappiconurl: textAt(w, 'weappiconurl').trim(),
      shareId: textAt(w, 'shareId').trim(),
    },
  };
}
