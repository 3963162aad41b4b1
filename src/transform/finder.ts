/**
 * The transform stage for WeChat Channels (视频号) private letters: one raw sync item (GeWe,
 * VideosApi and /syncFinder send the same shape) in, typed rows out.
 *
 * ```text
 * item bytes ──UTF-8──▶ text ──parseLossless──▶ value ──readFinderItem──▶ FinderItem
 *        │                 │                       │                          │
 *        ▼                 ▼                       ▼                 parseContent (per MsgType)
 *   TOO_LARGE            UTF8                    JSON / SHAPE                   │
 *   (dead letters, original bytes kept)                          ┌─────────────┼──────────────┐
 *                                                                ▼             ▼              ▼
 *                                                          MessageRow     EventRow      XML / XML_DTD /
 *                                                       (+ RecallMark)                  XML_LIMIT dead letter
 * ```
 *
 * Column mapping (DESIGN §6): tenant/source/source_type/staff_id from the record's origin;
 * msgid = NewMsgId (exact; derived from the content where it is a pseudo id); from_id / tolist =
 * FromUserName / [ToUserName]; peer_id = isSender ? ToUserName : FromUserName; session_id =
 * msgSessionId; msg_time = CreateTime × 1000; seq = content.seq (exact); action = send, or recall
 * for a revoke row. msg_type, content_text and
 * content come from the per-kind readers (content.ts lists them).
 *
 * Pure: no I/O, no clock (`now` is the ingestion time), and it never throws for bad input. Only
 * a bug (a programmer error) can escape.
 */
import { createHash } from 'node:crypto';

import { PoisonError } from '../core/errors.ts';
import type { ErrorCode } from '../core/errors.ts';
import { decodeUtf8, parseLossless } from '../core/json.ts';
import type { DeadLetterRow, EventRow, MessageRow, RawRecord, RecallMark, TransformOutput } from '../core/types.ts';
import { parseContent, rootContext } from './content.ts';
import { readFinderItem } from './item.ts';
import type { FinderItem } from './item.ts';
import type { EventKind, MessageKind } from './kind.ts';
import { readAtUserList } from './msgsource.ts';
import { int32OrMinusOne, oversizedBytes } from './values.ts';

/**
 * Largest item accepted, in bytes. Real items are a few KB (an inline thumbnail or a SILK voice
 * note in `ImgBuf` reaches a few hundred KB); a larger one is a dead letter
 * `MSGPIPE_ERR_TOO_LARGE` with its bytes, so one hostile letter cannot make a multi-megabyte
 * row, a Kafka record past the broker's limit, or a parse that holds the stage. See ADR 0003.
 */
export const DEFAULT_MAX_ITEM_BYTES = 1024 * 1024;

/** Options of {@link createFinderTransform}. */
export interface FinderTransformOptions {
  /** Largest item accepted, in bytes (default {@link DEFAULT_MAX_ITEM_BYTES}). */
  readonly maxItemBytes?: number;
}

/** The transform function of one source kind: a raw record and the ingestion time in. */
export type FinderTransform = (record: RawRecord, now: number) => TransformOutput;

/** Longest `error_message` kept; parser messages can quote input. */
const MAX_ERROR_MESSAGE = 300;

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

/** The item fields that identify a finder item: {@link finderMessageId} reads only these. */
export type FinderItemIdentity = Pick<FinderItem, 'newMsgId' | 'msgId' | 'createTime' | 'msgType' | 'from' | 'to' | 'sessionId' | 'content'>;

/** MsgTypes whose messages can carry a pseudo NewMsgId: system lines (10000) and sysmsg (10002). */
const PSEUDO_CAPABLE_TYPES: ReadonlySet<number> = new Set([10000, 10002]);

/**
 * True when NewMsgId is a stand-in rather than a server id: control items and revokes can carry
 * `MsgId == NewMsgId == CreateTime` (reference A10), or 0. An id equal to MsgId counts only
 * within MsgId's 32 bits: a real 64-bit NewMsgId copied into MsgId by a provider stays the id.
 */
function isPseudoId(item: FinderItemIdentity): boolean {
  const id = item.newMsgId;
  return id === '0' || id === String(item.createTime) || (id === item.msgId && id.length <= 10 && Number(id) < 2 ** 32);
}

/**
 * SHA-256 over the fields that make an item what it is, so the same item delivered again (by
 * the same or another provider, whichever stand-in id it carries) gets the same digest.
 */
function contentDigest(item: FinderItemIdentity): Buffer {
  const canonical = JSON.stringify([item.msgType, item.createTime, item.from, item.to, item.sessionId, item.content]);
  return createHash('sha256').update(canonical).digest();
}

/**
 * The `msgid` stored for a finder message: NewMsgId, or where a system line or a sysmsg (such as
 * a revoke) has a pseudo id the first 64 bits of {@link contentDigest} as unsigned decimal. Two
 * revokes in the same second on one account share their pseudo id but not their content, so
 * each keeps its row; `legacy_msgid` and `msg_time` still hold what the provider sent. Other
 * messages keep NewMsgId whatever it looks like, so quotes and revokes that name it find them.
 */
export function finderMessageId(item: FinderItemIdentity): string {
  return PSEUDO_CAPABLE_TYPES.has(item.msgType) && isPseudoId(item) ? contentDigest(item).readBigUInt64BE(0).toString() : item.newMsgId;
}

/**
 * The session of a message's rows: msgSessionId, except that a revoke without one names its
 * conversation itself, and its row and its recall mark go there, not to a session '' of their own.
 */
function rowSession(item: FinderItem, parsed: MessageKind): string {
  return item.sessionId === '' && parsed.msgType === 'revoke' ? (parsed.recallSession ?? '') : item.sessionId;
}

/**
 * The session the transform gives the rows of an item whose `msgSessionId` is empty (a revoke can
 * name its conversation itself; server instructions have none): the Kafka ingest keys such a raw
 * record by it, so the revoke stays in order with the rest of its session. '' for an item that
 * does not parse: its dead letter is keyed by its origin, not its session.
 */
export function sessionOfItemWithoutSession(bytes: Uint8Array): string {
  // What the transform makes a dead letter (createFinderTransform) has no session.
  const text = decodeUtf8(bytes);
  if (text === undefined) return '';
  let value: unknown;
  try {
    value = parseLossless(text);
  } catch {
    return '';
  }
  try {
    const item = readFinderItem(value);
    if (item.sessionId !== '' || !PSEUDO_CAPABLE_TYPES.has(item.msgType)) return item.sessionId;
    const parsed = parseContent(item.msgType, item.content, rootContext(item.from, item.to));
    return parsed.kind === 'message' ? rowSession(item, parsed) : '';
  } catch (err) {
    if (err instanceof PoisonError || err instanceof RangeError) return '';
    throw err;
  }
}

function messageOutput(record: RawRecord, item: FinderItem, parsed: MessageKind, content: string, now: number): TransformOutput {
  const { origin } = record;
  const preMsgid = parsed.preMsgid ?? '';
  const sessionId = rowSession(item, parsed);
  const row: MessageRow = {
    tenant: origin.tenant,
    source: origin.source,
    source_type: origin.sourceType,
    staff_id: origin.staffId,
    msgid: finderMessageId(item),
    legacy_msgid: item.msgId,
    session_id: sessionId,
    session_type: 'external',
    room_id: '',
    action: parsed.msgType === 'revoke' ? 'recall' : 'send',
    from_id: item.from,
    tolist: item.to === '' ? [] : [item.to],
    peer_id: item.isSender === 1 ? item.to : item.from,
    is_sender: item.isSender,
    msg_time: item.createTime * 1000,
    seq: item.seq,
    msg_seq: item.msgSeq,
    msg_type: parsed.msgType,
    wx_msg_type: int32OrMinusOne(item.msgType),
    app_type: int32OrMinusOne(parsed.appType ?? 0),
    sys_type: parsed.sysType ?? '',
    content_text: parsed.text,
    content,
    raw_content: item.content,
    msg_source: item.msgSource,
    at_user_list: readAtUserList(item.msgSource),
    pre_msgid: preMsgid,
    sync_key_type: item.syncKeyType,
    item_type: item.itemType,
    sub_type: item.subType,
    status: item.status,
    img_status: item.imgStatus,
    extinfo: item.extinfo,
    peer_name: '',
    peer_avatar: '',
    ingested_at: now,
  };
  const recalls: RecallMark[] = [];
  if (parsed.msgType === 'revoke' && preMsgid !== '') {
    recalls.push({
      tenant: origin.tenant,
      staff_id: origin.staffId,
      session_id: sessionId,
      target_msgid: preMsgid,
      recall_time: item.createTime * 1000,
    });
  }
  return { messages: [row], events: [], deadLetters: [], recalls };
}

function eventOutput(record: RawRecord, text: string, item: FinderItem, parsed: EventKind, payload: string, now: number): TransformOutput {
  const { origin } = record;
  const row: EventRow = {
    tenant: origin.tenant,
    source: origin.source,
    source_type: origin.sourceType,
    staff_id: origin.staffId,
    event_id: isPseudoId(item) ? contentDigest(item).toString('hex') : item.newMsgId,
    event_type: parsed.eventType,
    event_time: item.createTime * 1000,
    session_id: item.sessionId,
    payload,
    // The whole item: an event has no columns for sender, receiver or sync fields, and nothing
    // about it may be lost.
    raw: text,
    ingested_at: now,
  };
  return { messages: [], events: [row], deadLetters: [], recalls: [] };
}

/**
 * Makes a finder transform with the given limits.
 *
 * Use {@link transformFinderItem} for the defaults.
 */
export function createFinderTransform(options: FinderTransformOptions = {}): FinderTransform {
  const maxItemBytes = options.maxItemBytes ?? DEFAULT_MAX_ITEM_BYTES;
  // The parsed payload and the text may each be twice the item (JSON escaping), so a row stays
  // near 5 MiB at most with the default cap, under the 8 MiB a Kafka record may take.
  const maxOutputBytes = 2 * maxItemBytes;
  return (record, now) => {
    const { bytes } = record;
    if (bytes.byteLength > maxItemBytes) {
      return deadLetter(record, 'MSGPIPE_ERR_TOO_LARGE', `Item of ${bytes.byteLength} bytes exceeds the ${maxItemBytes}-byte cap`, now);
    }
    const text = decodeUtf8(bytes);
    if (text === undefined) return deadLetter(record, 'MSGPIPE_ERR_UTF8', 'Item bytes are not valid UTF-8', now);
    let value: unknown;
    try {
      value = parseLossless(text);
    } catch (err) {
      // Any failure to parse the text is about the data: SyntaxError, or a RangeError from
      // nesting deeper than the parser's stack.
      // V8 from Node 22 on appends "(line 1 column 69)" to "… in JSON at position 68"; drop
      // it so a dead letter reads the same whichever Node version made it.
      const reason = (err as Error).message.replace(/ \(line \d+ column \d+\)$/, '');
      return deadLetter(record, 'MSGPIPE_ERR_JSON', `Item is not valid JSON: ${reason}`, now);
    }
    try {
      const item = readFinderItem(value);
      const parsed = parseContent(item.msgType, item.content, rootContext(item.from, item.to));
      const payload = JSON.stringify(parsed.payload);
      // Small XML can describe a large structure (20,000 empty <dataitem/> in nested chat
      // records): the row must stay within what one Kafka record and one batch can carry.
      const size = oversizedBytes(maxOutputBytes, payload, parsed.kind === 'message' ? parsed.text : '');
      if (size !== undefined) {
        return deadLetter(record, 'MSGPIPE_ERR_XML_LIMIT', `Parsed content of ${size} bytes exceeds the ${maxOutputBytes}-byte cap`, now);
      }
      return parsed.kind === 'message' ? messageOutput(record, item, parsed, payload, now) : eventOutput(record, text, item, parsed, payload, now);
    } catch (err) {
      if (err instanceof PoisonError) return deadLetter(record, err.code, err.message, now);
      // A value nested thousands deep parses, but overflows the stack when written out again.
      if (err instanceof RangeError) return deadLetter(record, 'MSGPIPE_ERR_SHAPE', `Item cannot be handled: ${err.message}`, now);
      throw err;
    }
  };
}

const defaultTransform = createFinderTransform();

/**
 * Transforms one WeChat Channels private-letter item into typed rows.
 *
 * Never throws for bad input: bytes that are not UTF-8 JSON of the item shape, or whose XML is
 * malformed, hostile or too large, come back as one dead letter with the original bytes.
 * Unknown message types are kept as `unknown` rows.
 *
 * @param record The raw item and where it came from.
 * @param now Ingestion time, unix ms (`ingested_at`, `occurred_at`).
 */
export function transformFinderItem(record: RawRecord, now: number): TransformOutput {
  return defaultTransform(record, now);
}
