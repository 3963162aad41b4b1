/**
 * Control sysmsgs: server instructions to the client, not chat content → events
 * (`event_type` = the sysmsg type).
 *
 * ```text
 * <sysmsg type="functionmsg">
 *   <functionmsg>                                                  1 → payload (every child, as text)
 *     <cgi>/cgi-bin/micromsg-bin/findergetlivetips</cgi>             → payload.cgi
 *     <cmdid>6407</cmdid>, <businessid>70001</businessid>            → payload.cmdid, payload.businessid
 *     <functionmsgid>FinderLiveNotificationMsg_…</functionmsgid>     → payload.functionmsgid
 *     <op>, <version>, <retryinterval>, <custombuff>, <actiontime> … → payload.*
 *     <addmsg>…</addmsg>                                       0..1  → payload.addmsg (nested object)
 *   </functionmsg>
 * </sysmsg>
 *
 * <sysmsg type="finderliveclosenotifymsg">
 *   <finderliveclosenotifymsg>
 *     <live_id>2042557163204371840</live_id>                         → payload.live_id (exact text)
 *     <object_id>14192909587060689023</object_id>                    → payload.object_id (uint64: exact text)
 *     <revoke_id>, <tips_id>, <functionmsgid>                        → payload.revoke_id, …
 *   </finderliveclosenotifymsg>
 * </sysmsg>
 *
 * <sysmsg type="dynacfg|bizlivenotify|ClientCheckConsistency|…">
 *   <dynacfg><Item key="FinderLetterMaxLen">2000</Item>…</dynacfg>   → payload (the whole root when it
 *   <version>1731059000</version>                                        holds more than the variant)
 * </sysmsg>
 * ```
 *
 * Every value stays text, so ids past 2^53 (and past 2^63) are exact. The payload mirrors the
 * element (see {@link toPlain}); the whole item is also kept in the event's `raw`.
 */
import type { EventKind } from '../kind.ts';
import { child } from '../xml.ts';
import type { XmlElement } from '../xml.ts';

/** sysmsg types that are server instructions. Types containing `notify` are also treated so. */
export const CONTROL_SYSMSG_TYPES: ReadonlySet<string> = new Set([
  'functionmsg',
  'finderliveclosenotifymsg',
  'dynacfg',
  'dynacfg_split',
  'ClientCheckConsistency',
  'ClientCheckGetExtInfo',
  'modtextstatus',
  'secmsg',
  'editrevokecontent',
  'bizlivenotify',
  'voipmt',
  'multivoip',
]);

/** True for a sysmsg type that is an instruction: listed, or a live/other notification. */
export function isControlSysmsg(type: string): boolean {
  return CONTROL_SYSMSG_TYPES.has(type) || /notify/i.test(type);
}

/**
 * The element as plain JSON. A leaf without attributes is its trimmed text; otherwise an object
 * of `@attribute` keys, child names (repeated names → arrays) and `#text` for non-blank text:
 * `<Item key="FinderLetterMaxLen"><![CDATA[2000]]></Item>` → `{"@key":"FinderLetterMaxLen","#text":"2000"}`.
 */
export function toPlain(el: XmlElement): unknown {
  const text = el.text.trim();
  if (el.children.length === 0 && el.attrs.size === 0) return text;
  // Null prototype: element names such as `__proto__` become ordinary keys.
  const out = Object.create(null) as Record<string, unknown>;
  for (const [name, value] of el.attrs) out[`@${name}`] = value;
  for (const c of el.children) {
    const value = toPlain(c);
    if (!(c.name in out)) out[c.name] = value;
    else {
      const prev = out[c.name];
      if (Array.isArray(prev)) prev.push(value);
      else out[c.name] = [prev, value];
    }
  }
  if (text !== '') out['#text'] = text;
  return out;
}

/** Reads a control sysmsg from the `<sysmsg>` root. */
export function readControl(root: XmlElement, type: string): EventKind {
  // `<sysmsg type="functionmsg"><functionmsg>…</functionmsg></sysmsg>`: the payload is the inner
  // element. When the root holds more than that (`<dynacfg>…</dynacfg><version>…</version>`),
  // the whole root is kept so nothing is dropped.
  const only = root.children.length === 1 ? child(root, type) : undefined;
  const plain = toPlain(only ?? root);
  const payload = typeof plain === 'object' && plain !== null ? (plain as Record<string, unknown>) : { text: plain };
  // The root's `type` attribute is the event_type already.
  if (only === undefined) delete payload['@type'];
  return { kind: 'event', eventType: type, sysType: type, payload };
}
