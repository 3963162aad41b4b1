/**
 * The Yunhu simulator's world: accounts (a token and a user id) and their chats, each chat an
 * ordered list of messages with `msg_seq` 1, 2, 3 …, generated deterministically from a seed and
 * changed afterwards the way the real API changes them: send-message appends, edit-message
 * replaces the content and records the old one in the edit history, recall-msg sets the recall
 * time (and empties the content, as Yunhu lists recalled messages).
 *
 * Everything here is synchronous and pure apart from the clock passed in; the HTTP layer
 * (yunhu-server.ts) encodes what it returns.
 */
import { createHash } from 'node:crypto';

import { Rng, hashString } from './random.ts';

/** 1 user, 2 group, 3 bot. */
export type YunhuChatType = 1 | 2 | 3;

export interface YunhuSender {
  readonly chat_id: string;
  readonly chat_type: number;
  readonly name: string;
  readonly avatar_url: string;
  readonly tag_old: readonly string[];
  readonly tag: readonly { id: string; text: string; color: string }[];
}

/** Content with the proto's field names (yunhu.MsgContent). */
export type YunhuSimContent = Readonly<Record<string, unknown>>;

export interface YunhuEditEntry {
  readonly id: number;
  readonly msgId: string;
  readonly contentType: number;
  /** The content before this edit, as the JSON text the API returns. */
  readonly contentOld: string;
  readonly createTime: number;
  readonly msgTime: number;
}

/** One message as the simulator holds it. */
export interface YunhuSimMessage {
  readonly msgId: string;
  readonly seq: number;
  readonly sender: YunhuSender;
  contentType: number;
  content: YunhuSimContent;
  readonly sendTime: number;
  editTime: number;
  recallTime: number;
  /** The content before the recall emptied it (ground truth of what was said). */
  recalledContent: YunhuSimContent | undefined;
  readonly quoteMsgId: string;
  readonly cmd: { cmd_id: string; name: string; type: string } | undefined;
  readonly edits: YunhuEditEntry[];
  /** Injected bytes sent instead of the encoded message (hostile cases). */
  readonly raw: Uint8Array | undefined;
}

export interface YunhuSimChat {
  readonly chatId: string;
  readonly chatType: YunhuChatType;
  readonly name: string;
  readonly members: readonly YunhuSender[];
  readonly messages: YunhuSimMessage[];
}

/** The first kinds every chat holds, in this order: every content type once, then a mix. */
const KIND_CYCLE = [1, 2, 3, 4, 5, 6, 7, 8, 11, 13, 14, 2] as const;
const MIX = [1, 1, 1, 1, 1, 2, 2, 3, 4, 7, 8, 11, 1, 6, 5, 13] as const;
const NAMES = ['小林🌙', '阿杰', '王老师', 'Lily', '张三', '秋月', '风之子', 'Ben'];
const TEXTS = ['明天的活动几点开始？', '收到，谢谢！', '现货还有吗', '好的👌', '周五前交付', '文件已发群里了', '今天天气不错', '@全体成员 开会啦'];

function avatar(rng: Rng): string {
  return `https://chat-img.jwznb.com/${rng.hex(32)}.jpg`;
}

function member(rng: Rng, chatId: string, chatType: number, name: string): YunhuSender {
  const tagged = rng.chance(0.4);
  return {
    chat_id: chatId,
    chat_type: chatType,
    name,
    avatar_url: avatar(rng),
    tag_old: tagged ? ['管理员'] : [],
    tag: tagged ? [{ id: String(rng.range(10_000, 99_999)), text: '管理员', color: '#FF3B82F6' }] : [],
  };
}

/** Content of a generated message of `contentType`. */
export function generatedContent(rng: Rng, contentType: number): YunhuSimContent {
  switch (contentType) {
    case 1:
      return { text: rng.pick(TEXTS) };
    case 2:
      return { image_url: `https://chat-img.jwznb.com/${rng.hex(32)}.jpg`, file_size: String(rng.range(10_000, 900_000)), width: '1080', height: '1440' };
    case 3:
      return { text: `**${rng.pick(TEXTS)}**\n- 一\n- 二` };
    case 4:
      return { file_name: `报价单-${rng.digits(3)}.xlsx`, file_url: `https://chat-file.jwznb.com/${rng.hex(32)}.xlsx`, file_size: String(rng.range(1000, 5_000_000)) };
    case 5:
      return { text: '报名表', form: JSON.stringify({ fields: [{ id: 'name', label: '姓名' }] }) };
    case 6:
      return { post_id: rng.digits(6), post_title: '春季新品发布', post_content: '限时八折，欢迎选购', post_content_type: '1' };
    case 7:
      return { image: `expression/${rng.hex(16)}.gif`, sticker_item_id: String(rng.range(1, 99_999)), sticker_pack_id: String(rng.range(1, 999)) };
    case 8:
      return { text: `<p><b>${rng.pick(TEXTS)}</b> &amp; more</p>` };
    case 11:
      return { audio_url: `https://chat-audio1.jwznb.com/${rng.hex(24)}.m4a`, audio_time: String(rng.range(1, 59)) };
    case 13:
      return { room_name: '语音通话', call_status_text: `通话时长 0${rng.range(0, 9)}:${rng.range(10, 59)}` };
    default:
      return { text: 'A2UI card', tip: '请升级客户端查看' };
  }
}

/** Turns proto field names into the camelCase keys of the edit record's `contentOld`. */
function camel(content: YunhuSimContent): string {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(content)) out[k.replace(/_([a-z])/g, (_m, ch: string) => ch.toUpperCase())] = v;
  return JSON.stringify(out);
}

/** A new message id like the clients make (uuid4 hex). */
export function newMsgId(rng: Rng): string {
  return rng.hex(32);
}

/** Options of one simulated chat. */
export interface YunhuChatInput {
  readonly chatId: string;
  readonly chatType: YunhuChatType;
  readonly name?: string;
  /** Messages present at start (default 40). */
  readonly messages?: number;
}

/** One simulated account and its chats. */
export class YunhuSimAccount {
  readonly id: string;
  readonly userId: string;
  readonly self: YunhuSender;
  readonly chats = new Map<string, YunhuSimChat>();
  readonly pageSize: number;
  token: string;
  private readonly rng: Rng;
  private editIds: number;

  constructor(input: { id: string; token: string; userId: string; name?: string; chats: readonly YunhuChatInput[]; seed?: string; pageSize?: number; startTime: number }) {
    this.id = input.id;
    this.token = input.token;
    this.userId = input.userId;
    this.pageSize = input.pageSize ?? 30;
    this.rng = new Rng(hashString(input.seed ?? input.id));
    this.editIds = 1_018_000 + this.rng.int(1000);
    this.self = member(this.rng, input.userId, 1, input.name ?? '我');
    let time = input.startTime;
    for (const c of input.chats) {
      const members =
        c.chatType === 2
          ? Array.from({ length: 4 }, (_v, i) => member(this.rng, String(7_300_000 + this.rng.int(99_999)), 1, NAMES[(i + c.chatId.length) % NAMES.length] ?? '成员'))
          : [member(this.rng, c.chatId, c.chatType, c.name ?? (c.chatType === 3 ? '天气助手' : (NAMES[c.chatId.length % NAMES.length] ?? '好友')))];
      const chat: YunhuSimChat = { chatId: c.chatId, chatType: c.chatType, name: c.name ?? members[0]?.name ?? c.chatId, members, messages: [] };
      this.chats.set(key(c.chatType, c.chatId), chat);
      const count = c.messages ?? 40;
      for (let i = 0; i < count; i++) {
        time += 1000 + this.rng.int(30_000);
        const contentType = KIND_CYCLE[i] ?? this.rng.pick(MIX);
        const sender = this.rng.chance(0.3) ? this.self : this.rng.pick(members);
        this.append(chat, sender, contentType, generatedContent(this.rng, contentType), time, i > 0 && this.rng.chance(0.1) ? chat.messages[this.rng.int(chat.messages.length)]?.msgId ?? '' : '');
      }
    }
  }

  chat(chatType: number, chatId: string): YunhuSimChat | undefined {
    return this.chats.get(key(chatType, chatId));
  }

  /** Appends a message; returns it. */
  append(chat: YunhuSimChat, sender: YunhuSender, contentType: number, content: YunhuSimContent, time: number, quoteMsgId = '', msgId?: string, raw?: Uint8Array): YunhuSimMessage {
    const seq = (chat.messages.at(-1)?.seq ?? 0) + 1;
    const message: YunhuSimMessage = {
      msgId: msgId ?? newMsgId(this.rng),
      seq,
      sender,
      contentType,
      content,
      sendTime: Math.max(time, (chat.messages.at(-1)?.sendTime ?? 0) + 1),
      editTime: 0,
      recallTime: 0,
      recalledContent: undefined,
      quoteMsgId,
      cmd: chat.chatType === 3 && sender.chat_id === chat.chatId ? { cmd_id: '1043', name: '天气', type: '1' } : undefined,
      edits: [],
      raw,
    };
    chat.messages.push(message);
    return message;
  }

  /** A message sent by another member (or the peer) of the chat, now. */
  postAsPeer(chat: YunhuSimChat, now: number, contentType?: number): YunhuSimMessage {
    const type = contentType ?? this.rng.pick(MIX);
    return this.append(chat, this.rng.pick(chat.members), type, generatedContent(this.rng, type), now);
  }

  find(chat: YunhuSimChat, msgId: string): YunhuSimMessage | undefined {
    return chat.messages.find((m) => m.msgId === msgId);
  }

  /** Applies an edit; returns an error text when refused. */
  edit(chat: YunhuSimChat, msgId: string, contentType: number, content: YunhuSimContent, now: number): string | undefined {
    const m = this.find(chat, msgId);
    if (m === undefined || m.raw !== undefined) return '消息不存在或无权限修改';
    if (m.recallTime > 0) return '消息已撤回';
    const textual = [1, 3, 8];
    if (!textual.includes(m.contentType) || !textual.includes(contentType)) return '该消息类型不支持编辑';
    const editTime = Math.max(now, m.editTime + 1, m.sendTime + 1);
    m.edits.push({ id: this.editIds++, msgId, contentType: m.contentType, contentOld: camel(m.content), createTime: m.sendTime, msgTime: editTime });
    m.contentType = contentType;
    m.content = content;
    m.editTime = editTime;
    return undefined;
  }

  /** Applies a recall; returns an error text when refused. */
  recall(chat: YunhuSimChat, msgId: string, now: number): string | undefined {
    const m = this.find(chat, msgId);
    if (m === undefined || m.raw !== undefined) return '消息不存在或无权限撤回';
    if (m.recallTime > 0) return undefined;
    m.recallTime = Math.max(now, m.sendTime + 1);
    m.recalledContent = m.content;
    m.content = { text: '' };
    return undefined;
  }

  /** Every chat's md5, as conversation/list returns it. */
  conversationMd5(): string {
    const hash = createHash('md5');
    for (const c of this.chats.values()) hash.update(`${c.chatType}:${c.chatId}:${c.messages.length}\n`);
    return hash.digest('hex');
  }

  /** A random message id of the chat's own messages (for live edits and recalls). */
  pickOwn(chat: YunhuSimChat, recent: number, filter: (m: YunhuSimMessage) => boolean): YunhuSimMessage | undefined {
    const candidates = chat.messages.slice(-recent).filter((m) => m.sender.chat_id === this.userId && m.raw === undefined && filter(m));
    return candidates.length === 0 ? undefined : this.rng.pick(candidates);
  }

  random(): Rng {
    return this.rng;
  }
}

export function key(chatType: number, chatId: string): string {
  return `${chatType}:${chatId}`;
}
