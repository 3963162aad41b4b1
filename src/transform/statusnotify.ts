/**
 * MsgType 51: status notify, a multi-device sync signal ("I read this chat"). An event, not a
 * message.
 *
 * ```text
 * <msg>
 *   <op id="5">                                           1  @id → payload.op_id
 *     <name>lastMessage</name>                            1     → payload.name
 *     <arg>{"messageSvrId":"8412057736190466213",…}</arg> 0..1  → payload.arg (parsed when JSON, else text)
 *   </op>
 * </msg>
 * ```
 */
import { parseLossless } from '../core/json.ts';
import type { EventKind } from './kind.ts';
import { leadingInt, MAX_EMBEDDED_JSON_DEPTH } from './values.ts';
import { attr, selfOrChild, textAt } from './xml.ts';
import type { XmlElement } from './xml.ts';

function argValue(text: string): unknown {
  const t = text.trim();
  if (!t.startsWith('{') && !t.startsWith('[')) return text;
  try {
    // Lossless: ids inside the arg stay exact if a sender ever writes them as bare numbers.
    // Deeper than the cap, it stays the text it is.
    return parseLossless(t, { maxDepth: MAX_EMBEDDED_JSON_DEPTH });
  } catch {
    return text;
  }
}

/** Reads a status notify from its parsed content. */
export function readStatusNotify(root: XmlElement | undefined): EventKind {
  const op = selfOrChild(root, 'op');
  return {
    kind: 'event',
    eventType: 'statusnotify',
    payload: { op_id: leadingInt(attr(op, 'id')), name: textAt(op, 'name').trim(), arg: argValue(textAt(op, 'arg')) },
  };
}
