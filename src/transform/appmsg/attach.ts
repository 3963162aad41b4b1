/**
 * appmsg types 2 (image shared from an app) → `image`, and 8 / 15 (app sticker) → `emotion`:
 * rare shares whose payload is an `appattach`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>, <type>2</type>               → content.title, app_type
 *   <appattach>                           0..1
 *     <totallen>, <attachid>, <cdnattachurl>, <aeskey>, <fileext>  → content.filesize (imagesize), …
 *     <emoticonmd5>                         0..1 → content.md5sum (stickers)
 *     <cdnthumburl>, <cdnthumbaeskey>       → content.cdnthumburl, content.cdnthumbaeskey
 *   </appattach>
 *   <md5>                                 0..1 → content.md5sum
 * </appmsg></msg>
 * ```
 */
import type { MessageKind } from '../kind.ts';
import { leadingInt } from '../values.ts';
import { child, textAt } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** Reads appmsg type 2: an image shared by an app. */
export function readAppImage(head: AppMsgHead): MessageKind {
  const att = child(head.appmsg, 'appattach');
  return {
    kind: 'message',
    msgType: 'image',
    text: '',
    appType: head.type,
    payload: {
      md5sum: textAt(head.appmsg, 'md5').trim(),
      filesize: leadingInt(textAt(att, 'totallen')),
      aeskey: textAt(att, 'aeskey').trim(),
      attachid: textAt(att, 'attachid').trim(),
      cdnattachurl: textAt(att, 'cdnattachurl').trim(),
      cdnthumburl: textAt(att, 'cdnthumburl').trim(),
      cdnthumbaeskey: textAt(att, 'cdnthumbaeskey').trim(),
      title: head.title,
    },
  };
}

/** Reads appmsg types 8 and 15: a sticker shared by an app. */
export function readAppEmoji(head: AppMsgHead): MessageKind {
  const att = child(head.appmsg, 'appattach');
  const md5 = textAt(att, 'emoticonmd5').trim();
  return {
    kind: 'message',
    msgType: 'emotion',
    text: '',
    appType: head.type,
    payload: {
      md5sum: md5 === '' ? textAt(head.appmsg, 'md5').trim() : md5,
      imagesize: leadingInt(textAt(att, 'totallen')),
      cdnattachurl: textAt(att, 'cdnattachurl').trim(),
      aeskey: textAt(att, 'aeskey').trim(),
      title: head.title,
    },
  };
}
