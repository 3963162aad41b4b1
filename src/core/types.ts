/**
 * The records that flow between the stages: source → raw record → typed rows → tables.
 *
 * These shapes are the stage contracts of docs/component-spec.md. The embedded mode passes them
 * through in-process queues; the Kafka mode carries the same shapes as topic records
 * (raw records as exact bytes, rows as protobuf), so a stage never knows which mode it runs in.
 */

/** The source kinds of DESIGN §2. */
export const SOURCE_TYPES = ['gewe', 'videosapi', 'syncfinder', 'yunhu', 'wecom'] as const;
export type SourceType = (typeof SOURCE_TYPES)[number];

/** Who a record came from: fixed per configured source. */
export interface Origin {
  /** The configured source's unique `name`. */
  readonly source: string;
  readonly sourceType: SourceType;
  /** The tenant (`ext_corp_id`) the source belongs to. */
  readonly tenant: string;
  /** The staff identity (`ext_staff_id`): `staffId`, else `appId` / `wId`. */
  readonly staffId: string;
  /**
   * The upstream account itself, where the items do not name it (Yunhu's `userId`, the receiver
   * of a 1:1 message); the raw topics carry it as the `account` header.
   */
  readonly account?: string;
}

/**
 * One upstream item exactly as the provider sent it.
 *
 * `bytes` is the item exactly as it stood in the provider's response body (a byte slice, not a
 * re-serialisation, and not yet decoded: it may even be invalid UTF-8), so a dead letter can
 * always give back what arrived.
 */
export interface RawRecord {
  readonly origin: Origin;
  /** The exact upstream item bytes. */
  readonly bytes: Uint8Array;
  /** When the page holding the item was fetched, unix ms. */
  readonly fetchedAt: number;
  /** The cursor (keyBuff) the page was requested with. */
  readonly cursor: string;
  /** Position of the item in its page, from 0. */
  readonly index: number;
  /**
   * The conversation the item belongs to, where the source knows it without parsing the item
   * (Yunhu: the chat id). The raw topic's key uses it; without it the key reads the finder
   * item's `msgSessionId`.
   */
  readonly session?: string;
}

/** The message kinds of DESIGN §6 (`msg_type`). */
export const MSG_TYPES = [
  'text',
  'image',
  'file',
  'voice',
  'video',
  'card',
  'location',
  'emotion',
  'link',
  'weapp',
  'finder_feed',
  'finder_live',
  'quote',
  'chatrecord',
  'transfer',
  'redpacket',
  'revoke',
  'pat',
  'system',
  'unknown',
] as const;
export type MsgType = (typeof MSG_TYPES)[number];

/**
 * One chat message as stored in the `messages` table (one row per message).
 *
 * Field names are the column names. 64-bit identifiers are exact decimal strings.
 */
export interface MessageRow {
  readonly tenant: string;
  readonly source: string;
  readonly source_type: SourceType;
  readonly staff_id: string;
  /** Exact decimal NewMsgId. */
  readonly msgid: string;
  /** Legacy short MsgId as sent (may be negative); not a key. */
  readonly legacy_msgid: string;
  readonly session_id: string;
  readonly session_type: 'external' | 'internal' | 'group';
  readonly room_id: string;
  readonly action: 'send' | 'recall';
  readonly from_id: string;
  readonly tolist: readonly string[];
  /** The other side of the conversation: ToUserName when we sent it, else FromUserName. */
  readonly peer_id: string;
  readonly is_sender: 0 | 1;
  /** CreateTime × 1000. */
  readonly msg_time: number;
  /** content.seq, exact decimal. */
  readonly seq: string;
  readonly msg_seq: number;
  readonly msg_type: MsgType;
  /** Provider MsgType (1, 3, 49, 10002 …). */
  readonly wx_msg_type: number;
  /** appmsg `<type>` for MsgType 49, else 0. */
  readonly app_type: number;
  /** sysmsg `type` attribute for MsgType 10002, else ''. */
  readonly sys_type: string;
  /** The searchable text (DESIGN §6). */
  readonly content_text: string;
  /** The typed payload as a JSON object text: `attachments` / `chat_msg_content.content`. */
  readonly content: string;
  /**
   * The provider's content exactly as received: `Content.string` for the WeChat providers; for
   * Yunhu, the whole protobuf message in base64 (its bytes are not text, and fields we do not
   * decode must survive).
   */
  readonly raw_content: string;
  readonly msg_source: string;
  readonly at_user_list: readonly string[];
  /** The referenced message: the revoked one for `revoke`, the quoted one for `quote`. */
  readonly pre_msgid: string;
  readonly sync_key_type: number;
  readonly item_type: number;
  readonly sub_type: number;
  readonly status: number;
  readonly img_status: number;
  readonly extinfo: string;
  /** Peer display name and avatar when the source knows them, else ''. */
  readonly peer_name: string;
  readonly peer_avatar: string;
  readonly ingested_at: number;
}

/** A server instruction (functionmsg, live notifications, status notify): not a chat message. */
export interface EventRow {
  readonly tenant: string;
  readonly source: string;
  readonly source_type: SourceType;
  readonly staff_id: string;
  /** Stable identity of the event (NewMsgId, or a content hash where the id is a pseudo id). */
  readonly event_id: string;
  /** functionmsg | finderliveclosenotifymsg | statusnotify | … */
  readonly event_type: string;
  readonly event_time: number;
  readonly session_id: string;
  /** Extracted fields as a JSON object text. */
  readonly payload: string;
  readonly raw: string;
  readonly ingested_at: number;
}

/** Where a dead letter was made. */
export type DeadLetterStage = 'ingest' | 'transform' | 'sink';

/** A record that could not be processed, kept with its original bytes. */
export interface DeadLetterRow {
  readonly tenant: string;
  readonly source: string;
  readonly source_type: SourceType;
  readonly stage: DeadLetterStage;
  /** Stable error code (see src/core/errors.ts). */
  readonly error_code: string;
  readonly error_message: string;
  /** The original bytes, base64, exactly as received. */
  readonly original_base64: string;
  /** Where it came from: `<source>:<cursor>#<index>` for raw items. */
  readonly origin_key: string;
  readonly occurred_at: number;
}

/** A revocation to apply to an already stored message. */
export interface RecallMark {
  readonly tenant: string;
  readonly staff_id: string;
  readonly session_id: string;
  /** The revoked message's NewMsgId. */
  readonly target_msgid: string;
  readonly recall_time: number;
}

/**
 * An edit to apply to an already stored message (Yunhu): its content becomes the edited one.
 * Applied only when `edit_time` is later than the stored one, so re-delivery changes nothing.
 */
export interface EditMark {
  readonly tenant: string;
  readonly staff_id: string;
  readonly session_id: string;
  /** The edited message's msgid. */
  readonly target_msgid: string;
  /** When the message was last edited, unix ms. */
  readonly edit_time: number;
  readonly msg_type: MsgType;
  readonly wx_msg_type: number;
  readonly content_text: string;
  readonly content: string;
  readonly raw_content: string;
  /**
   * The edited content is not known (Yunhu lists a recalled message with its content emptied):
   * the mark sets only `edit_time`, and the stored content stays. The content fields are empty.
   */
  readonly content_withheld?: true;
}

/** One earlier version of an edited message (table `message_edits`). */
export interface MessageEditRow {
  readonly tenant: string;
  readonly source: string;
  readonly source_type: SourceType;
  readonly staff_id: string;
  readonly session_id: string;
  readonly msgid: string;
  /** The provider's id of this edit, exact decimal. */
  readonly edit_id: string;
  /** Provider content type of the old version. */
  readonly content_type: number;
  /** The old content as the provider sent it (a JSON text for Yunhu). */
  readonly content_old: string;
  /** The searchable text of the old content. */
  readonly content_text_old: string;
  /** When the message was sent, unix ms. */
  readonly msg_time: number;
  /** When this edit replaced `content_old`, unix ms. */
  readonly edit_time: number;
  /** The history entry exactly as received. */
  readonly raw: string;
  readonly ingested_at: number;
}

/** What a transform makes of one raw record. Empty arrays when it yields nothing of a kind. */
export interface TransformOutput {
  readonly messages: MessageRow[];
  readonly events: EventRow[];
  readonly deadLetters: DeadLetterRow[];
  readonly recalls: RecallMark[];
  /** Edits of stored messages (sources whose messages change after they were read). */
  readonly edits?: EditMark[];
  /** Earlier versions of edited messages. */
  readonly editHistory?: MessageEditRow[];
}
