/**
 * sysmsg `pat`: "X 拍了拍 Y" (a nudge) → `pat`.
 *
 * ```text
 * <sysmsg type="pat">
 *   <pat>                                             1
 *     <fromusername>wxid_a</fromusername>               → content.fromusername
 *     <chatusername>, <pattedusername>                  → content.chatusername, content.pattedusername
 *     <patsuffix><![CDATA[的脑袋]]></patsuffix>          → content.patsuffix
 *     <template><![CDATA["${wxid_a}" 拍了拍我]]></template>  → content.template; rendered → content_text
 *   </pat>
 * </sysmsg>
 * ```
 *
 * The placeholders name usernames (`${wxid_a}`); the letter carries no display names, so a
 * placeholder is rendered as the username it names.
 */
import type { MessageKind } from '../kind.ts';
import { child, textAt } from '../xml.ts';
import type { XmlElement } from '../xml.ts';

/** `"${wxid_a}" 拍了拍我` → `"wxid_a" 拍了拍我`: `${…}` placeholders rendered as their name. */
export function renderDollarBraces(template: string, names: ReadonlyMap<string, string> = new Map()): string {
  return template.replace(/\$\{([^{}]{1,128})\}/g, (_m, id: string) => names.get(id) ?? id);
}

/** Reads a pat from the `<sysmsg>` root. */
export function readPat(root: XmlElement): MessageKind {
  const p = child(root, 'pat');
  const template = textAt(p, 'template');
  return {
    kind: 'message',
    msgType: 'pat',
    text: renderDollarBraces(template).trim(),
    sysType: 'pat',
    payload: {
      fromusername: textAt(p, 'fromusername').trim(),
      chatusername: textAt(p, 'chatusername').trim(),
      pattedusername: textAt(p, 'pattedusername').trim(),
      patsuffix: textAt(p, 'patsuffix'),
      template,
    },
  };
}
