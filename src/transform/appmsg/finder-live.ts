/**
 * appmsg type 63: a shared 视频号 live stream → `finder_live`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>正在直播</title>                          → content.title
 *   <type>63</type>                                 → app_type
 *   <finderLive>                                    1
 *     <finderLiveID>2042905931828851234</finderLiveID>     → content.finderLiveID (exact text)
 *     <finderObjectID>14395017722846300999</finderObjectID> → content.finderObjectID (uint64: exact text)
 *     <finderUsername>, <finderNonceID>                    → content.finderUsername, content.finderNonceID
 *     <nickname>, <desc> (often CDATA)                     → content.nickname, content.desc, content_text
 *     <headUrl>, <liveStatus>                              → content.headUrl, content.liveStatus
 *     <media><coverUrl>, <thumbUrl>, <width>, <height></media>  0..1 → content.coverUrl, …
 *   </finderLive>
 * </appmsg></msg>
 * ```
 */
import type { MessageKind } from '../kind.ts';
import { joinText, leadingInt } from '../values.ts';
import { child, textAt } from '../xml.ts';
import { idText } from './finder-feed.ts';
import type { AppMsgHead } from './head.ts';

/** Reads a Channels live-stream share. */
export function readFinderLive(head: AppMsgHead): MessageKind {
  const l = child(head.appmsg, 'finderLive');
  const media = child(l, 'media');
  const nickname = textAt(l, 'nickname');
  const desc = textAt(l, 'desc');
  return {
    kind: 'message',
    msgType: 'finder_live',
    text: joinText(nickname, desc),
    appType: head.type,
    payload: {
      title: head.title,
      finderLiveID: idText(textAt(l, 'finderLiveID')),
      finderObjectID: idText(textAt(l, 'finderObjectID')),
      finderUsername: textAt(l, 'finderUsername').trim(),
      finderNonceID: textAt(l, 'finderNonceID').trim(),
      nickname,
      desc,
      headUrl: textAt(l, 'headUrl').trim(),
      liveStatus: leadingInt(textAt(l, 'liveStatus')),
      coverUrl: textAt(media, 'coverUrl').trim(),
      thumbUrl: textAt(media, 'thumbUrl').trim(),
      width: leadingInt(textAt(media, 'width')),
      height: leadingInt(textAt(media, 'height')),
    },
  };
}
