/**
 * The Yunhu (云湖) simulator: an HTTP server speaking the seed's `/v1/msg/*` and
 * `/v1/conversation/list` endpoints with protobuf bodies (the edit record in JSON), over the
 * world of yunhu-state.ts, with fault knobs like the finder simulators and the ground truth
 * tests compare against.
 *
 *   const sim = await startYunhuSimulator({ accounts: [{ token: 't', userId: '7311890', chats: [{ chatId: '51309476', chatType: 2 }] }] });
 *   // poll `${sim.url}/v1/msg/list-message-by-seq` with header `token: t` …
 *   await yunhuClient(sim.url, 't').edit({ chatId: '51309476', chatType: 2, msgId, text: 'new' });
 *   expect(stored).toEqual(sim.expected('7311890'));
 *
 * Faults (per account or `'*'`): `errorRate` (HTTP 502/503), `rateLimitRate` (429 with
 * Retry-After), `errorStatusRate` (HTTP 200 with `status.code` -1), `malformedRate` (a cut
 * protobuf body), `latencyMs`, `tokenExpiresAfter` (then `status.code` -101 "未登录" until
 * renewToken), `goneChats` (status -1 "会话不存在" for those chats only), `chatHttpStatus` (an
 * HTTP status, such as 404 or 503, for every read of those chats), `failingEditRecords` (the
 * edit record answers status -1 "消息不存在"), `duplicateRate` (a list-by-seq page that also
 * carries the message at `msg_start` again, and one of its messages twice). They apply to the
 * read endpoints; send, edit and recall only see latency.
 */
import { setTimeout as sleep } from 'node:timers/promises';

import Fastify from 'fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import protobuf from 'protobufjs';
import { z } from 'zod';

import { decodeYunhu, encodeYunhu, WireError } from '../ingest/yunhu-proto.ts';
import { rate } from './options.ts';
import { hashString, mix32, Rng } from './random.ts';
import { parseJsonObject } from './server.ts';
import { key, type YunhuChatInput, YunhuSimAccount, type YunhuSimChat, type YunhuSimContent, type YunhuSimMessage } from './yunhu-state.ts';
import { closeServer, trackConnections } from '../core/close-server.ts';

export interface YunhuSimFaults {
  readonly errorRate?: number;
  readonly rateLimitRate?: number;
  readonly retryAfterSec?: number;
  readonly errorStatusRate?: number;
  readonly malformedRate?: number;
  readonly latencyMs?: number;
  readonly tokenExpiresAfter?: number | null;
  /** Chats (`<chatType>:<chatId>`) whose reads answer status -1 "会话不存在", as for a dissolved group. */
  readonly goneChats?: readonly string[];
  /** Chats (`<chatType>:<chatId>`) whose reads answer this HTTP status with an HTML body. */
  readonly chatHttpStatus?: Readonly<Record<string, number>>;
  /** The edit record answers status -1 "消息不存在" for every message. */
  readonly failingEditRecords?: boolean;
  /**
   * Chance that a list-by-seq page also carries the message at `msg_start` (listed before) first,
   * and one of its own messages twice in a row.
   */
  readonly duplicateRate?: number;
}

/** {@link YunhuSimFaults} as the `/_sim` routes accept them. */
const yunhuFaultsSchema = z.strictObject({
  errorRate: rate.optional(),
  rateLimitRate: rate.optional(),
  retryAfterSec: z.int().min(0).max(3600).optional(),
  errorStatusRate: rate.optional(),
  malformedRate: rate.optional(),
  latencyMs: z.int().min(0).max(120_000).optional(),
  tokenExpiresAfter: z.int().min(0).nullable().optional(),
  goneChats: z.array(z.string().regex(/^[123]:.+$/)).optional(),
  chatHttpStatus: z.record(z.string().regex(/^[123]:.+$/), z.int().min(400).max(599)).optional(),
  failingEditRecords: z.boolean().optional(),
  duplicateRate: rate.optional(),
});

export interface YunhuSimAccountInput {
  /** Name in the handle (default userId). */
  readonly id?: string;
  readonly token: string;
  readonly userId: string;
  readonly name?: string;
  readonly chats: readonly YunhuChatInput[];
  readonly seed?: string;
  /** Messages per list-message-by-seq answer (default 30). */
  readonly pageSize?: number;
  readonly faults?: YunhuSimFaults;
}

export interface StartYunhuSimulatorOptions {
  readonly host?: string;
  readonly port?: number;
  readonly accounts: readonly YunhuSimAccountInput[];
  readonly faults?: YunhuSimFaults;
  readonly faultSeed?: number;
  /** send_time of the first generated message, unix ms (default 2024-11-01). */
  readonly startTime?: number;
  readonly logger?: Logger;
}

export type YunhuOutcome = 'page' | 'caught_up' | 'error' | 'rate_limited' | 'error_status' | 'malformed' | 'auth_refused' | 'ok' | 'refused';

/** One request as the simulator saw it. */
export interface YunhuReceived {
  readonly sequence: number;
  readonly at: number;
  readonly path: string;
  readonly chat: string;
  /** msg_start of list-message-by-seq, else ''. */
  readonly msgStart: string;
  readonly outcome: YunhuOutcome;
  readonly items: number;
  readonly body: Uint8Array | undefined;
}

/** A message of the ground truth: its current state and its history. */
export interface YunhuExpected {
  readonly chat: string;
  readonly chatType: number;
  readonly chatId: string;
  readonly msgId: string;
  readonly seq: number;
  readonly contentType: number;
  readonly text: string;
  readonly senderName: string;
  /** The sender's user (or bot) id: the account's `userId` for its own messages. */
  readonly senderId: string;
  readonly sendTime: number;
  readonly editTime: number;
  readonly recallTime: number;
  /** The text the message showed before its recall, '' otherwise. */
  readonly recalledText: string;
  readonly edits: readonly { id: number; contentOld: string; msgTime: number }[];
  /** Injected bytes that are no valid message (dead letters), or an oversized one. */
  readonly hostile: 'malformed' | 'oversized' | undefined;
}

export interface YunhuSimulatorHandle {
  readonly url: string;
  readonly port: number;
  accounts(): { id: string; token: string; userId: string; chats: { chatId: string; chatType: number }[] }[];
  close(): Promise<void>;
  /** Every request the account answered, oldest first (logged when the answer is sent). */
  received(account: string): YunhuReceived[];
  /**
   * Read requests (list, conversation list, edit record) with the account's token that reached
   * the simulator, answered or not: one held by `latencyMs` counts at once, while received()
   * lists it only once its answer is sent.
   */
  arrivals(account: string): number;
  expected(account: string): YunhuExpected[];
  setFaults(account: string, faults: YunhuSimFaults): void;
  clearFaults(account: string): void;
  renewToken(account: string, token?: string): void;
  /** A message from another member (or the peer) of a chat, now: incoming traffic. */
  postAsPeer(account: string, chatType: number, chatId: string, contentType?: number): string;
  /**
   * Appends a hostile entry: bytes that are no valid message (`malformed`: msg_id and msg_seq
   * still readable; `unreadable`: damaged from the first byte), or a message over 1 MiB.
   */
  injectHostile(account: string, chatType: number, chatId: string, kind: 'malformed' | 'unreadable' | 'oversized'): string;
}

interface AccountState {
  readonly account: YunhuSimAccount;
  faults: YunhuSimFaults | undefined;
  accepted: number;
  arrivals: number;
  expired: boolean;
  readonly log: YunhuReceived[];
  /** This account's fault dice: another account's traffic does not change its faults. */
  readonly dice: Rng;
}

const PROTOBUF = 'application/x-protobuf';

function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v > 127) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

function statusOnly(code: number, msg: string): Uint8Array {
  return encodeYunhu('StatusResponse', { status: { request_id: String(Date.now()), code, msg } });
}

/** The list response, built field by field so injected message bytes go out as they are. */
function listBody(messages: readonly Uint8Array[]): Uint8Array {
  const head = encodeYunhu('ListMessageResponse', { status: { request_id: String(Date.now()), code: 1, msg: 'success' } });
  const parts: Uint8Array[] = [head];
  for (const m of messages) parts.push(Uint8Array.from([0x12, ...varint(m.length)]), m);
  parts.push(Uint8Array.from([0x18, ...varint(messages.length)]));
  return Buffer.concat(parts);
}

function encodeMessage(m: YunhuSimMessage, viewer: string): Uint8Array {
  if (m.raw !== undefined) return m.raw;
  return encodeYunhu('Msg', {
    msg_id: m.msgId,
    sender: m.sender,
    direction: m.sender.chat_id === viewer ? 'right' : 'left',
    content_type: m.contentType,
    content: m.content,
    send_time: String(m.sendTime),
    ...(m.cmd === undefined ? {} : { cmd: m.cmd }),
    recall_time: String(m.recallTime),
    quote_msg_id: m.quoteMsgId,
    msg_seq: String(m.seq),
    edit_time: String(m.editTime),
  });
}

/** Content as sent, without the defaults the decoder filled in. */
function compact(value: unknown): YunhuSimContent {
  const out: Record<string, unknown> = {};
  if (value === null || typeof value !== 'object') return out;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === '' || v === '0' || v === 0 || v === null || (Array.isArray(v) && v.length === 0)) continue;
    out[k] = v;
  }
  return out;
}

function bytesOf(body: unknown): Uint8Array {
  return Buffer.isBuffer(body) ? body : new Uint8Array();
}

/** Whether `bytes` is a run of whole protobuf fields (a message that decodes, at its top level). */
function wholeFields(bytes: Uint8Array): boolean {
  const reader = protobuf.Reader.create(bytes);
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      reader.skipType(tag & 7);
    }
    return true;
  } catch {
    return false;
  }
}

/** Starts the Yunhu simulator and resolves once it listens. */
export async function startYunhuSimulator(options: StartYunhuSimulatorOptions): Promise<YunhuSimulatorHandle> {
  const startTime = options.startTime ?? 1_730_419_200_000;
  const states = new Map<string, AccountState>();
  for (const input of options.accounts) {
    const account = new YunhuSimAccount({ ...input, id: input.id ?? input.userId, startTime });
    if (states.has(account.id)) throw new RangeError(`duplicate yunhu simulator account "${account.id}"`);
    const dice = new Rng(mix32(options.faultSeed ?? 1) ^ hashString(account.id));
    states.set(account.id, { account, faults: input.faults, accepted: 0, arrivals: 0, expired: false, log: [], dice });
  }
  let global = options.faults;
  let sequence = 0;
  const log = options.logger?.child({ component: 'simulate.yunhu' });

  const get = (id: string): AccountState => {
    const s = states.get(id);
    if (s === undefined) throw new RangeError(`unknown yunhu simulator account "${id}" (known: ${[...states.keys()].join(', ')})`);
    return s;
  };
  const byToken = (token: string | undefined): AccountState | undefined =>
    token === undefined ? undefined : [...states.values()].find((s) => s.account.token === token);
  const faultsOf = (s: AccountState): YunhuSimFaults => ({ ...global, ...s.faults });

  const app = Fastify({ logger: false, bodyLimit: 8 * 1024 * 1024 });
  trackConnections(app);
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => {
    done(null, body);
  });

  const record = (s: AccountState, entry: Omit<YunhuReceived, 'sequence' | 'at'>): void => {
    s.log.push({ sequence: sequence++, at: Date.now(), ...entry });
    if (s.log.length > 100_000) s.log.shift();
  };

  /** Auth and faults of a read endpoint; returns the reply sent, or the account to serve. */
  const admit = async (req: FastifyRequest, reply: FastifyReply, path: string, chat: string, msgStart: string, json: boolean): Promise<AccountState | FastifyReply> => {
    const token = req.headers['token'];
    const s = byToken(Array.isArray(token) ? token[0] : token);
    const refuse = (): FastifyReply =>
      json
        ? reply.code(200).type('application/json').send('{"code":-101,"msg":"未登录"}')
        : reply.code(200).type(PROTOBUF).send(Buffer.from(statusOnly(-101, '未登录')));
    if (s === undefined) return refuse();
    s.arrivals++;
    const f = faultsOf(s);
    if ((f.latencyMs ?? 0) > 0) await sleep(f.latencyMs ?? 0);
    if (s.expired || (f.tokenExpiresAfter !== undefined && f.tokenExpiresAfter !== null && s.accepted >= f.tokenExpiresAfter)) {
      s.expired = true;
      record(s, { path, chat, msgStart, outcome: 'auth_refused', items: 0, body: undefined });
      return refuse();
    }
    if (s.dice.chance(f.rateLimitRate ?? 0)) {
      record(s, { path, chat, msgStart, outcome: 'rate_limited', items: 0, body: undefined });
      return reply.code(429).header('retry-after', String(f.retryAfterSec ?? 1)).send('');
    }
    if (s.dice.chance(f.errorRate ?? 0)) {
      record(s, { path, chat, msgStart, outcome: 'error', items: 0, body: undefined });
      return reply.code(s.dice.chance(0.5) ? 502 : 503).type('text/html').send('<html><title>502 Bad Gateway</title></html>');
    }
    const httpStatus = chat === '' ? undefined : f.chatHttpStatus?.[chat];
    if (httpStatus !== undefined) {
      record(s, { path, chat, msgStart, outcome: 'error', items: 0, body: undefined });
      return reply.code(httpStatus).type('text/html').send(`<html><title>${String(httpStatus)}</title></html>`);
    }
    if (chat !== '' && f.goneChats?.includes(chat) === true) {
      const body = Buffer.from(statusOnly(-1, '会话不存在'));
      record(s, { path, chat, msgStart, outcome: 'error_status', items: 0, body });
      return reply.code(200).type(PROTOBUF).send(body);
    }
    if (s.dice.chance(f.errorStatusRate ?? 0)) {
      const body = json ? Buffer.from('{"code":-1,"msg":"服务器繁忙"}') : Buffer.from(statusOnly(-1, '服务器繁忙'));
      record(s, { path, chat, msgStart, outcome: 'error_status', items: 0, body });
      return reply.code(200).type(json ? 'application/json' : PROTOBUF).send(body);
    }
    s.accepted++;
    return s;
  };

  /** Sends a read answer, cut short under `malformedRate`. */
  const answer = (s: AccountState, reply: FastifyReply, path: string, chat: string, msgStart: string, body: Uint8Array, items: number, json: boolean): FastifyReply => {
    const f = faultsOf(s);
    if (body.length > 4 && s.dice.chance(f.malformedRate ?? 0)) {
      // 60 % of the body; a protobuf cut that happens to fall between two fields would be a
      // valid, shorter answer, so it is moved back into the field before.
      let end = Math.max(3, Math.floor(body.length * 0.6));
      while (!json && end > 1 && wholeFields(body.subarray(0, end))) end--;
      const cut = Buffer.from(body.subarray(0, end));
      record(s, { path, chat, msgStart, outcome: 'malformed', items: 0, body: cut });
      return reply.code(200).type(json ? 'application/json' : PROTOBUF).send(cut);
    }
    record(s, { path, chat, msgStart, outcome: items > 0 ? 'page' : 'caught_up', items, body });
    return reply.code(200).type(json ? 'application/json' : PROTOBUF).send(Buffer.from(body));
  };

  const decode = (name: Parameters<typeof decodeYunhu>[0], req: FastifyRequest): Record<string, unknown> | undefined => {
    try {
      return decodeYunhu(name, bytesOf(req.body));
    } catch (err) {
      if (err instanceof WireError) return undefined;
      throw err;
    }
  };
  const badRequest = (reply: FastifyReply): FastifyReply => reply.code(200).type(PROTOBUF).send(Buffer.from(statusOnly(-1, '请求参数错误')));

  const listRoute = (path: string, select: (chat: YunhuSimChat, req: Record<string, unknown>, pageSize: number) => YunhuSimMessage[], requestType: 'ListMessageBySeqRequest' | 'ListMessageRequest' | 'ListMessageByMidSeqRequest'): void => {
    app.post(path, async (req, reply) => {
      const body = decode(requestType, req);
      if (body === undefined) return badRequest(reply);
      const chatKey = key(Number(body['chat_type']), String(body['chat_id']));
      const msgStart = requestType === 'ListMessageBySeqRequest' ? String(body['msg_start']) : '';
      const admitted = await admit(req, reply, path, chatKey, msgStart, false);
      if (!('account' in admitted)) return admitted;
      const s = admitted;
      const chat = s.account.chats.get(chatKey);
      let messages = chat === undefined ? [] : select(chat, body, s.account.pageSize);
      // Drawn only when set: the other faults' dice stay as they were.
      const duplicateRate = faultsOf(s).duplicateRate ?? 0;
      if (chat !== undefined && messages.length > 0 && requestType === 'ListMessageBySeqRequest' && duplicateRate > 0 && s.dice.chance(duplicateRate)) {
        const again = s.dice.int(messages.length);
        const before = chat.messages.find((m) => String(m.seq) === msgStart);
        messages = [...(before === undefined ? [] : [before]), ...messages.slice(0, again + 1), ...messages.slice(again)];
      }
      return answer(s, reply, path, chatKey, msgStart, listBody(messages.map((m) => encodeMessage(m, s.account.userId))), messages.length, false);
    });
  };

  listRoute('/v1/msg/list-message-by-seq', (chat, body, pageSize) => {
    const start = Number(body['msg_start']);
    return chat.messages.filter((m) => m.seq > start).slice(0, pageSize);
  }, 'ListMessageBySeqRequest');
  listRoute('/v1/msg/list-message', (chat, body) => {
    const count = Math.min(Number(body['msg_count']) || 30, 100);
    const at = body['msg_id'] === '' ? chat.messages.length : chat.messages.findIndex((m) => m.msgId === body['msg_id']);
    return at < 0 ? [] : chat.messages.slice(Math.max(0, at - count), at);
  }, 'ListMessageRequest');
  listRoute('/v1/msg/list-message-by-mid-seq', (chat, body) => {
    const count = Math.min(Number(body['msg_count']) || 10, 100);
    const at = chat.messages.findIndex((m) => m.msgId === body['msg_id'] || (body['msg_id'] === '' && String(m.seq) === String(body['msg_seq'])));
    return at < 0 ? [] : chat.messages.slice(at, at + count + 1);
  }, 'ListMessageByMidSeqRequest');

  app.post('/v1/conversation/list', async (req, reply) => {
    const body = decode('ConversationListRequest', req);
    if (body === undefined) return badRequest(reply);
    const admitted = await admit(req, reply, '/v1/conversation/list', '', '', false);
    if (!('account' in admitted)) return admitted;
    const s = admitted;
    const md5 = s.account.conversationMd5();
    const unchanged = body['md5'] === md5;
    const chats = unchanged ? [] : [...s.account.chats.values()];
    const bytes = encodeYunhu('ConversationListResponse', {
      status: { request_id: String(Date.now()), code: 1, msg: 'success' },
      data: chats.map((c) => ({
        chat_id: c.chatId,
        chat_type: c.chatType,
        name: c.name,
        chat_content: c.messages.at(-1)?.content['text'] ?? '',
        timestamp_ms: String(c.messages.at(-1)?.sendTime ?? 0),
        send_timestamp: String(Math.floor((c.messages.at(-1)?.sendTime ?? 0) / 1000)),
      })),
      total: String(chats.length),
      md5,
    });
    return answer(s, reply, '/v1/conversation/list', '', '', bytes, chats.length, false);
  });

  app.post('/v1/msg/list-message-edit-record', async (req, reply) => {
    let body: Record<string, unknown> | undefined;
    try {
      body = JSON.parse(bytesOf(req.body).toString()) as Record<string, unknown>;
    } catch {
      body = undefined;
    }
    if (body === undefined || typeof body['msgId'] !== 'string') return reply.code(200).type('application/json').send('{"code":-1,"msg":"参数错误"}');
    const msgId = body['msgId'];
    const admitted = await admit(req, reply, '/v1/msg/list-message-edit-record', '', '', true);
    if (!('account' in admitted)) return admitted;
    const s = admitted;
    if (faultsOf(s).failingEditRecords === true) {
      const failed = Buffer.from('{"code":-1,"msg":"消息不存在"}');
      record(s, { path: '/v1/msg/list-message-edit-record', chat: '', msgStart: '', outcome: 'error_status', items: 0, body: failed });
      return reply.code(200).type('application/json').send(failed);
    }
    const size = Math.max(1, Math.min(Number(body['size']) || 10, 100));
    const page = Math.max(1, Number(body['page']) || 1);
    let edits: YunhuSimMessage['edits'] = [];
    for (const chat of s.account.chats.values()) {
      const m = chat.messages.find((x) => x.msgId === msgId);
      if (m !== undefined) edits = m.edits;
    }
    // Newest first, as the client shows them.
    const list = [...edits].reverse().slice((page - 1) * size, page * size);
    const text = JSON.stringify({ code: 1, data: { list, total: edits.length }, msg: 'success' });
    return answer(s, reply, '/v1/msg/list-message-edit-record', '', '', Buffer.from(text), list.length, true);
  });

  /** send, edit and recall: token checked, latency applied, no other faults. */
  const writer = async (req: FastifyRequest, reply: FastifyReply, path: string, name: 'SendMessageRequest' | 'RecallMsgRequest', act: (s: AccountState, body: Record<string, unknown>, chat: YunhuSimChat | undefined) => string | undefined): Promise<FastifyReply> => {
    const token = req.headers['token'];
    const s = byToken(Array.isArray(token) ? token[0] : token);
    if (s === undefined || s.expired) return reply.code(200).type(PROTOBUF).send(Buffer.from(statusOnly(-101, '未登录')));
    const f = faultsOf(s);
    if ((f.latencyMs ?? 0) > 0) await sleep(f.latencyMs ?? 0);
    const body = decode(name, req);
    if (body === undefined) return badRequest(reply);
    const chatKey = key(Number(body['chat_type']), String(body['chat_id']));
    const error = act(s, body, s.account.chats.get(chatKey));
    record(s, { path, chat: chatKey, msgStart: '', outcome: error === undefined ? 'ok' : 'refused', items: 0, body: undefined });
    if (error !== undefined) log?.debug({ path, error }, 'yunhu write refused');
    return reply.code(200).type(PROTOBUF).send(Buffer.from(error === undefined ? statusOnly(1, 'success') : statusOnly(-1, error)));
  };

  app.post('/v1/msg/send-message', (req, reply) =>
    writer(req, reply, '/v1/msg/send-message', 'SendMessageRequest', (s, body, existing) => {
      const chatType = Number(body['chat_type']);
      if (chatType < 1 || chatType > 3 || body['chat_id'] === '') return '请求参数错误';
      const msgId = String(body['msg_id']);
      if (msgId === '') return 'msg_id 不能为空';
      const chat =
        existing ??
        (() => {
          const created: YunhuSimChat = { chatId: String(body['chat_id']), chatType: chatType as 1 | 2 | 3, name: String(body['chat_id']), members: [s.account.self], messages: [] };
          s.account.chats.set(key(chatType, created.chatId), created);
          return created;
        })();
      if (chat.messages.some((m) => m.msgId === msgId)) return '消息ID重复';
      s.account.append(chat, s.account.self, Number(body['content_type']), compact(body['data']), Date.now(), typeof body['quote_msg_id'] === 'string' ? body['quote_msg_id'] : '', msgId);
      return undefined;
    }),
  );
  app.post('/v1/msg/edit-message', (req, reply) =>
    writer(req, reply, '/v1/msg/edit-message', 'SendMessageRequest', (s, body, chat) => {
      // Only the sender edits a message (the seed: "消息发送者的Token").
      const own = chat === undefined ? undefined : s.account.find(chat, String(body['msg_id']));
      if (chat === undefined || own?.sender.chat_id !== s.account.userId) return '消息不存在或无权限修改';
      return s.account.edit(chat, String(body['msg_id']), Number(body['content_type']), compact(body['data']), Date.now());
    }),
  );
  for (const path of ['/v1/msg/recall-msg', '/v1/msg/recall-msg-batch']) {
    app.post(path, (req, reply) =>
      writer(req, reply, path, 'RecallMsgRequest', (s, body, chat) => {
        if (chat === undefined) return '消息不存在或无权限撤回';
        for (const id of body['msg_id'] as unknown[]) {
          const error = s.account.recall(chat, String(id), Date.now());
          if (error !== undefined) return error;
        }
        return undefined;
      }),
    );
  }

  /** Merges `faults` into those of every account (`*`) or of one; the handle and `/_sim` share it. */
  const setFaults = (id: string, faults: YunhuSimFaults): void => {
    if (id === '*') {
      global = { ...global, ...faults };
      // The count starts now for every account, as it does for one.
      if (faults.tokenExpiresAfter !== undefined) for (const state of states.values()) state.accepted = 0;
    } else {
      const s = get(id);
      s.faults = { ...s.faults, ...faults };
      if (faults.tokenExpiresAfter !== undefined) s.accepted = 0;
    }
  };
  const clearFaults = (id: string): void => {
    if (id === '*') global = undefined;
    else get(id).faults = undefined;
  };

  // The fault knobs over HTTP, as the finder simulators have them (docs/simulator.md).
  const faultPatch = (req: FastifyRequest, reply: FastifyReply): YunhuSimFaults | undefined => {
    const body = Buffer.isBuffer(req.body) && req.body.length > 0 ? parseJsonObject(req.body) : {};
    const parsed = yunhuFaultsSchema.safeParse(body);
    // Parsed from JSON, so no key holds undefined.
    if (parsed.success) return parsed.data as YunhuSimFaults;
    void reply.code(400).send({ error: 'invalid body', problems: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
    return undefined;
  };
  const accountOf = (req: FastifyRequest, reply: FastifyReply): AccountState | undefined => {
    const { id } = req.params as { id: string };
    const s = states.get(id);
    if (s === undefined) void reply.code(404).send({ error: `unknown account "${id}"` });
    return s;
  };
  app.get('/_sim/faults', () => global ?? {});
  app.put('/_sim/faults', (req, reply) => {
    const patch = faultPatch(req, reply);
    if (patch === undefined) return reply;
    setFaults('*', patch);
    return global;
  });
  app.delete('/_sim/faults', () => {
    clearFaults('*');
    return {};
  });
  app.put('/_sim/accounts/:id/faults', (req, reply) => {
    const s = accountOf(req, reply);
    const patch = s === undefined ? undefined : faultPatch(req, reply);
    if (s === undefined || patch === undefined) return reply;
    setFaults(s.account.id, patch);
    return { own: s.faults, effective: faultsOf(s) };
  });
  app.post('/_sim/accounts/:id/renew-token', (req, reply) => {
    const s = accountOf(req, reply);
    if (s === undefined) return reply;
    const body = Buffer.isBuffer(req.body) && req.body.length > 0 ? parseJsonObject(req.body) : {};
    const parsed = z.strictObject({ token: z.string().min(1).optional() }).safeParse(body);
    if (!parsed.success) return reply.code(400).send({ error: 'invalid body', problems: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
    renewToken(s.account.id, parsed.data.token);
    return { token: s.account.token };
  });
  app.delete('/_sim/accounts/:id/faults', (req, reply) => {
    const s = accountOf(req, reply);
    if (s === undefined) return reply;
    clearFaults(s.account.id);
    return { own: {}, effective: faultsOf(s) };
  });

  /** A new token for the account (or the same one), accepted again: an expired token stays refused until then. */
  function renewToken(id: string, token?: string): void {
    const s = get(id);
    s.expired = false;
    s.accepted = 0;
    if (token !== undefined) s.account.token = token;
  }

  await app.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 0);
  const host = options.host ?? '127.0.0.1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log?.info({ url, accounts: [...states.keys()] }, 'yunhu simulator listening');
  let closing: Promise<void> | undefined;

  const chatOf = (s: AccountState, chatType: number, chatId: string): YunhuSimChat => {
    const chat = s.account.chat(chatType, chatId);
    if (chat === undefined) throw new RangeError(`unknown chat ${key(chatType, chatId)} of ${s.account.id}`);
    return chat;
  };

  return {
    url,
    port,
    accounts: () =>
      [...states.values()].map((s) => ({
        id: s.account.id,
        token: s.account.token,
        userId: s.account.userId,
        chats: [...s.account.chats.values()].map((c) => ({ chatId: c.chatId, chatType: c.chatType })),
      })),
    close: () => (closing ??= closeServer(app)),
    received: (id) => [...get(id).log],
    arrivals: (id) => get(id).arrivals,
    expected: (id) =>
      [...get(id).account.chats.values()].flatMap((chat) =>
        chat.messages.map((m) => ({
          chat: key(chat.chatType, chat.chatId),
          chatType: chat.chatType,
          chatId: chat.chatId,
          msgId: m.msgId,
          seq: m.seq,
          contentType: m.contentType,
          text: typeof m.content['text'] === 'string' ? m.content['text'] : '',
          senderName: m.sender.name,
          senderId: m.sender.chat_id,
          sendTime: m.sendTime,
          editTime: m.editTime,
          recallTime: m.recallTime,
          recalledText: typeof m.recalledContent?.['text'] === 'string' ? m.recalledContent['text'] : '',
          edits: m.edits.map((e) => ({ id: e.id, contentOld: e.contentOld, msgTime: e.msgTime })),
          hostile: m.raw === undefined ? undefined : m.raw.length > 1024 * 1024 ? 'oversized' : 'malformed',
        })),
      ),
    setFaults,
    clearFaults,
    renewToken,
    postAsPeer: (id, chatType, chatId, contentType) => {
      const s = get(id);
      return s.account.postAsPeer(chatOf(s, chatType, chatId), Date.now(), contentType).msgId;
    },
    injectHostile: (id, chatType, chatId, kind) => {
      const s = get(id);
      const chat = chatOf(s, chatType, chatId);
      const rng = new Rng(hashString(`${id}:${chat.messages.length}:${kind}`));
      const msgId = rng.hex(32);
      const seq = (chat.messages.at(-1)?.seq ?? 0) + 1;
      const raw =
        kind === 'oversized'
          ? encodeYunhu('Msg', { msg_id: msgId, sender: chat.members[0], content_type: 1, content: { text: '长'.repeat(400_000) }, send_time: String(Date.now()), msg_seq: String(seq) })
          : kind === 'unreadable'
            ? // A msg_id field whose length runs past the message: nothing after it can be read.
              Buffer.from([0x0a, 0x50, ...Buffer.from(msgId.slice(0, 8))])
            : // msg_id and msg_seq readable, then a content field whose length runs past the message.
              Buffer.concat([encodeYunhu('Msg', { msg_id: msgId, msg_seq: String(seq), send_time: String(Date.now()) }), Buffer.from([0x2a, 0x40, 0x0a, 0x02, 0x68])]);
      s.account.append(chat, chat.members[0] ?? s.account.self, 1, {}, Date.now(), '', msgId, raw);
      return msgId;
    },
  };
}
