/**
 * appmsg type 57: a reply quoting an earlier message → `quote`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>就要这个颜色</title>                → content.title, content_text (the reply text)
 *   <type>57</type>                          → app_type
 *   <refermsg>                               1
 *     <type>3</type>                           → content.refermsg.type (the quoted MsgType)
 *     <svrid>7015382946102283117</svrid>       → content.refermsg.svrid, pre_msgid (the quoted NewMsgId)
 *     <fromusr>, <chatusr>, <displayname>      → content.refermsg.fromusr, .chatusr, .displayname
 *     <createtime>1731059011</createtime>      → content.refermsg.createtime (s)
 *     <content>&lt;msg&gt;&lt;img …/&gt;&lt;/msg&gt;</content>
 *                                              → content.refermsg.content (decoded once: the quoted
 *                                                message's own content), and parsed again with the
 *                                                same hardened reader → content.refermsg.quoted
 *     <msgsource>&lt;msgsource&gt;…</msgsource> → content.refermsg.msgsource (decoded once, kept as text)
 *   </refermsg>
 * </appmsg></msg>
 * ```
 *
 * The quoted content is the second XML layer (a quote of a quote makes a third). A bad inner
 * layer does not lose the reply: `quoted` then says what failed and the text is kept.
 */
import { PoisonError } from '../../core/errors.ts';
import type { KindContext, MessageKind, Parsed } from '../kind.ts';
import { MAX_NESTING } from '../kind.ts';
import { leadingInt, uint64Text } from '../values.ts';
import { child, textAt } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

function summary(p: Parsed): Record<string, unknown> {
  return p.kind === 'message'
    ? { msg_type: p.msgType, content_text: p.text, content: p.payload }
    : { event_type: p.eventType, content: p.payload };
}

function quoted(type: number, content: string, ctx: KindContext): Record<string, unknown> {
  if (ctx.depth + 1 >= MAX_NESTING) return { error_code: 'MSGPIPE_ERR_XML_LIMIT', error_message: 'Quote nesting too deep' };
  try {
    return summary(ctx.parseNested(type, content));
  } catch (err) {
    if (err instanceof PoisonError) return { error_code: err.code, error_message: err.message };
    throw err;
  }
}

/** Reads a quote-reply. */
export function readQuote(head: AppMsgHead, ctx: KindContext): MessageKind {
  const r = child(head.appmsg, 'refermsg');
  const type = leadingInt(textAt(r, 'type'));
  const svrid = uint64Text(textAt(r, 'svrid'));
  const content = textAt(r, 'content');
  return {
    kind: 'message',
    msgType: 'quote',
    text: head.title.trim(),
    appType: head.type,
    preMsgid: svrid,
    payload: {
      title: head.title,
      refermsg: {
        type,
        svrid,
        fromusr: textAt(r, 'fromusr').trim(),
        chatusr: textAt(r, 'chatusr').trim(),
        displayname: textAt(r, 'displayname'),
        createtime: leadingInt(textAt(r, 'createtime')),
        content,
        msgsource: textAt(r, 'msgsource'),
        quoted: r === undefined ? {} : quoted(type, content, ctx),
      },
    },
  };
}
