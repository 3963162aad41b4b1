/**
 * MsgType 3: image.
 *
 * ```text
 * <msg>
 *   <img                                  1
 *     md5="…"                               → content.md5sum
 *     length="48213"                        → content.filesize
 *     aeskey="…" encryver="1"               → content.aeskey, content.encryver
 *     cdnthumburl cdnthumbaeskey            → content.cdnthumburl, content.cdnthumbaeskey
 *     cdnthumblength cdnthumbwidth cdnthumbheight   → content.cdnthumb* (numbers)
 *     cdnmidimgurl cdnmidwidth cdnmidheight         → content.cdnmid* (mid = the normal image)
 *     cdnbigimgurl hdlength cdnhdwidth cdnhdheight  → content.cdnbigimgurl, content.hdlength, content.cdnhd*
 *   />
 *   <platform_signature/>, <imgdatahash/>  0..1  (ignored)
 * </msg>
 * ```
 *
 * `md5sum` and `filesize` are the msg-server attachment names; the CDN fields keep their XML
 * names. content_text is empty, as msg-server shows images.
 */
import type { MessageKind } from './kind.ts';
import { leadingInt } from './values.ts';
import { attr, selfOrChild } from './xml.ts';
import type { XmlElement } from './xml.ts';

/** Reads an image message from its parsed content (`undefined` for empty content). */
export function readImage(root: XmlElement | undefined): MessageKind {
  const img = selfOrChild(root, 'img');
  return {
    kind: 'message',
    msgType: 'image',
    text: '',
    payload: {
      md5sum: attr(img, 'md5'),
      filesize: leadingInt(attr(img, 'length')),
      aeskey: attr(img, 'aeskey'),
      encryver: leadingInt(attr(img, 'encryver')),
      cdnthumburl: attr(img, 'cdnthumburl'),
      cdnthumbaeskey: attr(img, 'cdnthumbaeskey'),
      cdnthumblength: leadingInt(attr(img, 'cdnthumblength')),
      cdnthumbwidth: leadingInt(attr(img, 'cdnthumbwidth')),
      cdnthumbheight: leadingInt(attr(img, 'cdnthumbheight')),
      cdnmidimgurl: attr(img, 'cdnmidimgurl'),
      cdnmidwidth: leadingInt(attr(img, 'cdnmidwidth')),
      cdnmidheight: leadingInt(attr(img, 'cdnmidheight')),
      cdnbigimgurl: attr(img, 'cdnbigimgurl'),
      hdlength: leadingInt(attr(img, 'hdlength')),
      cdnhdwidth: leadingInt(attr(img, 'cdnhdwidth')),
      cdnhdheight: leadingInt(attr(img, 'cdnhdheight')),
    },
  };
}
