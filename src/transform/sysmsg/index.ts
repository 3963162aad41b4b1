/**
 * MsgType 10002: `<sysmsg type="…">`. Dispatches on the `type` attribute:
 *
 * | type | reader | msg_type / event |
 * |---|---|---|
 * | revokemsg | revoke.ts | revoke (+ recall mark) |
 * | pat | pat.ts | pat |
 * | sysmsgtemplate, roomtoolstips, mmchatroombarannouncememt, delchatroommember, NewXmlChatRoomAccessVerifyApplication | template.ts | system |
 * | functionmsg, finderliveclosenotifymsg, dynacfg, bizlivenotify, …, any `*notify*` | control.ts | event `<type>` |
 * | anything else, or no `<sysmsg>` root | here | unknown (raw content kept) |
 */
import type { Parsed } from '../kind.ts';
import type { XmlElement } from '../xml.ts';
import { isControlSysmsg, readControl } from './control.ts';
import { readPat } from './pat.ts';
import { readRevoke } from './revoke.ts';
import { DISPLAY_SYSMSG_TYPES, readDisplaySysmsg } from './template.ts';

/** Reads a sysmsg from its parsed content (`undefined` for empty content). */
export function readSysmsg(root: XmlElement | undefined): Parsed {
  const type = root?.name === 'sysmsg' ? (root.attrs.get('type') ?? '').trim() : '';
  if (root === undefined || type === '') return { kind: 'message', msgType: 'unknown', text: '', sysType: type, payload: {} };
  if (type === 'revokemsg') return readRevoke(root);
  if (type === 'pat') return readPat(root);
  if (DISPLAY_SYSMSG_TYPES.has(type)) return readDisplaySysmsg(root, type);
  if (isControlSysmsg(type)) return readControl(root, type);
  return { kind: 'message', msgType: 'unknown', text: '', sysType: type, payload: {} };
}
