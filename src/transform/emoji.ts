/**
 * MsgType 47: custom sticker ("emotion" in msg-server's vocabulary).
 *
 * ```text
 * <msg>
 *   <emoji                                      1   (real senders write `len = "98211"`, `width= "240"`)
 *     type="2" width="240" height="240"           → content.type, content.width, content.height
 *     len="98211" md5="…"                         → content.imagesize, content.md5sum
 *     cdnurl="http://…&amp;bizid=1023"            → content.cdnurl (entities decoded)
 *     encrypturl aeskey thumburl                  → content.encrypturl, content.aeskey, content.thumburl
 *     externurl externmd5 productid designerid    → content.externurl, content.externmd5, content.productid, content.designerid
 *     desc                                        → content.desc, content_text
 *     fromusername tousername                     → content.fromusername, content.tousername
 *   ></emoji>
 *   <gameext type="0" content="0"/>             0..1  → content.gameext_type, content.gameext_content (dice / rock-paper-scissors)
 * </msg>
 * ```
 */
import type { MessageKind } from './kind.ts';
import { leadingInt } from './values.ts';
import { attr, child, selfOrChild } from './xml.ts';
import type { XmlElement } from './xml.ts';

/** Reads a sticker message from its parsed content. */
export function readEmoji(root: XmlElement | undefined): MessageKind {
  const e = selfOrChild(root, 'emoji');
  const game = child(root, 'gameext');
  const desc = attr(e, 'desc');
  return {
    kind: 'message',
    msgType: 'emotion',
    text: desc.trim(),
    payload: {
      type: leadingInt(attr(e, 'type')),
      width: leadingInt(attr(e, 'width')),
      height: leadingInt(attr(e, 'height')),
      imagesize: leadingInt(attr(e, 'len')),
      md5sum: attr(e, 'md5'),
      cdnurl: attr(e, 'cdnurl'),
      encrypturl: attr(e, 'encrypturl'),
      aeskey: attr(e, 'aeskey'),
      thumburl: attr(e, 'thumburl'),
      externurl: attr(e, 'externurl'),
      externmd5: attr(e, 'externmd5'),
      productid: attr(e, 'productid'),
      designerid: attr(e, 'designerid'),
      desc,
      fromusername: attr(e, 'fromusername'),
      tousername: attr(e, 'tousername'),
      gameext_type: leadingInt(attr(game, 'type')),
      gameext_content: leadingInt(attr(game, 'content')),
    },
  };
}
