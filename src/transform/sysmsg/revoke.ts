/**
 * sysmsg `revokemsg`: the sender recalled a message → a `revoke` row (action `recall`) and a
 * recall mark on the target.
 *
 * ```text
 * <sysmsg type="revokemsg">
 *   <revokemsg>                                  1
 *     <session>8c1e…@findermsg</session>           → content.session (recall session when the item has none)
 *     <msgid>1048377195</msgid>                    → content.msgid (legacy id of the target)
 *     <newmsgid>8412057736190466213</newmsgid>     → content.pre_msgid, pre_msgid, the recall target
 *     <replacemsg><![CDATA["小林" 撤回了一条消息]]></replacemsg>  → content.replacemsg, content_text
 *   </revokemsg>
 * </sysmsg>
 * ```
 *
 * The revoke item's own NewMsgId is often a pseudo id (equal to CreateTime): the target is found
 * through the inner `<newmsgid>` only.
 */
import type { MessageKind } from '../kind.ts';
import { uint64Text } from '../values.ts';
import { child, textAt } from '../xml.ts';
import type { XmlElement } from '../xml.ts';

/** Reads a revoke from the `<sysmsg>` root. */
export function readRevoke(root: XmlElement): MessageKind {
  const r = child(root, 'revokemsg');
  const target = uint64Text(textAt(r, 'newmsgid'));
  const session = textAt(r, 'session').trim();
  const replacemsg = textAt(r, 'replacemsg');
  return {
    kind: 'message',
    msgType: 'revoke',
    text: replacemsg.trim(),
    sysType: 'revokemsg',
    preMsgid: target,
    recallSession: session,
    payload: { pre_msgid: target, session, msgid: textAt(r, 'msgid').trim(), replacemsg },
  };
}
