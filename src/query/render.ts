/**
 * Rows of `messages` and `sessions` rendered as the seed's items (seeds/msg-server-api.md).
 *
 * Every message kind renders, whatever its payload: `content` is the typed payload the transform
 * wrote as JSON object text (`{"md5sum":"…","filesize":123456,"aeskey":"…"}` for an image), and
 * a payload that is missing or not an object renders as `attachments: null` instead of failing
 * the page (msg-server answered 500 for most kinds, W-C7). For the kinds of the seed's table,
 * `attachments` always carries the seed's keys (an absent one as `""`/`0`), followed by the
 * rest of the payload; other kinds carry their payload as it is; `text` carries `null`.
 *
 * Yunhu rows keep the names of proto/yunhu in their payload (`file_name`, `file_size`,
 * `audio_time`) and name the sender of every message in `content.sender`; both are read here, not
 * rewritten in the transform, so rows already stored render right too.
 */
import { exactNumber } from './envelope.ts';

/** The columns every message query selects (see {@link MESSAGE_COLUMNS}). */
export interface MessageRecord {
  readonly msgid: string;
  readonly tenant: string;
  readonly source_type: string;
  readonly action: string;
  readonly from_id: string;
  readonly tolist: string[];
  readonly room_id: string;
  readonly msg_time_ms: string;
  readonly msg_type: string;
  readonly content_text: string;
  /** `seq` as decimal text (the column keeps its own name, so `ORDER BY seq` sorts numbers). */
  readonly seq_text: string;
  readonly session_id: string;
  readonly session_type: string;
  readonly peer_id: string;
  readonly is_sender: number;
  readonly peer_name: string;
  readonly peer_avatar: string;
  readonly content: string;
  readonly pre_msgid: string;
  readonly recalled: number;
  readonly recall_time_ms: string | null;
}

/** SELECT list matching {@link MessageRecord}. */
export const MESSAGE_COLUMNS = `msgid, tenant, source_type, action, from_id, tolist, room_id,
  toUnixTimestamp64Milli(msg_time) AS msg_time_ms, msg_type, content_text, toString(seq) AS seq_text,
  session_id, session_type, peer_id, is_sender, peer_name, peer_avatar, content, pre_msgid, recalled,
  toUnixTimestamp64Milli(recall_time) AS recall_time_ms`;

type Json = Record<string, unknown>;

/** The seed's `attachments` keys per kind, with the value used when the payload lacks one. */
const SEED_ATTACHMENTS: Readonly<Record<string, readonly (readonly [string, string | number])[]>> = {
  image: [['md5sum', ''], ['sdkfileid', ''], ['filesize', 0]],
  file: [['md5sum', ''], ['filename', ''], ['fileext', ''], ['filesize', 0]],
  voice: [['md5sum', ''], ['voice_size', 0], ['play_length', 0], ['sdkfileid', '']],
  card: [['corpname', ''], ['userid', '']],
  location: [['longitude', 0], ['latitude', 0], ['address', ''], ['title', ''], ['zoom', 0]],
  emotion: [['type', 0], ['width', 0], ['height', 0], ['imagesize', 0], ['md5sum', ''], ['sdkfileid', '']],
  link: [['title', ''], ['description', ''], ['link_url', ''], ['image_url', '']],
  revoke: [['pre_msgid', '']],
};

/**
 * Payload keys that hold a seed key's value under the source's own name, per kind, for sources
 * whose payload does not use the seed's names: Yunhu's are proto/yunhu's (sizes as decimal
 * strings, `audio_time` in seconds like the seed's `play_length`).
 */
const SEED_KEY_ALIASES: Readonly<Record<string, Readonly<Record<string, readonly (readonly [seedKey: string, payloadKey: string])[]>>>> = {
  yunhu: {
    image: [['filesize', 'file_size']],
    file: [['filename', 'file_name'], ['filesize', 'file_size']],
    voice: [['play_length', 'audio_time']],
  },
};

/** A decimal string as the number the seed shows for it (sizes, seconds); anything else as it is. */
function seedNumber(value: unknown): unknown {
  return typeof value === 'string' && /^\d{1,15}$/.test(value) ? Number(value) : value;
}

/** `xlsx` of `报价单-2024Q3.xlsx`: the seed's `fileext`, for payloads that only name the file. */
function extensionOf(fileName: unknown): string {
  if (typeof fileName !== 'string') return '';
  const m = /\.([0-9A-Za-z]{1,16})$/.exec(fileName);
  return m?.[1] ?? '';
}

function parseObject(text: string): Json | undefined {
  if (text === '') return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The `attachments` of a message (null for text and for payloads that are not JSON objects).
 *
 * @param sourceType The row's `source_type`, for payload keys named differently from the seed's.
 */
export function attachmentsOf(msgType: string, content: string, preMsgid = '', sourceType = ''): Json | null {
  if (msgType === 'text') return null;
  const payload = parseObject(content);
  const seedKeys = SEED_ATTACHMENTS[msgType];
  if (seedKeys === undefined) return payload ?? null;
  const base = payload ?? {};
  const out: Json = {};
  for (const [key, fallback] of seedKeys) out[key] = base[key] ?? fallback;
  for (const [seedKey, payloadKey] of SEED_KEY_ALIASES[sourceType]?.[msgType] ?? []) {
    const value = base[payloadKey];
    if (base[seedKey] === undefined && value !== undefined) out[seedKey] = seedNumber(value);
  }
  if (msgType === 'file' && out['fileext'] === '') out['fileext'] = extensionOf(out['filename']);
  // WeChat cards name the contact `username`, WeCom cards `userid`; revocations always know
  // their target from the row even when the payload does not.
  if (msgType === 'card' && out['userid'] === '' && typeof base['username'] === 'string') out['userid'] = base['username'];
  if (msgType === 'revoke' && out['pre_msgid'] === '' && preMsgid !== '') out['pre_msgid'] = preMsgid;
  for (const [key, value] of Object.entries(base)) if (!(key in out)) out[key] = value;
  return out;
}

function fileNameOf(attachments: Json | null): string {
  const name = attachments?.['filename'];
  return typeof name === 'string' ? name : '';
}

/** `peer_type`: 1 a WeChat user, 2 a WeCom user (seed); '' when the source cannot tell. */
function peerTypeOf(sourceType: string, sessionType: string, peerId: string): string {
  if (sessionType === 'group') return '';
  if (sourceType === 'wecom') return peerId.startsWith('wo') ? '2' : peerId.startsWith('wm') ? '1' : '';
  if (sourceType === 'gewe' || sourceType === 'videosapi' || sourceType === 'syncfinder') return '1';
  return '';
}

interface Sender {
  readonly name: string;
  readonly avatar: string;
}

/**
 * Who sent the message, as far as the row tells. Yunhu names the sender of every message, in a
 * group too, in `content.sender` (`peer_name` is the chat's peer, '' in a group). The WeChat
 * sources know only the peer's name, so the staff's own messages show none.
 */
function senderOf(row: MessageRecord): Sender {
  if (row.source_type === 'yunhu') {
    const sender = parseObject(row.content)?.['sender'];
    if (sender !== null && typeof sender === 'object' && !Array.isArray(sender)) {
      const { name, avatar_url: avatar } = sender as Json;
      return { name: typeof name === 'string' ? name : '', avatar: typeof avatar === 'string' ? avatar : '' };
    }
  }
  return row.is_sender === 0 ? { name: row.peer_name, avatar: row.peer_avatar } : { name: '', avatar: '' };
}

/** One message as the seed's `session-msgs` / `search` item. */
export function renderMessage(row: MessageRecord): Json {
  const attachments = attachmentsOf(row.msg_type, row.content, row.pre_msgid, row.source_type);
  const sender = senderOf(row);
  return {
    id: row.msgid,
    ext_corp_id: row.tenant,
    msgid: row.msgid,
    action: row.action,
    from: row.from_id,
    tolist: row.tolist,
    room_id: row.room_id,
    msg_time: Number(row.msg_time_ms),
    msg_type: row.msg_type,
    content_text: row.content_text,
    seq: exactNumber(row.seq_text),
    session_id: row.session_id,
    session_type: row.session_type,
    peer_ext_id: row.peer_id,
    sender_name: sender.name,
    sender_avatar: sender.avatar,
    chat_msg_content: {
      id: row.msgid,
      chat_msg_id: row.msgid,
      content_type: row.msg_type,
      content: row.content,
      // Media is not downloaded (no presigned bearer URLs, msg-server's W-S7).
      file_url: '',
      file_name: fileNameOf(attachments),
    },
    attachments,
    recalled: row.recalled === 1,
    recall_time: row.recall_time_ms === null ? null : Number(row.recall_time_ms),
  };
}

/** The columns the session list selects (see {@link SESSION_COLUMNS}). */
export interface SessionRecord {
  readonly tenant: string;
  readonly session_id: string;
  readonly session_type: string;
  readonly peer_id: string;
  readonly peer_name: string;
  readonly peer_avatar: string;
  readonly last_msgid: string;
  readonly last_action: string;
  readonly last_from_id: string;
  readonly last_tolist: string[];
  readonly room_id: string;
  readonly last_msg_type: string;
  readonly last_content_text: string;
  readonly last_seq: string;
  /** The source of the latest message (its type comes from the configuration). */
  readonly source: string;
  readonly msg_time_ms: string;
  readonly msg_count: string;
}

/** One session as the seed's `sessions` item: its latest message plus the peer. */
export function renderSession(row: SessionRecord, sourceType: string): Json {
  const isGroup = row.session_type === 'group';
  return {
    id: row.last_msgid,
    ext_corp_id: row.tenant,
    msgid: row.last_msgid,
    action: row.last_action,
    from: row.last_from_id,
    tolist: row.last_tolist,
    room_id: row.room_id,
    msg_time: Number(row.msg_time_ms),
    msg_type: row.last_msg_type,
    content_text: row.last_content_text,
    seq: exactNumber(row.last_seq),
    session_id: row.session_id,
    session_type: row.session_type,
    peer_avatar: row.peer_avatar,
    peer_name: row.peer_name,
    peer_ext_id: row.peer_id,
    peer_type: peerTypeOf(sourceType, row.session_type, row.peer_id),
    group_chat_name: isGroup ? row.peer_name : '',
    msg_count: Number(row.msg_count),
  };
}
