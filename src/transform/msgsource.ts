/**
 * `MsgSource`: message metadata XML. Only the mention list is read; the whole text is kept in
 * `msg_source`.
 *
 * ```text
 * <msgsource>
 *   <atuserlist>            0..1  CDATA or plain: ",wxid_a,wxid_b" | "notify@all"  → at_user_list
 *   <sec_msg_node>, <signature>, <tmp_node>, <bizflag>, <pua>, <alnode> …  (ignored)
 * </msgsource>
 * ```
 *
 * MsgSource is metadata, not the message: when it is malformed or hostile the message is still
 * stored, with no mentions, rather than dead-lettered.
 */
import { PoisonError } from '../core/errors.ts';
import { selfOrChild, parseXml } from './xml.ts';

/** Mentions from a MsgSource: `"<msgsource><atuserlist><![CDATA[,wxid_a, notify@all]]>…"` → `['wxid_a', 'notify@all']`. */
export function readAtUserList(msgSource: string): string[] {
  // Most items have no mentions: skip the parse entirely (private letters rarely mention).
  if (!msgSource.includes('atuserlist')) return [];
  let list: string;
  try {
    const root = parseXml(msgSource.trim());
    list = selfOrChild(root, 'atuserlist')?.text ?? '';
  } catch (err) {
    if (err instanceof PoisonError) return [];
    throw err;
  }
  // A Set, not `includes`: a list of 100k ids (a hostile item) must take linear time.
  const out = new Set<string>();
  for (const part of list.split(',')) {
    const id = part.trim();
    if (id !== '') out.add(id);
  }
  return [...out];
}
