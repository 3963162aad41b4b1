/**
 * The Yunhu (云湖) poller: one account token, many chats, one cursor per chat (DESIGN §2).
 *
 * Request: `POST {baseUrl}/v1/msg/list-message-by-seq`, header `token`, protobuf body
 * `{msg_start, chat_type, chat_id}`; the answer lists the chat's messages after `msg_start`,
 * oldest first. Each message is handed on as the exact bytes it had in the response.
 *
 * Cursor: per chat (stream `<chat_type>:<chat_id>`), the highest `msg_seq` stored, as a decimal
 * string. A chat is read from its cursor until a page brings nothing new.
 *
 * Edits and recalls: messages change after they were read (`edit_time`, `recall_time`). After a
 * chat has caught up, its latest `rereadWindow` messages are read again, and every message whose
 * edit or recall time differs from what this process last handed on is emitted again (after a
 * restart: every edited or recalled message of the window, once; the sink makes that
 * idempotent). When more than the window arrived since the last re-read (a burst, or a restart
 * after downtime), the window the last re-read covered (after a restart: the one below the stored
 * cursor) is read again too: a message that was among the newest when it changed is not missed
 * because newer ones arrived before the next read. When a message's `edit_time` is new, its
 * edit history is read from `list-message-edit-record` (JSON) and each history entry is emitted,
 * as its exact bytes, in the same page right after the message.
 *
 * Chats: `chats` from the configuration, else the conversation list (`/v1/conversation/list`,
 * protobuf), read again every `conversationRefreshMs`.
 *
 * Failures: network, timeouts, 408/425/429/5xx are retried with jittered backoff (Retry-After
 * honoured) and the same request, 5 attempts in all. `status.code` -101 (not logged in) or a
 * token text, and HTTP 401/403, park the account (tried again every minute). Any other
 * non-success status, and a body that is not the protobuf (or JSON) it should be, becomes a dead
 * letter with the whole body (once per position and distinct body, or distinct status code and
 * text). A read that fails so (or with a permanent HTTP status, or past its attempts) sets its
 * chat back with a backoff of its own while the other chats go on, and is tried again then; no
 * cursor moves past it. The exception is an edit history: its message goes on without it, and
 * it is asked for again ({@link HISTORY_ATTEMPTS} times in all): by the re-reads while its message
 * is in the re-read window, on its own once the message has left it.
 */
import { createHash } from 'node:crypto';

import protobuf from 'protobufjs';

import { AuthError, isProgrammerError, MsgpipeError } from '../core/errors.ts';
import type { ErrorCode } from '../core/errors.ts';
import { decodeUtf8Lenient, itemSpans, parseLossless } from '../core/json.ts';
import { backoffMs, retry, type RetryPolicy } from '../core/retry.ts';
import type { DeadLetterRow, Origin, RawRecord } from '../core/types.ts';
import { postBytes } from './http.ts';
import { newSourceStats, type Source, type SourceContext, type SourcePage, type SourceStats, waitBeforeRetry, waitBetweenPolls } from './source.ts';
import type { YunhuSourceConfig } from './yunhu-config.ts';
import {
  decodeYunhu,
  encodeYunhu,
  readConversationList,
  readListResponse,
  WireError,
  type YunhuStatus,
} from './yunhu-proto.ts';

/** Paths below `baseUrl` (seeds/yunhu-msg-api.md). */
export const YUNHU_PATHS = {
  listBySeq: '/v1/msg/list-message-by-seq',
  listMessage: '/v1/msg/list-message',
  listByMidSeq: '/v1/msg/list-message-by-mid-seq',
  editRecord: '/v1/msg/list-message-edit-record',
  sendMessage: '/v1/msg/send-message',
  editMessage: '/v1/msg/edit-message',
  recallMsg: '/v1/msg/recall-msg',
  recallMsgBatch: '/v1/msg/recall-msg-batch',
  conversationList: '/v1/conversation/list',
} as const;

/** `status.code` / `code` of success. */
export const YUNHU_OK = 1;
/** `status.code` / `code` of a missing or invalid token ("未登录"). */
export const YUNHU_NOT_LOGGED_IN = -101;

const PROTOBUF = 'application/x-protobuf';
/** Texts of an error status that mean "this token is no longer valid". */
const AUTH_TEXT = /未登录|登录失效|重新登录|token|unauthori[sz]ed|expired/i;
/** History entries asked for per edit-record page, and the most pages read per message. */
const EDIT_PAGE_SIZE = 50;
const MAX_EDIT_PAGES = 20;

/** Backoff for transient failures: 0.5 s doubling to 60 s, forever (until stopped). */
const TRANSIENT_RETRY: RetryPolicy = { attempts: Infinity, minMs: 500, maxMs: 60_000, factor: 2 };
/**
 * Attempts of one read before its chat (or the conversation list) is set back with a backoff of
 * its own: a chat whose reads keep failing must not hold up the account's other chats.
 */
const READ_ATTEMPTS = 5;
/**
 * Rounds in which a message whose edit history failed is handed on again to ask for it, spaced
 * by the transient backoff (jittered, doubling from 0.5 s to 60 s: up to about 3 minutes in all);
 * then it goes on without one.
 */
const HISTORY_ATTEMPTS = 10;
const PARK_RETRY_MS = 60_000;
const MAX_IDLE_FACTOR = 10;
/** Pages one chat reads in a row before the account's other chats have their turn. */
const PAGES_PER_TURN = 20;

/** A chat to poll. */
export interface YunhuChat {
  readonly chatId: string;
  readonly chatType: number;
}

/** The cursor stream of a chat. */
export function chatStream(chat: YunhuChat): string {
  return `${chat.chatType}:${chat.chatId}`;
}

/** A message handed on without its edit history, to ask for it again. */
interface HistoryFailure {
  readonly stream: string;
  readonly msgId: string;
  readonly editTime: string;
  /** The message's edit and recall times when its history failed: a change since is handed on at once. */
  readonly state: string;
  readonly seq: bigint;
  readonly failures: number;
  readonly nextAt: number;
}

/**
 * Failed edit histories a source keeps asking for. Each lives for its {@link HISTORY_ATTEMPTS}
 * (a few minutes); more than this many at once means the edit record has been failing for long,
 * and the oldest are given up, with a warning.
 */
const MAX_HISTORY_FAILURES = 10_000;

/** The key of {@link YunhuSource}'s failed edit histories: `<stream>\u001f<msgId>`. */
function historyKey(stream: string, msgId: string): string {
  return `${stream}\u001f${msgId}`;
}

/** A body the poller cannot use: dead-lettered, then asked for again. */
class BadBody {
  readonly body: Uint8Array;
  readonly code: ErrorCode;
  readonly message: string;
  /**
   * What makes two bad answers at one position the same failure, for the once-only dead letter:
   * the body by default; the status code and text for an error status, whose body also carries
   * a fresh `request_id` on every answer.
   */
  readonly identity: Uint8Array | string;

  constructor(body: Uint8Array, code: ErrorCode, message: string, identity: Uint8Array | string = body) {
    this.body = body;
    this.code = code;
    this.message = message;
    this.identity = identity;
  }
}

/** Ends a round at an unusable answer (already dead-lettered); not retried in place. */
class BadPosition extends MsgpipeError {
  readonly bad: BadBody;

  constructor(bad: BadBody) {
    super(bad.code, bad.message);
    this.bad = bad;
  }
}

/**
 * The pipeline refused a page (`ctx.emit` failed): not a failure of the provider, so it is not
 * retried as one. {@link YunhuSource.run} rethrows the cause and the source stops, as the
 * finder sources do.
 */
class EmitFailed extends Error {
  constructor(cause: unknown) {
    super('The pipeline refused a page.', { cause });
    this.name = 'EmitFailed';
  }
}

async function emitPage(ctx: SourceContext, page: SourcePage): Promise<void> {
  try {
    await ctx.emit(page);
  } catch (err) {
    throw new EmitFailed(err);
  }
}

/** What the poller needs to know of a listed message (the transform reads the rest). */
export interface Listed {
  readonly bytes: Uint8Array;
  /**
   * Undefined when the message bytes do not decode, or carry no msg_id (the transform
   * dead-letters both): such a message is handed on once, by its bytes.
   */
  readonly msgId: string | undefined;
  /** Whether the bytes decode: then `seq` is the message's own, else peeked before the damage. */
  readonly decoded: boolean;
  readonly seq: bigint | undefined;
  /** `edit_time:recall_time`, what a re-read compares. */
  readonly state: string;
  readonly editTime: string;
}

/** Tuning knobs, mostly for tests. */
export interface YunhuSourceOptions {
  readonly retry?: RetryPolicy;
  readonly parkRetryMs?: number;
}

function statusError(status: YunhuStatus): AuthError | undefined {
  if (status.code === YUNHU_NOT_LOGGED_IN || AUTH_TEXT.test(status.msg)) {
    return new AuthError('Yunhu refused the account token.', {
      details: { provider: 'yunhu', providerCode: status.code, providerMessage: status.msg.slice(0, 200) },
    });
  }
  return undefined;
}

/**
 * The undecodable messages of a list page (in msg_seq order) that lie above `high` and at or
 * below `newHigh`: by their own msg_seq when it can be read, else by position, after the last
 * message at or below `high` and before the last one above it. Older ones were handed on when
 * the cursor passed them; newer ones are read from the cursor next.
 */
function passedUndecodable(page: readonly Listed[], high: bigint, newHigh: bigint): Listed[] {
  const lastOld = page.findLastIndex((m) => m.msgId !== undefined && m.seq !== undefined && m.seq <= high);
  const lastNew = page.findLastIndex((m) => m.msgId !== undefined && m.seq !== undefined && m.seq > high);
  return page.filter((m, i) => {
    if (m.msgId !== undefined) return false;
    if (m.seq !== undefined) return m.seq > high && m.seq <= newHigh;
    return i > lastOld && i < lastNew;
  });
}

/**
 * `messages` without a message listed again (the first is kept): under the same msg_id, or, for
 * one whose msg_id cannot be read, with the same bytes.
 */
function firstOfEach<T extends Listed>(messages: readonly T[]): T[] {
  const ids = new Set<string>();
  return messages.filter((m) => {
    const id = m.msgId ?? `\u0000${unreadableHash(m)}`;
    if (ids.has(id)) return false;
    ids.add(id);
    return true;
  });
}

/** A message with a readable msg_id and msg_seq: the cursor and the re-read window track it. */
function positioned(m: Listed): boolean {
  return m.msgId !== undefined && m.seq !== undefined;
}

function unreadableHash(m: Listed): string {
  return createHash('sha1').update(m.bytes).digest('hex');
}

function listed(bytes: Uint8Array): Listed {
  try {
    const msg = decodeYunhu('Msg', bytes);
    const seq = String(msg['msg_seq']);
    const editTime = String(msg['edit_time']);
    const msgId = String(msg['msg_id']);
    return {
      bytes,
      decoded: true,
      // '' is what an absent msg_id reads as: no identity, so the message is handed on once by
      // its bytes (the transform dead-letters it), as an undecodable one is; keyed by '' every
      // other message without one in the page was dropped without a trace.
      msgId: msgId === '' ? undefined : msgId,
      // 0 is what an absent msg_seq reads as: no position, so the message is handed on once
      // by its bytes (as an undecodable one is) instead of staying below every cursor.
      seq: /^\d+$/.test(seq) && seq !== '0' ? BigInt(seq) : undefined,
      state: `${editTime}:${String(msg['recall_time'])}`,
      editTime,
    };
  } catch (err) {
    if (!(err instanceof WireError)) throw err;
    // Undecodable: the transform dead-letters it. Its msg_seq may still be readable (fields
    // before the damage), so the cursor can pass it.
    const seq = peekSeq(bytes);
    return { bytes, msgId: undefined, decoded: false, seq, state: '', editTime: '0' };
  }
}

/**
 * The highest msg_seq of a page. A seq peeked from damaged bytes counts only when it is close to
 * the readable ones (seqs are consecutive), so garbage cannot push the cursor past real messages.
 */
export function highestSeq(page: readonly Listed[], floor: bigint): bigint {
  let top = floor;
  for (const m of page) if (m.decoded && m.seq !== undefined && m.seq > top) top = m.seq;
  // As many seqs past the readable ones as there are damaged messages past them: a damaged
  // newest message can move the cursor one on, a misread seq cannot skip unread messages.
  let damaged = 0;
  for (const m of page) if (!m.decoded && m.seq !== undefined && m.seq > top) damaged++;
  const bound = top + BigInt(damaged);
  for (const m of page) if (!m.decoded && m.seq !== undefined && m.seq > top && m.seq <= bound) top = m.seq;
  return top;
}

/** msg_seq (field 10) of damaged message bytes, when it stands before the damage. */
function peekSeq(bytes: Uint8Array): bigint | undefined {
  const reader = protobuf.Reader.create(bytes);
  let seq: bigint | undefined;
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      if (tag >>> 3 === 10 && (tag & 7) === 0) {
        const value: unknown = reader.uint64();
        seq = BigInt(String(value));
      } else reader.skipType(tag & 7);
    }
  } catch {
    // the damage: keep what was read before it
  }
  return seq;
}

/** A running poller of one Yunhu account. */
export class YunhuSource implements Source {
  readonly name: string;
  readonly origin: Origin;
  readonly stats: SourceStats = newSourceStats();
  private readonly config: YunhuSourceConfig;
  private readonly retryPolicy: RetryPolicy;
  /** {@link retryPolicy} with at most {@link READ_ATTEMPTS} attempts: one provider read. */
  private readonly readPolicy: RetryPolicy;
  private readonly parkRetryMs: number;
  private readonly base: string;
  /** Chat stream → stored high-water msg_seq (loaded once, then kept up to date). */
  private readonly cursors = new Map<string, bigint>();
  /** Chat stream → the cursor this process loaded: what it had stored before it started. */
  private readonly loadedCursors = new Map<string, bigint>();
  /**
   * Chat stream → the cursor the last completed re-read of the chat ended at (before the first:
   * the loaded cursor). Its window is read again when the cursor has moved past it by more than
   * the window, and {@link prune} keeps it in `seen` until then.
   */
  private readonly rereadAt = new Map<string, bigint>();
  /**
   * Chat stream → the cursor a turn ended at that handed messages on without a completed re-read
   * (its pages ran out, or a read failed): the chat's next turn reads that window again before
   * it reads on, and forgets it only once that read went through.
   */
  private readonly turnEnds = new Map<string, bigint>();
  /** Chat stream → msg_id → [msg_seq, state] of messages handed on by this process. */
  private readonly seen = new Map<string, Map<string, { seq: bigint; state: string; editTime: string }>>();
  /** Hashes of bad bodies already dead-lettered, per position. */
  private readonly reported = new Set<string>();
  /**
   * Hashes of undecodable messages with no readable msg_seq already handed on, per chat stream:
   * the cursor cannot pass them, so every read from the cursor lists them again.
   */
  private readonly unreadableSent = new Map<string, Set<string>>();
  /** Chat streams (and `conversations`) whose last read was unusable: failures in a row and when to ask again. */
  private readonly backoff = new Map<string, { failures: number; until: number }>();
  /**
   * `<stream>\u001f<msgId>` → a message handed on without its edit history: at which edit, how
   * many failures, when to ask again. Not remembered in `seen` meanwhile, so a re-read hands it on;
   * below the re-read window, {@link retryHistories} asks for the history alone. At most
   * {@link MAX_HISTORY_FAILURES}, oldest dropped first.
   */
  private readonly historyFailures = new Map<string, HistoryFailure>();
  private chats: YunhuChat[];
  private conversationMd5 = '';
  private conversationsReadAt = -Infinity;

  constructor(config: YunhuSourceConfig, options: YunhuSourceOptions = {}) {
    this.config = config;
    this.retryPolicy = options.retry ?? TRANSIENT_RETRY;
    this.readPolicy = { ...this.retryPolicy, attempts: Math.min(this.retryPolicy.attempts, READ_ATTEMPTS) };
    this.parkRetryMs = options.parkRetryMs ?? PARK_RETRY_MS;
    this.name = config.name;
    this.origin = Object.freeze({
      source: config.name,
      sourceType: 'yunhu',
      tenant: config.tenant,
      staffId: config.staffId ?? config.userId,
      account: config.userId,
    });
    this.base = config.baseUrl.replace(/\/+$/, '');
    this.chats = (config.chats ?? []).map((c) => ({ chatId: c.chatId, chatType: c.chatType }));
  }

  async run(ctx: SourceContext): Promise<void> {
    const log = ctx.log.child({ component: 'ingest.poller', source: this.name, sourceType: 'yunhu' });
    log.info({ chats: this.config.chats?.length ?? 'discovered' }, 'Source started.');
    const stopped = (): boolean => ctx.signal.aborted;
    let idle = 0;
    while (!stopped()) {
      let fresh: number;
      let answered: boolean;
      try {
        ({ fresh, answered } = await this.round(ctx, log));
      } catch (err) {
        if (err instanceof EmitFailed) throw err.cause;
        if (stopped()) break;
        this.stats.errors++;
        if (err instanceof AuthError) {
          if (!this.stats.parked) log.error({ err }, 'Account parked: Yunhu refused its token.');
          this.stats.parked = true;
          await waitBeforeRetry(ctx, this.parkRetryMs);
          continue;
        }
        if (isProgrammerError(err) || !(err instanceof MsgpipeError)) throw err;
        log.error({ err }, 'Poll failed permanently; trying again later.');
        await waitBeforeRetry(ctx, this.parkRetryMs);
        continue;
      }
      if (this.stats.parked) log.info('Account unparked: Yunhu accepted its token again.');
      this.stats.parked = false;
      if (answered) this.stats.lastSuccessAt = Date.now();
      if (fresh > 0) {
        idle = 0;
        continue;
      }
      this.stats.emptyPolls++;
      idle = idle === 0 ? this.config.pollIntervalMs : Math.min(idle * 2, this.config.pollIntervalMs * MAX_IDLE_FACTOR);
      await waitBetweenPolls(ctx, idle);
    }
    log.info('Source stopped.');
  }

  /**
   * One pass over every chat; returns how many new messages it handed on. A read that fails (an
   * unusable answer, dead-lettered by {@link bad}; a permanent HTTP status; transient failures
   * past {@link READ_ATTEMPTS}) sets its chat back with a backoff of its own and the pass goes
   * on, so a dissolved group, a mistyped chat id or one chat the provider cannot serve does not
   * stop the account's other chats. A refused token ends the pass.
   */
  private async round(ctx: SourceContext, log: SourceContext['log']): Promise<{ fresh: number; answered: boolean }> {
    let reads = 0;
    let answers = 0;
    const read = async <T>(key: string, fn: () => Promise<T>): Promise<T | undefined> => {
      const outcome = await this.isolated(log, ctx.signal, key, fn);
      if (outcome.ran) reads++;
      if (outcome.ok) answers++;
      return outcome.value;
    };
    if (this.config.chats === undefined && Date.now() - this.conversationsReadAt >= this.config.conversationRefreshMs) {
      await read('conversations', () => this.refreshChats(ctx, log));
    }
    let fresh = 0;
    for (const chat of this.chats) {
      if (ctx.signal.aborted) break;
      fresh += (await read(chatStream(chat), () => this.pollChat(ctx, chat))) ?? 0;
    }
    // Answered: some read succeeded, or there was nothing to read and nothing is backing off.
    return { fresh, answered: answers > 0 || (reads === 0 && this.backoff.size === 0) };
  }

  /** Runs `read` unless `key` is backing off; an unusable answer starts or lengthens its backoff. */
  private async isolated<T>(log: SourceContext['log'], signal: AbortSignal, key: string, read: () => Promise<T>): Promise<{ ran: boolean; ok: boolean; value: T | undefined }> {
    const backoff = this.backoff.get(key);
    if (backoff !== undefined && Date.now() < backoff.until) return { ran: false, ok: false, value: undefined };
    try {
      const value = await read();
      this.backoff.delete(key);
      return { ran: true, ok: true, value };
    } catch (err) {
      // A stop is not the chat's failure: a request it ends may reject with the stop's reason.
      if (!this.isReadFailure(err) || signal.aborted) throw err;
      this.stats.errors++;
      const failures = (backoff?.failures ?? 0) + 1;
      const waitMs = backoffMs(this.retryPolicy, failures);
      this.backoff.set(key, { failures, until: Date.now() + waitMs });
      if (err instanceof BadPosition) {
        log.warn({ stream: key, code: err.bad.code, reason: err.bad.message, attempt: failures, waitMs }, 'Unusable answer kept as a dead letter; asking again later.');
      } else {
        log.error({ err, stream: key, attempt: failures, waitMs }, 'Read failed; asking again later, the other chats go on.');
      }
      return { ran: true, ok: false, value: undefined };
    }
  }

  /**
   * A failure of one read, which sets back that read alone: an unusable answer, or the provider's
   * failure to answer (a permanent HTTP status, transient failures past the attempts). Not a
   * refused token (the whole account), not a page the pipeline refused, not a stop, not a bug.
   */
  private isReadFailure(err: unknown): err is MsgpipeError {
    return err instanceof MsgpipeError && !(err instanceof AuthError) && !isProgrammerError(err);
  }

  private async refreshChats(ctx: SourceContext, log: SourceContext['log']): Promise<void> {
    const body = await this.request(ctx, YUNHU_PATHS.conversationList, encodeYunhu('ConversationListRequest', { md5: this.conversationMd5 }));
    let list;
    try {
      list = readConversationList(body);
    } catch (err) {
      if (err instanceof WireError) return this.bad(ctx, 'conversations', new BadBody(body, 'MSGPIPE_ERR_PAGE_MALFORMED', err.message));
      throw err;
    }
    await this.checkStatus(ctx, 'conversations', body, list.status);
    this.conversationsReadAt = Date.now();
    // An empty list with the md5 we sent means "unchanged".
    if (list.chats.length === 0 && list.md5 !== '' && list.md5 === this.conversationMd5) return;
    const chats = list.chats.filter((c) => c.chatId !== '' && c.chatType >= 1 && c.chatType <= 3);
    this.conversationMd5 = list.md5;
    const known = new Set(this.chats.map(chatStream));
    const added = chats.filter((c) => !known.has(chatStream(c)));
    // Chats that left the list are kept: their messages stay readable.
    this.chats = [...this.chats, ...added.map((c) => ({ chatId: c.chatId, chatType: c.chatType }))];
    if (added.length > 0) log.info({ added: added.length, chats: this.chats.length }, 'Conversation list read.');
  }

  private async cursorOf(ctx: SourceContext, stream: string): Promise<bigint> {
    const known = this.cursors.get(stream);
    if (known !== undefined) return known;
    const stored = await retry(() => ctx.loadCursor(stream), { policy: this.retryPolicy, signal: ctx.signal });
    const value = stored !== undefined && /^\d+$/.test(stored) ? BigInt(stored) : 0n;
    this.cursors.set(stream, value);
    this.loadedCursors.set(stream, value);
    return value;
  }

  /**
   * Reads a chat from its cursor until nothing is new, then its re-read window. A chat with a
   * long backlog gets {@link PAGES_PER_TURN} pages and then lets the account's other chats have
   * their turn: the round that follows starts at once, since this one handed messages on.
   */
  private async pollChat(ctx: SourceContext, chat: YunhuChat): Promise<number> {
    const stream = chatStream(chat);
    let cursor = await this.cursorOf(ctx, stream);
    let fresh = 0;
    let pages = 0;
    let caughtUp = false;
    let reread = false;
    // Messages that were the newest when the last turn ended may have changed since.
    const turnEnd = this.turnEnds.get(stream);
    if (turnEnd !== undefined && this.config.rereadWindow > 0) {
      await this.reread(ctx, chat, this.windowBelow(turnEnd), turnEnd);
      if (ctx.signal.aborted) return 0;
      this.turnEnds.delete(stream);
    }
    try {
      while (!ctx.signal.aborted) {
        if (pages++ === PAGES_PER_TURN) break;
        const page = await this.listAfter(ctx, chat, cursor);
        const newer = firstOfEach(this.unsent(stream, page.filter((m) => m.seq === undefined || m.seq > cursor)));
        const top = highestSeq(newer, cursor);
        caughtUp = newer.length === 0 || top === cursor;
        if (newer.length === 0) break;
        await this.emitMessages(ctx, chat, cursor, top, newer);
        fresh += newer.length;
        // No readable seq moved us on (undecodable messages only): do not ask again this round.
        if (top === cursor) break;
        cursor = top;
        // What the re-read window no longer needs goes now: a backlog of a million messages must
        // not be remembered whole until the chat has caught up.
        this.prune(stream, cursor);
      }
      if (caughtUp && this.config.rereadWindow > 0 && cursor > 0n && !ctx.signal.aborted) {
        await this.rereadWindows(ctx, chat, [this.rereadAt.get(stream) ?? this.loadedCursors.get(stream) ?? cursor], cursor);
        this.rereadAt.set(stream, this.cursors.get(stream) ?? cursor);
        reread = true;
      }
    } finally {
      if (!reread && fresh > 0) this.turnEnds.set(stream, this.cursors.get(stream) ?? cursor);
    }
    // The re-read may have moved the cursor on: no page may carry an older one.
    const current = this.cursors.get(stream) ?? cursor;
    this.prune(stream, current);
    await this.retryHistories(ctx, chat, current);
    return fresh;
  }

  /**
   * Re-reads the windows below the cursors in `earlier` (of the last re-read) that the newest
   * window, below `cursor`, does not reach, then the newest; windows that overlap are read as one
   * range.
   */
  private async rereadWindows(ctx: SourceContext, chat: YunhuChat, earlier: readonly bigint[], cursor: bigint): Promise<void> {
    const below = (seq: bigint): bigint => this.windowBelow(seq);
    const anchors = [...new Set(earlier.filter((a) => a < cursor))].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
    const ranges: { low: bigint; until: bigint | undefined }[] = [];
    for (const range of [...anchors.map((a) => ({ low: below(a), until: a })), { low: below(cursor), until: undefined }]) {
      const previous = ranges.at(-1);
      if (previous?.until !== undefined && range.low <= previous.until) previous.until = range.until;
      else ranges.push(range);
    }
    for (const range of ranges) await this.reread(ctx, chat, range.low, range.until);
  }

  /** Where the re-read window below `seq` starts: the `rereadWindow` messages up to it follow. */
  private windowBelow(seq: bigint): bigint {
    const window = BigInt(this.config.rereadWindow);
    return seq > window ? seq - window : 0n;
  }

  /**
   * Asks again for the failed edit histories of messages below the re-read window, which no read
   * of the chat lists any more: each history that answers is handed on alone, in a page that
   * keeps the chat's cursor (its message was handed on before, with its latest content).
   */
  private async retryHistories(ctx: SourceContext, chat: YunhuChat, cursor: bigint): Promise<void> {
    const stream = chatStream(chat);
    const floor = cursor - BigInt(this.config.rereadWindow);
    const now = Date.now();
    for (const [key, failure] of this.historyFailures) {
      if (ctx.signal.aborted) return;
      if (failure.stream !== stream || failure.seq > floor || failure.nextAt > now) continue;
      const history = await this.editHistoryOrNone(ctx, stream, failure.msgId);
      if (history === undefined) {
        this.historyFailed(ctx, stream, failure.msgId, failure.editTime, failure.state, failure.seq);
        continue;
      }
      this.historyFailures.delete(key);
      const fetchedAt = Date.now();
      const position = cursor.toString();
      const records = history.map((bytes, index): RawRecord => ({ origin: this.origin, bytes, fetchedAt, cursor: `${stream}@${position}`, index, session: chat.chatId }));
      this.stats.pages++;
      this.stats.records += records.length;
      await emitPage(ctx, { origin: this.origin, stream, cursorBefore: position, cursorAfter: position, records, deadLetters: [] });
    }
  }

  /**
   * Reads the messages after `low` again and hands on those that changed: up to `until` (an
   * earlier window, whose pages keep the cursor), else up to the newest, new ones included.
   */
  private async reread(ctx: SourceContext, chat: YunhuChat, low: bigint, until?: bigint): Promise<void> {
    const stream = chatStream(chat);
    const seen = this.seen.get(stream);
    let start = low;
    let high = this.cursors.get(stream) ?? 0n;
    while (start < (until ?? high) && !ctx.signal.aborted) {
      const page = await this.listAfter(ctx, chat, start);
      // Not the message at `start` again, nor one listed twice (a provider may do both).
      const readable = firstOfEach(
        page.filter((m): m is Listed & { seq: bigint; msgId: string } => m.seq !== undefined && m.msgId !== undefined && m.seq > start && (until === undefined || m.seq <= until)),
      );
      if (readable.length === 0) break;
      const changed = readable.filter((m) => m.seq > high || seen?.get(m.msgId)?.state !== m.state);
      const top = readable.reduce((max, m) => (m.seq > max ? m.seq : max), start);
      const newHigh = top > high ? top : high;
      // After a restart nothing is in `seen`: only edited or recalled messages need handing on again.
      // Undecodable messages that the cursor moves past now (they arrived during the round) are
      // handed on too, to be dead-lettered by the transform.
      // A message whose edit history failed waits for its next attempt (historyFailures).
      const now = Date.now();
      // A message above the cursor this process started from that it has not seen was never
      // handed on: one the provider listed late, below messages already read.
      const loaded = this.loadedCursors.get(stream) ?? 0n;
      const worth = [
        ...changed.filter((m) => (m.seq > high || m.seq > loaded || seen?.has(m.msgId) === true || m.state !== '0:0') && !this.historyWaits(stream, m, now)),
        ...(until === undefined ? firstOfEach(this.unsent(stream, passedUndecodable(page, high, newHigh))) : []),
      ];
      if (worth.length > 0) await this.emitMessages(ctx, chat, high, newHigh, worth);
      else for (const m of changed) if (!this.historyPending(stream, m)) this.remember(stream, m);
      high = newHigh;
      if (top <= start) break;
      start = top;
    }
  }

  /**
   * Fetches edit histories where needed and emits one page. A history that cannot be read does
   * not hold the page back: the message goes on without it (its latest content and edit time are
   * in the message itself), an unusable answer is a dead letter ({@link bad}), and the message is
   * not remembered, so a later re-read (within `rereadWindow`, after a backoff) hands it on again
   * and asks for its history once more, {@link HISTORY_ATTEMPTS} times in all.
   */
  private async emitMessages(ctx: SourceContext, chat: YunhuChat, before: bigint, after: bigint, messages: readonly Listed[]): Promise<void> {
    const stream = chatStream(chat);
    const seen = this.seen.get(stream);
    const fetchedAt = Date.now();
    const cursorBefore = before.toString();
    const records: RawRecord[] = [];
    const push = (bytes: Uint8Array): void => {
      records.push({ origin: this.origin, bytes, fetchedAt, cursor: `${stream}@${cursorBefore}`, index: records.length, session: chat.chatId });
    };
    const historyMissing = new Set<string>();
    for (const m of messages) {
      push(m.bytes);
      if (m.msgId !== undefined && m.editTime !== '0' && seen?.get(m.msgId)?.editTime !== m.editTime) {
        const history = await this.editHistoryOrNone(ctx, stream, m.msgId);
        if (history === undefined) {
          if (this.historyFailed(ctx, stream, m.msgId, m.editTime, m.state, m.seq ?? 0n)) historyMissing.add(m.msgId);
        } else this.historyFailures.delete(historyKey(stream, m.msgId));
        for (const entry of history ?? []) push(entry);
      }
    }
    this.stats.pages++;
    this.stats.records += records.length;
    await emitPage(ctx, { origin: this.origin, stream, cursorBefore, cursorAfter: after.toString(), records, deadLetters: [] });
    this.cursors.set(stream, after);
    for (const m of messages) if (m.msgId === undefined || !historyMissing.has(m.msgId)) this.remember(stream, m);
    this.rememberUnreadable(stream, messages);
  }

  private remember(stream: string, m: Listed): void {
    if (m.msgId === undefined || m.seq === undefined) return;
    let seen = this.seen.get(stream);
    if (seen === undefined) {
      seen = new Map<string, { seq: bigint; state: string; editTime: string }>();
      this.seen.set(stream, seen);
    }
    seen.set(m.msgId, { seq: m.seq, state: m.state, editTime: m.editTime });
  }

  /** `messages` without the undecodable ones already handed on ({@link rememberUnreadable}). */
  private unsent(stream: string, messages: readonly Listed[]): Listed[] {
    const sent = this.unreadableSent.get(stream);
    if (sent === undefined) return [...messages];
    return messages.filter((m) => positioned(m) || !sent.has(unreadableHash(m)));
  }

  /**
   * Remembers the messages of an emitted page that have no position (undecodable, or without a
   * msg_seq) by a hash of their bytes, so one the cursor cannot pass goes to the transform once,
   * not on every read that lists it again.
   */
  private rememberUnreadable(stream: string, messages: readonly Listed[]): void {
    for (const m of messages) {
      if (positioned(m)) continue;
      let sent = this.unreadableSent.get(stream);
      if (sent === undefined) {
        sent = new Set();
        this.unreadableSent.set(stream, sent);
      }
      if (sent.size >= 10_000) sent.clear();
      sent.add(unreadableHash(m));
    }
  }

  /**
   * Forgets messages that left the re-read window, but for the windows of the last re-read and
   * of a turn that ended without one, which the next re-read reads again (a failed history is
   * kept: {@link retryHistories}).
   */
  private prune(stream: string, cursor: bigint): void {
    const window = BigInt(this.config.rereadWindow);
    const anchors = [this.rereadAt.get(stream), this.turnEnds.get(stream)].filter((a) => a !== undefined);
    const seen = this.seen.get(stream);
    if (seen === undefined) return;
    for (const [id, entry] of seen) {
      if (entry.seq > cursor - window) continue;
      if (anchors.some((a) => entry.seq > a - window && entry.seq <= a)) continue;
      seen.delete(id);
    }
  }

  /** One list-message-by-seq call: the messages after `start`. */
  private async listAfter(ctx: SourceContext, chat: YunhuChat, start: bigint): Promise<Listed[]> {
    const request = encodeYunhu('ListMessageBySeqRequest', { msg_start: start.toString(), chat_type: chat.chatType, chat_id: chat.chatId });
    const position = `${chatStream(chat)}@${start}`;
    const body = await this.request(ctx, YUNHU_PATHS.listBySeq, request);
    let list;
    try {
      list = readListResponse(body);
    } catch (err) {
      if (err instanceof WireError) return this.bad(ctx, position, new BadBody(body, 'MSGPIPE_ERR_PAGE_MALFORMED', err.message));
      throw err;
    }
    await this.checkStatus(ctx, position, body, list.status);
    return list.spans.map((s) => listed(body.subarray(s.start, s.end)));
  }

  /** The failed edit history of `m` (at its current edit) that is to be asked for again, if any. */
  private historyFailure(stream: string, m: Listed): HistoryFailure | undefined {
    const failure = m.msgId === undefined ? undefined : this.historyFailures.get(historyKey(stream, m.msgId));
    return failure?.editTime === m.editTime ? failure : undefined;
  }

  /** Whether `m`'s edit history failed and is to be asked for again: it stays out of `seen`. */
  private historyPending(stream: string, m: Listed): boolean {
    return this.historyFailure(stream, m) !== undefined;
  }

  /**
   * Whether `m`'s edit history failed and its next attempt comes after `now`, `m` unchanged since
   * (a recall meanwhile is handed on at once).
   */
  private historyWaits(stream: string, m: Listed, now: number): boolean {
    const failure = this.historyFailure(stream, m);
    return failure?.state === m.state && failure.nextAt > now;
  }

  /**
   * Counts a failed edit history of a message at `editTime`; returns whether to ask again later
   * (the message is then left out of `seen`), false once {@link HISTORY_ATTEMPTS} have failed.
   */
  private historyFailed(ctx: SourceContext, stream: string, msgId: string, editTime: string, state: string, seq: bigint): boolean {
    const key = historyKey(stream, msgId);
    const previous = this.historyFailures.get(key);
    const failures = previous?.editTime === editTime ? previous.failures + 1 : 1;
    if (failures >= HISTORY_ATTEMPTS) {
      this.historyFailures.delete(key);
      ctx.log.warn({ source: this.name, stream, msgId, attempts: failures }, 'Edit history could not be read; the message stays without it.');
      return false;
    }
    if (previous === undefined && this.historyFailures.size >= MAX_HISTORY_FAILURES) {
      const [oldestKey, oldest] = this.historyFailures.entries().next().value ?? [];
      if (oldestKey !== undefined) this.historyFailures.delete(oldestKey);
      ctx.log.warn({ source: this.name, stream: oldest?.stream, msgId: oldest?.msgId }, 'Too many edit histories to ask for again; the oldest message stays without its history.');
    }
    this.historyFailures.set(key, { stream, msgId, editTime, state, seq, failures, nextAt: Date.now() + backoffMs(this.retryPolicy, failures) });
    return true;
  }

  /** {@link editHistory}, or undefined when it cannot be read now (logged; an unusable answer is a dead letter). */
  private async editHistoryOrNone(ctx: SourceContext, stream: string, msgId: string): Promise<Uint8Array[] | undefined> {
    try {
      return await this.editHistory(ctx, stream, msgId);
    } catch (err) {
      if (!this.isReadFailure(err) || ctx.signal.aborted) throw err;
      this.stats.errors++;
      ctx.log.warn({ err, source: this.name, stream, msgId }, 'Edit history could not be read; the message goes on without it for now.');
      return undefined;
    }
  }

  /** The edit history entries of a message, each as its exact JSON bytes. */
  private async editHistory(ctx: SourceContext, stream: string, msgId: string): Promise<Uint8Array[]> {
    const entries: Uint8Array[] = [];
    for (let page = 1; page <= MAX_EDIT_PAGES; page++) {
      const request = Buffer.from(JSON.stringify({ msgId, size: EDIT_PAGE_SIZE, page }));
      const body = await this.request(ctx, YUNHU_PATHS.editRecord, request, 'application/json');
      const position = `${stream}#edits:${msgId}:${page}`;
      let spans;
      let envelope: unknown;
      try {
        spans = itemSpans(body, ['data', 'list']) ?? [];
        envelope = parseLossless(decodeUtf8Lenient(body));
      } catch (err) {
        return this.bad(ctx, position, new BadBody(body, 'MSGPIPE_ERR_PAGE_MALFORMED', `Edit record is not JSON: ${(err as Error).message}`));
      }
      const fields = envelope !== null && typeof envelope === 'object' ? (envelope as Record<string, unknown>) : {};
      const code = Number(fields['code']);
      const message = typeof fields['msg'] === 'string' ? fields['msg'] : '';
      await this.checkStatus(ctx, position, body, Number.isFinite(code) ? { requestId: '', code, msg: message } : undefined);
      for (const s of spans) entries.push(body.subarray(s.start, s.end));
      const data = fields['data'] as Record<string, unknown> | undefined;
      // By `total` when the answer has it: a server may cap the page below the size asked for.
      const total = Number(data?.['total']);
      if (spans.length === 0) break;
      if (Number.isFinite(total) && total > 0 ? entries.length >= total : spans.length < EDIT_PAGE_SIZE) break;
    }
    return entries;
  }

  /** Throws for a status that is not success: AuthError, or a dead letter of the body. */
  private async checkStatus(ctx: SourceContext, position: string, body: Uint8Array, status: YunhuStatus | undefined): Promise<void> {
    if (status === undefined) {
      return this.bad(ctx, position, new BadBody(body, 'MSGPIPE_ERR_PAGE_MALFORMED', 'Answer has no status.'));
    }
    if (status.code === YUNHU_OK) return;
    const auth = statusError(status);
    if (auth !== undefined) throw auth;
    const message = `Yunhu answered status ${status.code}: ${status.msg.slice(0, 200)}`;
    return this.bad(ctx, position, new BadBody(body, 'MSGPIPE_ERR_PROVIDER', message, `status ${status.code}\n${status.msg}`));
  }

  /** Dead-letters an unusable body (once per distinct body and position), then abandons the round. */
  private async bad(ctx: SourceContext, position: string, bad: BadBody): Promise<never> {
    const hash = createHash('sha1').update(position).update('\n').update(bad.identity).digest('hex');
    if (!this.reported.has(hash)) {
      const stream = position.split(/[@#]/)[0] ?? position;
      const deadLetter: DeadLetterRow = {
        tenant: this.origin.tenant,
        source: this.origin.source,
        source_type: this.origin.sourceType,
        stage: 'ingest',
        error_code: bad.code,
        error_message: bad.message,
        original_base64: Buffer.from(bad.body.buffer, bad.body.byteOffset, bad.body.byteLength).toString('base64'),
        origin_key: `${this.name}:${position}#page`,
        occurred_at: Date.now(),
      };
      // A chat's page keeps the chat's cursor; the conversation list's (stream `conversations`)
      // keeps the list's md5, which nothing reads back.
      const cursor = stream === 'conversations' ? this.conversationMd5 : (this.cursors.get(stream) ?? 0n).toString();
      await emitPage(ctx, { origin: this.origin, stream, cursorBefore: cursor, cursorAfter: cursor, records: [], deadLetters: [deadLetter] });
      if (this.reported.size > 10_000) this.reported.clear();
      this.reported.add(hash);
    }
    throw new BadPosition(bad);
  }

  /** POSTs with retries of transient failures, at most {@link READ_ATTEMPTS}; returns the 2xx body. */
  private async request(ctx: SourceContext, path: string, body: Uint8Array, contentType = PROTOBUF): Promise<Uint8Array> {
    const url = `${this.base}${path}`;
    const res = await retry(
      () => {
        this.stats.polls++;
        return postBytes(
          url,
          { 'content-type': contentType, accept: contentType, token: this.config.token },
          body,
          { timeoutMs: this.config.requestTimeoutMs, signal: ctx.signal },
        );
      },
      {
        policy: this.readPolicy,
        signal: ctx.signal,
        onRetry: (err, attempt, waitMs) => {
          this.stats.errors++;
          ctx.log.warn({ err, attempt, waitMs, source: this.name }, 'Yunhu request failed; retrying.');
        },
      },
    );
    return res.body;
  }
}
