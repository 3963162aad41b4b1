/**
 * appmsg type 2000: a WeChat Pay transfer (转账) → `transfer`.
 *
 * ```text
 * <msg><appmsg>
 *   <title>微信转账</title>, <des>收到转账0.10元…</des>  → content.title, content.description, content_text
 *   <type>2000</type>                                  → app_type
 *   <wcpayinfo>                                        1
 *     <paysubtype>1</paysubtype>                         → content.paysubtype (1 sent, 3 received, 4 refunded …)
 *     <feedesc>￥0.10</feedesc>                           → content.feedesc
 *     <transcationid>, <transferid>                      → content.transcationid (sic), content.transferid
 *     <invalidtime>, <begintransfertime>, <effectivedate> → content.invalidtime, … (numbers)
 *     <pay_memo>, <receiver_username>, <payer_username>   → content.pay_memo (also content_text), …
 *   </wcpayinfo>
 * </appmsg></msg>
 * ```
 */
import type { MessageKind } from '../kind.ts';
import { joinText, leadingInt } from '../values.ts';
import { child, textAt } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** Reads a transfer. */
export function readTransfer(head: AppMsgHead): MessageKind {
  const p = child(head.appmsg, 'wcpayinfo');
  const memo = textAt(p, 'pay_memo');
  return {
    kind: 'message',
    msgType: 'transfer',
    text: joinText(head.title, head.des, memo),
    appType: head.type,
    payload: {
      title: head.title,
      description: head.des,
      paysubtype: leadingInt(textAt(p, 'paysubtype')),
      feedesc: textAt(p, 'feedesc').trim(),
      transcationid: textAt(p, 'transcationid').trim(),
      transferid: textAt(p, 'transferid').trim(),
      invalidtime: leadingInt(textAt(p, 'invalidtime')),
      begintransfertime: leadingInt(textAt(p, 'begintransfertime')),
      effectivedate: leadingInt(textAt(p, 'effectivedate')),
      pay_memo: memo,
      receiver_username: textAt(p, 'receiver_username').trim(),
      payer_username: textAt(p, 'payer_username').trim(),
    },
  };
}
