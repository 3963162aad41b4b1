/**
 * What a per-kind reader makes of one message's content, before the entry point (finder.ts)
 * adds the item-level columns. Readers are pure and synchronous; bad XML reaches them as a
 * thrown {@link PoisonError} from xml.ts, which the entry point turns into a dead letter.
 */
import type { MsgType } from '../core/types.ts';
import type { Payload } from './values.ts';

/** Content that becomes a row in `messages`. */
export interface MessageKind {
  readonly kind: 'message';
  readonly msgType: MsgType;
  /** `content_text`: the searchable text. */
  readonly text: string;
  /** `content`: the typed payload. */
  readonly payload: Payload;
  /** appmsg `<type>` (MsgType 49). */
  readonly appType?: number;
  /** sysmsg `type` attribute (MsgType 10002). */
  readonly sysType?: string;
  /** The referenced message: the quoted `svrid`, the revoked `newmsgid`. */
  readonly preMsgid?: string;
  /** For revokes: the session named inside the revoke, used when the item has none. */
  readonly recallSession?: string;
}

/** Content that is a server instruction and becomes a row in `events`. */
export interface EventKind {
  readonly kind: 'event';
  /** `event_type`: functionmsg | finderliveclosenotifymsg | statusnotify | file_upload | … */
  readonly eventType: string;
  readonly payload: Payload;
  readonly appType?: number;
  readonly sysType?: string;
}

export type Parsed = MessageKind | EventKind;

/** What a reader may know about the message around the content it reads. */
export interface KindContext {
  readonly from: string;
  readonly to: string;
  /** 0 for an item's own content, 1 inside a quote, 2 inside a quote of a quote, … */
  readonly depth: number;
  /** Reads nested content (a quote's `refermsg/content`) with the same readers, one level deeper. */
  readonly parseNested: (wxMsgType: number, content: string) => Parsed;
}

/** Deepest nesting of quoted content that is parsed; deeper content is kept as text. */
export const MAX_NESTING = 3;
