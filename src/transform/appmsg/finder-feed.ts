/**
 * appmsg type 51: a shared 视频号 (Channels) post → `finder_feed`. The most common non-text item
 * in private letters.
 *
 * ```text
 * <msg><appmsg>
 *   <title>当前微信版本不支持展示该内容，请升级至最新版本。</title>  → content.title (a client-upgrade placeholder)
 *   <type>51</type>                                           → app_type
 *   <finderFeed>                                              1
 *     <objectId>14395017722846300161</objectId>                 → content.objectId (uint64 > 2^63: exact text)
 *     <objectNonceId>, <feedType>, <mediaCount>                 → content.objectNonceId, content.feedType, content.mediaCount
 *     <nickname>, <desc>                                        → content.nickname, content.desc, content_text
 *     <username>v2_…@finder</username>, <avatar>                → content.username, content.avatar
 *     <liveId>, <authIconType>, <authIconUrl>, <bizUsernameV2>  → content.liveId, content.authIconType, …
 *     <mediaList><media>…</media></mediaList>                   0..n → content.media[]
 *       <mediaType>, <url>, <thumbUrl>, <coverUrl>, <fullCoverUrl>, <width>, <height>
 *       <videoPlayDuration>23</videoPlayDuration>                 → media.videoPlayDuration (leading integer:
 *                                                                   `10&gt;&gt;` has been seen)
 *   </finderFeed>
 * </appmsg></msg>
 * ```
 *
 * The title is the same placeholder for every feed, so content_text is the author and the post
 * text instead.
 */
import type { MessageKind } from '../kind.ts';
import { joinText, leadingInt, uint64Text } from '../values.ts';
import { child, childrenNamed, textAt } from '../xml.ts';
import type { XmlElement } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** An id that should be a uint64; kept as written when it is not a plain decimal. */
export function idText(text: string): string {
  const id = uint64Text(text);
  return id === '' ? text.trim() : id;
}

function readMedia(m: XmlElement): Record<string, unknown> {
  return {
    mediaType: leadingInt(textAt(m, 'mediaType')),
    url: textAt(m, 'url').trim(),
    thumbUrl: textAt(m, 'thumbUrl').trim(),
    coverUrl: textAt(m, 'coverUrl').trim(),
    fullCoverUrl: textAt(m, 'fullCoverUrl').trim(),
    width: leadingInt(textAt(m, 'width')),
    height: leadingInt(textAt(m, 'height')),
    videoPlayDuration: leadingInt(textAt(m, 'videoPlayDuration')),
  };
}

/** Reads a Channels post share. */
export function readFinderFeed(head: AppMsgHead): MessageKind {
  const f = child(head.appmsg, 'finderFeed');
  const list = child(f, 'mediaList');
  const media = [...childrenNamed(list, 'media'), ...childrenNamed(f, 'media')].map(readMedia);
  const nickname = textAt(f, 'nickname');
  const desc = textAt(f, 'desc');
  return {
    kind: 'message',
    msgType: 'finder_feed',
    text: joinText(nickname, desc),
    appType: head.type,
    payload: {
      title: head.title,
      objectId: idText(textAt(f, 'objectId')),
      objectNonceId: textAt(f, 'objectNonceId').trim(),
      feedType: leadingInt(textAt(f, 'feedType')),
      nickname,
      username: textAt(f, 'username').trim(),
      avatar: textAt(f, 'avatar').trim(),
      desc,
      mediaCount: leadingInt(textAt(f, 'mediaCount')),
      liveId: idText(textAt(f, 'liveId')),
      authIconType: leadingInt(textAt(f, 'authIconType')),
      authIconUrl: textAt(f, 'authIconUrl').trim(),
      bizUsernameV2: textAt(f, 'bizUsernameV2').trim(),
      media,
    },
  };
}
