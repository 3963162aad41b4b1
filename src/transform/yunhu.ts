/**
 * The transform stage for Yunhu (云湖): one raw record in, typed rows out.
 *
 * A Yunhu record is one of two things, told apart by its first byte:
 *
 * - a message (`yunhu.Msg`, protobuf, the exact bytes of field 2 of a list response) →
 *   a {@link MessageRow}, plus a {@link RecallMark} when `recall_time` is set and an
 *   {@link EditMark} when `edit_time` is set (the row itself already holds the latest content;
 *   the mark carries it to a stored copy, which the sink does not insert twice);
 * - an edit-history entry (JSON, `{` first: one element of list-message-edit-record's
 *   `data.list`) → a {@link MessageEditRow}. A protobuf `Msg` never starts with `{` (0x7b is
 *   field 15 as a group start, which the message does not have).
 *
 * The chat is not in the message: the record's `cursor` names it (`<chat_type>:<chat_id>@<msg_seq>`,
 * set by the source), so the Kafka raw topic carries it too.
 *
 * Mapping (DESIGN §6): msgid = msg_id; session_id = chat id; session_type = external for
 * chat_type 1 (user) and 3 (bot), group for 2, with room_id = the group id; from_id = sender;
 * is_sender = direction "right"; peer_id = the chat (the user, bot or group); peer_name /
 * peer_avatar = the sender's name and avatar when the sender is that peer; msg_time = send_time
 * (ms); seq = msg_seq (exact); wx_msg_type = content_type; pre_msgid = quote_msg_id;
 * at_user_list = mentioned ids. The sender (name, avatar, tags), quote, command and buttons are
 * kept in `content`. raw_content = the record's bytes (the whole `Msg` as the server sent it) in
 * base64: the decoder skips every field proto/yunhu does not name (a content type 14 A2UI
 * payload, a newer server's fields), so a re-encoding of the decoded message would lose them,
 * and the table keeps the only copy in the embedded mode (no raw topic).
 *
 * Pure: no I/O, no clock; never throws for bad input.
 */
import type { ErrorCode } from '../core/errors.ts';
import { decodeUtf8, parseLossless, toDecimal } from '../core/json.ts';
import type { DeadLetterRow, EditMark, MessageEditRow, MessageRow, RawRecord, RecallMark, TransformOutput } from '../core/types.ts';
import { decodeYunhu, scalarText, WireError } from '../ingest/yunhu-proto.ts';
import { int32OrMinusOne, oversizedBytes, usv } from './values.ts';
import { jsonOrString, oldContentText, yunhuKind } from './yunhu-content.ts';

/** Largest record accepted, in bytes; a larger one is a dead letter `MSGPIPE_ERR_TOO_LARGE`. */
export const YUNHU_MAX_RECORD_BYTES = 1024 * 1024;

const MAX_ERROR_MESSAGE = 300;
/** Largest DateTime64(3) the tables hold. */
const MAX_MS = 10_413_791_999_999;
const OPEN_BRACE = 0x7b;
const CURSOR = /^([123]):(\P{Cc}{1,128})@(\d{1,20})$/u;
/** A msg_id we accept as a key. */
const MSG_ID = /^\P{Cc}{1,128}$/u;

/** Options of {@link createYunhuTransform}. */
export interface YunhuTransformOptions {
  readonly maxRecordBytes?: number;
}

class Bad extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.code = code;
  }
}

function deadLetter(record: RawRecord, code: ErrorCode, message: string, now: number): TransformOutput {
  const { origin, bytes } = record;
  const row: DeadLetterRow = {
    tenant: origin.tenant,
    source: origin.source,
    source_type: origin.sourceType,
    stage: 'transform',
    error_code: code,
    error_message: message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE)}…` : message,
    original_base64: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64'),
    origin_key: `${origin.source}:${record.cursor}#${record.index}`,
    occurred_at: now,
  };
  return { messages: [], events: [], deadLetters: [row], recalls: [] };
}

interface Chat {
  readonly chatType: number;
  readonly chatId: string;
}

function chatOf(record: RawRecord): Chat {
  const m = CURSOR.exec(record.cursor);
  if (m === null) throw new Bad('MSGPIPE_ERR_SHAPE', 'Record cursor does not name its chat (<chat_type>:<chat_id>@<msg_seq>)');
  return { chatType: Number(m[1]), chatId: m[2] ?? '' };
}

function obj(value: unknown): Readonly<Record<string, unknown>> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function str(o: Readonly<Record<string, unknown>>, key: string): string {
  const v = o[key];
  return typeof v === 'string' ? v : '';
}

/** A unix-ms time field (decimal string) as a number the tables hold. */
function ms(value: unknown, field: string): number {
  const text = scalarText(value, '0');
  const n = Number(text);
  if (!/^\d{1,20}$/.test(text) || !Number.isSafeInteger(n) || n > MAX_MS) throw new Bad('MSGPIPE_ERR_SHAPE', `${field} is not a unix ms time`);
  return n;
}

function messageOutput(record: RawRecord, chat: Chat, now: number, maxBytes: number): TransformOutput {
  let msg: Record<string, unknown>;
  try {
    msg = decodeYunhu('Msg', record.bytes);
  } catch (err) {
    if (err instanceof WireError) throw new Bad('MSGPIPE_ERR_PROTOBUF', `Message is not a yunhu.Msg: ${err.message}`);
    throw err;
  }
  const msgId = usv(str(msg, 'msg_id'));
  if (msgId === '') throw new Bad('MSGPIPE_ERR_SHAPE', 'Message has no msg_id');
  // Ids are keys (the sink joins key parts with U+001F): no control characters, bounded length.
  if (!MSG_ID.test(msgId)) throw new Bad('MSGPIPE_ERR_SHAPE', 'Message msg_id has control characters or exceeds 128 characters');
  const seq = String(msg['msg_seq']);
  const sendTime = ms(msg['send_time'], 'send_time');
  const editTime = ms(msg['edit_time'], 'edit_time');
  const recallTime = ms(msg['recall_time'], 'recall_time');
  const contentType = Number(msg['content_type']);
  const content = obj(msg['content']);
  const sender = obj(msg['sender']);
  const kind = yunhuKind(Number.isSafeInteger(contentType) && contentType <= 2 ** 31 - 1 ? contentType : -1, content);
  const { origin } = record;
  const senderId = usv(str(sender, 'chat_id'));
  const isSender = str(msg, 'direction') === 'right' ? 1 : 0;
  const group = chat.chatType === 2;
  const peerSent = !group && senderId === chat.chatId;
  const mentioned = ((content['mentioned_id'] ?? []) as unknown[]).map((v) => usv(String(v)));
  const quoteId = usv(str(msg, 'quote_msg_id'));
  const cmd = msg['cmd'] === null ? null : obj(msg['cmd']);
  const payload = {
    kind: kind.kind,
    ...kind.fields,
    sender: {
      chat_id: senderId,
      chat_type: Number(sender['chat_type'] ?? 0),
      name: usv(str(sender, 'name')),
      avatar_url: usv(str(sender, 'avatar_url')),
      tag_old: ((sender['tag_old'] ?? []) as unknown[]).map((v) => usv(String(v))),
      tag: ((sender['tag'] ?? []) as unknown[]).map((t) => ({ id: scalarText(obj(t)['id'], '0'), text: usv(str(obj(t), 'text')), color: str(obj(t), 'color') })),
    },
    ...(mentioned.length > 0 ? { mentioned_id: mentioned } : {}),
    ...(str(content, 'buttons') === '' ? {} : { buttons: jsonOrString(usv(str(content, 'buttons'))) }),
    ...(quoteId === '' && str(content, 'quote_msg_text') === ''
      ? {}
      : {
          quote: {
            msg_id: quoteId,
            text: usv(str(content, 'quote_msg_text')),
            image_url: str(content, 'quote_image_url'),
            image_name: usv(str(content, 'quote_image_name')),
            video_url: str(content, 'quote_video_url'),
            video_time: scalarText(content['quote_video_time'], '0'),
          },
        }),
    ...(cmd === null ? {} : { cmd: { cmd_id: scalarText(cmd['cmd_id'], '0'), name: usv(str(cmd, 'name')), type: scalarText(cmd['type'], '0') } }),
    ...(editTime > 0 ? { edit_time: editTime } : {}),
  };
  const contentJson = usv(JSON.stringify(payload));
  const rawContent = Buffer.from(record.bytes.buffer, record.bytes.byteOffset, record.bytes.byteLength).toString('base64');
  const text = usv(kind.text);
  // JSON escaping makes a control character six bytes, and an edit carries text, content and
  // raw content a second time: within the cap each, the record of a message stays under the
  // 8 MiB a Kafka record may take (about 6.7 MiB at most, edits included).
  const size = oversizedBytes(maxBytes, contentJson, text);
  if (size !== undefined) throw new Bad('MSGPIPE_ERR_TOO_LARGE', `Parsed content of ${size} bytes exceeds the ${maxBytes}-byte cap`);
  const seqNumber = Number(seq);
  const row: MessageRow = {
    tenant: origin.tenant,
    source: origin.source,
    source_type: origin.sourceType,
    staff_id: origin.staffId,
    msgid: msgId,
    legacy_msgid: '',
    session_id: chat.chatId,
    session_type: group ? 'group' : 'external',
    room_id: group ? chat.chatId : '',
    action: 'send',
    from_id: senderId,
    // A 1:1 message the account received names no receiver: the account's own user id.
    tolist: group || isSender === 1 ? [chat.chatId] : [origin.account ?? origin.staffId],
    peer_id: chat.chatId,
    is_sender: isSender,
    msg_time: sendTime,
    seq,
    msg_seq: Number.isSafeInteger(seqNumber) ? seqNumber : 0,
    msg_type: kind.msgType,
    wx_msg_type: int32OrMinusOne(contentType),
    app_type: 0,
    sys_type: '',
    content_text: text,
    content: contentJson,
    raw_content: rawContent,
    msg_source: '',
    at_user_list: mentioned,
    // Not a key of ours, but a reference to one: kept only when it could be one (content.quote has it as sent).
    pre_msgid: MSG_ID.test(quoteId) ? quoteId : '',
    sync_key_type: 0,
    item_type: 0,
    sub_type: 0,
    status: 0,
    img_status: 0,
    extinfo: '',
    peer_name: peerSent ? usv(str(sender, 'name')) : '',
    peer_avatar: peerSent ? usv(str(sender, 'avatar_url')) : '',
    ingested_at: now,
  };
  const recalls: RecallMark[] =
    recallTime > 0
      ? [{ tenant: origin.tenant, staff_id: origin.staffId, session_id: chat.chatId, target_msgid: msgId, recall_time: recallTime }]
      : [];
  // Yunhu may list a recalled message with its content emptied: the edit mark of that listing
  // sets only the edit time, so the last text stored stays (marked recalled by the recall mark).
  const withheld = recallTime > 0 && isEmptyContent(content);
  const edits: EditMark[] =
    editTime > 0
      ? [
          {
            tenant: origin.tenant,
            staff_id: origin.staffId,
            session_id: chat.chatId,
            target_msgid: msgId,
            edit_time: editTime,
            msg_type: row.msg_type,
            wx_msg_type: row.wx_msg_type,
            content_text: withheld ? '' : text,
            content: withheld ? '' : contentJson,
            raw_content: withheld ? '' : rawContent,
            ...(withheld ? { content_withheld: true as const } : {}),
          },
        ]
      : [];
  return { messages: [row], events: [], deadLetters: [], recalls, ...(edits.length > 0 ? { edits } : {}) };
}

/** Whether a decoded `MsgContent` holds nothing: every field at its default ('', '0' or []). */
function isEmptyContent(content: Readonly<Record<string, unknown>>): boolean {
  return Object.values(content).every((v) => v === undefined || v === null || v === '' || v === '0' || v === 0 || (Array.isArray(v) && v.length === 0));
}

function editEntryOutput(record: RawRecord, chat: Chat, now: number): TransformOutput {
  const text = decodeUtf8(record.bytes);
  if (text === undefined) throw new Bad('MSGPIPE_ERR_UTF8', 'Edit record is not valid UTF-8');
  let value: unknown;
  try {
    value = parseLossless(text);
  } catch (err) {
    throw new Bad('MSGPIPE_ERR_JSON', `Edit record is not valid JSON: ${(err as Error).message.replace(/ \(line \d+ column \d+\)$/, '')}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Bad('MSGPIPE_ERR_SHAPE', 'Edit record is not a JSON object');
  const entry = value as Record<string, unknown>;
  const editId = toDecimal(entry['id']);
  const msgId = entry['msgId'];
  if (editId === undefined || !/^\d{1,20}$/.test(editId)) throw new Bad('MSGPIPE_ERR_SHAPE', 'Edit record id is not an unsigned integer');
  if (typeof msgId !== 'string' || !MSG_ID.test(msgId)) throw new Bad('MSGPIPE_ERR_SHAPE', 'Edit record msgId is empty, too long or has control characters');
  const contentOld = entry['contentOld'];
  if (typeof contentOld !== 'string') throw new Bad('MSGPIPE_ERR_SHAPE', 'Edit record contentOld is not a string');
  const contentType = Number(toDecimal(entry['contentType']) ?? '0');
  const type = Number.isSafeInteger(contentType) && contentType >= 0 && contentType <= 2 ** 31 - 1 ? contentType : 0;
  const { origin } = record;
  const row: MessageEditRow = {
    tenant: origin.tenant,
    source: origin.source,
    source_type: origin.sourceType,
    staff_id: origin.staffId,
    session_id: chat.chatId,
    msgid: usv(msgId),
    edit_id: editId,
    content_type: type,
    content_old: usv(contentOld),
    content_text_old: usv(oldContentText(type, contentOld)),
    msg_time: ms(toDecimal(entry['createTime']), 'createTime'),
    edit_time: ms(toDecimal(entry['msgTime']), 'msgTime'),
    raw: usv(text),
    ingested_at: now,
  };
  return { messages: [], events: [], deadLetters: [], recalls: [], editHistory: [row] };
}

/** Makes a Yunhu transform with the given limits; {@link transformYunhuRecord} uses the defaults. */
export function createYunhuTransform(options: YunhuTransformOptions = {}): (record: RawRecord, now: number) => TransformOutput {
  const maxBytes = options.maxRecordBytes ?? YUNHU_MAX_RECORD_BYTES;
  return (record, now) => {
    const { bytes } = record;
    if (bytes.byteLength > maxBytes) {
      return deadLetter(record, 'MSGPIPE_ERR_TOO_LARGE', `Record of ${bytes.byteLength} bytes exceeds the ${maxBytes}-byte cap`, now);
    }
    try {
      const chat = chatOf(record);
      return bytes[0] === OPEN_BRACE ? editEntryOutput(record, chat, now) : messageOutput(record, chat, now, maxBytes);
    } catch (err) {
      if (err instanceof Bad) return deadLetter(record, err.code, err.message, now);
      // A value nested thousands deep parses, but overflows the stack when written out again.
      if (err instanceof RangeError) return deadLetter(record, 'MSGPIPE_ERR_SHAPE', `Record cannot be handled: ${err.message}`, now);
      throw err;
    }
  };
}

const defaultTransform = createYunhuTransform();

/**
 * Transforms one Yunhu record (a protobuf message or an edit-history entry) into typed rows.
 *
 * Never throws for bad input: bytes that do not decode, lack a msg_id, or carry impossible
 * times come back as one dead letter with the original bytes. Unknown content types are kept as
 * `unknown` rows.
 *
 * @param record The raw record; its `cursor` names the chat.
 * @param now Ingestion time, unix ms.
 */
export function transformYunhuRecord(record: RawRecord, now: number): TransformOutput {
  return defaultTransform(record, now);
}
