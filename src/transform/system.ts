/**
 * MsgType 10000: a grey system line, localised plain text that may hold link pseudo-tags.
 *
 * ```text
 * Content.string  你已添加了<_wc_custom_link_ href="weixin://contacts/profile/wxid_x">小林</_wc_custom_link_>，现在可以开始聊天了。
 *                 → content_text "你已添加了小林，现在可以开始聊天了。", content.content (the same)
 * ```
 *
 * It is not parsed as XML (it is not a document); the pseudo-tags are removed and their text kept.
 */
import type { MessageKind } from './kind.ts';

/** `<_wc_custom_link_ href="weixin://…">`, `</_wc_custom_link_>`, `<a href="…">`, `</a>`. */
const PSEUDO_TAG = /<\/?(?:_wc_custom_link_|a)(?:\s[^<>]*)?>/g;

/** Reads a MsgType 10000 system line. */
export function readSystemText(content: string): MessageKind {
  const text = content.replace(PSEUDO_TAG, '');
  return { kind: 'message', msgType: 'system', text, payload: { content: text } };
}
