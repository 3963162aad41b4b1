/**
 * MsgType 1: plain text, no XML.
 *
 * ```text
 * Content.string  "请问这款还有现货吗？😂 下单后多久发货"   → content_text, content.content
 * group style     "wxid_p4k2m9x7c1a822:\n@小林 明天上午十点开会"
 *                  └ sender prefix ┘                      → content.sender; the rest → content_text
 * ```
 *
 * Private letters carry no sender prefix, but a provider that reuses its group code path could
 * add one. The prefix is only taken off when it is plainly a WeChat username, so a letter that
 * starts with `注意:\n` or `Question:\n` keeps its first line.
 */
import type { KindContext, MessageKind } from './kind.ts';

/**
 * `wxid_p4k2m9x7c1a822:\n…`, `12345678901@chatroom:\n<sysmsg…`: a username, a colon, a newline.
 * Usernames are `wxid_…` or carry one of WeChat's own `@suffix`es (reference A3: `@chatroom`,
 * `@openim`, `@finder`, `@findermsgstranger`, `@findermsg`, `@gamelife`, `@stranger`), so a
 * letter that starts with `support@shop:\n` keeps its first line.
 */
const SENDER_PREFIX = /^(wxid_[0-9A-Za-z_-]{1,64}|[0-9A-Za-z_.-]{1,128}@(?:chatroom|openim|finder|findermsgstranger|findermsg|gamelife|stranger)):\r?\n/;

/** Splits a group-style sender prefix off content; `sender` is `''` when there is none. */
export function splitSenderPrefix(content: string, ctx: Pick<KindContext, 'from'>): { sender: string; body: string } {
  const m = SENDER_PREFIX.exec(content);
  if (m !== null) return { sender: m[1] ?? '', body: content.slice(m[0].length) };
  // A custom WeChat id without `wxid_` is only trusted when it is the item's own sender.
  if (ctx.from !== '' && content.startsWith(`${ctx.from}:\n`)) return { sender: ctx.from, body: content.slice(ctx.from.length + 2) };
  return { sender: '', body: content };
}

/** Reads a text message. */
export function readText(content: string, ctx: KindContext): MessageKind {
  const { sender, body } = splitSenderPrefix(content, ctx);
  return {
    kind: 'message',
    msgType: 'text',
    text: body,
    payload: sender === '' ? { content: body } : { content: body, sender },
  };
}
