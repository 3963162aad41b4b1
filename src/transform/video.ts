/**
 * MsgType 43: video.
 *
 * ```text
 * <msg>
 *   <videomsg                                1
 *     md5="…" length="2840193"                 → content.md5sum, content.filesize
 *     playlength="17"                          → content.play_length (s)
 *     aeskey cdnvideourl                       → content.aeskey, content.cdnvideourl
 *     cdnthumburl cdnthumbaeskey               → content.cdnthumburl, content.cdnthumbaeskey
 *     cdnthumblength cdnthumbwidth cdnthumbheight → content.cdnthumb* (numbers)
 *     newmd5 rawmd5 rawlength cdnrawvideourl   → content.newmd5, content.rawmd5, content.rawlength, content.cdnrawvideourl
 *     overwritenewmsgid="0"                    → content.overwritenewmsgid (exact id text)
 *     fromusername                             → content.fromusername
 *   />
 * </msg>
 * ```
 */
import type { MessageKind } from './kind.ts';
import { leadingInt, uint64Text } from './values.ts';
import { attr, selfOrChild } from './xml.ts';
import type { XmlElement } from './xml.ts';

/** Reads a video message from its parsed content. */
export function readVideo(root: XmlElement | undefined): MessageKind {
  const v = selfOrChild(root, 'videomsg');
  return {
    kind: 'message',
    msgType: 'video',
    text: '',
    payload: {
      md5sum: attr(v, 'md5'),
      filesize: leadingInt(attr(v, 'length')),
      play_length: leadingInt(attr(v, 'playlength')),
      aeskey: attr(v, 'aeskey'),
      cdnvideourl: attr(v, 'cdnvideourl'),
      cdnthumburl: attr(v, 'cdnthumburl'),
      cdnthumbaeskey: attr(v, 'cdnthumbaeskey'),
      cdnthumblength: leadingInt(attr(v, 'cdnthumblength')),
      cdnthumbwidth: leadingInt(attr(v, 'cdnthumbwidth')),
      cdnthumbheight: leadingInt(attr(v, 'cdnthumbheight')),
      newmd5: attr(v, 'newmd5'),
      rawmd5: attr(v, 'rawmd5'),
      rawlength: leadingInt(attr(v, 'rawlength')),
      cdnrawvideourl: attr(v, 'cdnrawvideourl'),
      overwritenewmsgid: uint64Text(attr(v, 'overwritenewmsgid')),
      fromusername: attr(v, 'fromusername'),
    },
  };
}
