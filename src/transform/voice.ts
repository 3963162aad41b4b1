/**
 * MsgType 34: voice note.
 *
 * ```text
 * <msg>
 *   <voicemsg                            1
 *     voicemd5="…"                         → content.md5sum (often empty)
 *     length="6412"                        → content.voice_size (bytes)
 *     voicelength="4170"                   → content.voicelength (ms), content.play_length (s, rounded)
 *     voiceurl="3052…" aeskey="…"          → content.voiceurl, content.aeskey
 *     voiceformat="4" bufid="0"            → content.voiceformat, content.bufid
 *     fromusername="…"                     → content.fromusername
 *   />
 * </msg>
 * ```
 *
 * msg-server's `play_length` is in seconds (WeCom's archive unit); WeChat's `voicelength` is in
 * milliseconds and is kept as well so nothing is lost to rounding. The SILK bytes some providers
 * put in `ImgBuf` are not stored.
 */
import type { MessageKind } from './kind.ts';
import { leadingInt } from './values.ts';
import { attr, selfOrChild } from './xml.ts';
import type { XmlElement } from './xml.ts';

/** Reads a voice message from its parsed content. */
export function readVoice(root: XmlElement | undefined): MessageKind {
  const v = selfOrChild(root, 'voicemsg');
  const ms = leadingInt(attr(v, 'voicelength'));
  return {
    kind: 'message',
    msgType: 'voice',
    text: '',
    payload: {
      md5sum: attr(v, 'voicemd5'),
      voice_size: leadingInt(attr(v, 'length')),
      play_length: Math.round(ms / 1000),
      voicelength: ms,
      voiceurl: attr(v, 'voiceurl'),
      aeskey: attr(v, 'aeskey'),
      voiceformat: leadingInt(attr(v, 'voiceformat')),
      bufid: attr(v, 'bufid'),
      fromusername: attr(v, 'fromusername'),
    },
  };
}
