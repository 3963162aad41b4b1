/**
 * One account's deterministic message stream, addressable by index.
 *
 * `messageAt(i)` builds message i from `(seed, i)` alone (plus at most the two messages before
 * it, for the kinds that refer back), so the stream is lazy, random-access and cheap: nothing
 * is precomputed per message, a million messages cost a million small builds, and a cursor can
 * point anywhere. The same seed always yields the same stream.
 *
 * Cross-message structure is expressed as rules over neighbours, which keeps every lookup O(1):
 *  - a file upload placeholder (49/74) sits at an even index and the finished file (49/6) at the
 *    next index, pointing back with `overwrite_newmsgid`;
 *  - a revoke (10002 revokemsg) revokes the message just before it, in that message's session;
 *  - a quote (49/57) quotes the message just before it, entity-encoding its XML;
 *  - pseudo ids (`MsgId == NewMsgId == CreateTime`, as on real revoke and functionmsg rows) are
 *    only given at even indices, and timestamps are laid out in pairs so such ids never collide.
 * The first ~34 messages follow a fixed plan holding every kind, so any stream of a few dozen
 * messages already covers the whole format reference.
 */

import { createHash } from 'node:crypto';

import {
  buildCard,
  buildChatRecord,
  buildEmoji,
  buildFile,
  buildFilePlaceholder,
  buildFinderFeed,
  buildFinderLive,
  buildFinderLiveClose,
  buildFunctionMsg,
  buildImage,
  buildLink,
  buildLocation,
  buildPat,
  buildQuote,
  buildRedPacket,
  buildRevoke,
  buildStatusNotify,
  buildSystem,
  buildText,
  buildTransfer,
  buildUnknownAppmsg,
  buildUnknownMsgType,
  buildVideo,
  buildVoice,
  buildWeapp,
} from './content.ts';
import type { BuildContext, BuiltContent, ReferencedMessage, TextVariant } from './content.ts';
import { buildIdentity } from './identity.ts';
import type { AccountIdentity, SimSession } from './identity.ts';
import { KIND_INFO, SIM_KINDS } from './kinds.ts';
import type { Destination, SimKind } from './kinds.ts';
import { hash3, Rng } from './random.ts';
import type { MsgType } from '../core/types.ts';

/** The providers the simulator speaks. */
export const SIM_PROVIDERS = ['gewe', 'videosapi', 'syncfinder'] as const;
export type SimProvider = (typeof SIM_PROVIDERS)[number];

/** What a stream is made from. */
export interface StreamConfig {
  readonly provider: SimProvider;
  readonly seed: number;
  /** Number of messages in the stream (indices 0 … messages-1). */
  readonly messages: number;
  readonly sessions: number;
  /** CreateTime of message 0, unix seconds. */
  readonly startTime: number;
  /** Average gap between messages, seconds (≥ 1). */
  readonly secondsPerMessage: number;
  /** Relative weights per kind after the opening plan. */
  readonly mix: Readonly<Record<SimKind, number>>;
}

/** One generated upstream message, with everything the wire item and the ground truth need. */
export interface SimMessage {
  readonly index: number;
  readonly kind: SimKind;
  readonly msgType: number;
  readonly newMsgId: string;
  readonly msgId: number;
  readonly msgSeq: number;
  readonly seq: number;
  readonly createTime: number;
  readonly from: string;
  readonly to: string;
  readonly sessionId: string;
  readonly isSender: 0 | 1;
  readonly content: string;
  readonly msgSource: string;
  readonly status: number;
  readonly imgStatus: number;
  readonly imgBufLen: number;
  readonly imgBuf: string | undefined;
  readonly syncKeyType: number;
  readonly itemType: number;
  readonly subType: number;
  /** Absent (undefined) on server instructions, as in the syncFinder seed. */
  readonly extinfo: string | undefined;
  readonly text: string;
  readonly fields: Readonly<Record<string, string>>;
  /** JSON-quoted forms for the serialiser. */
  readonly jsonFrom: string;
  readonly jsonTo: string;
  readonly jsonSessionId: string;
}

/**
 * The ground truth for one unique upstream message: what msgpipe should end up storing.
 *
 * `text` is the message's primary text: the text itself (1), the appmsg title (49; the
 * description is `fields.description`), the reply of a quote, the line of a system message
 * (10000), the replace text of a revoke, the raw template of a pat; '' for media and events.
 */
export interface ExpectedMessage {
  /** Position in the account's stream. */
  readonly index: number;
  /** NewMsgId, exact decimal. */
  readonly newMsgId: string;
  /** The `msgid` msgpipe stores: NewMsgId, or for a pseudo id the id derived from the content. */
  readonly msgid: string;
  readonly msgId: number;
  /** `msgSessionId` ('' for server instructions). */
  readonly msgSessionId: string;
  readonly kind: SimKind;
  readonly msgType: number;
  readonly appType: number;
  readonly sysType: string;
  /** Where msgpipe should store it: `messages`, `events`, or nowhere (a file placeholder). */
  readonly destination: Destination;
  readonly designType: MsgType | null;
  readonly eventType: string | null;
  readonly createTime: number;
  readonly seq: number;
  readonly from: string;
  readonly to: string;
  readonly isSender: 0 | 1;
  /** Content.string exactly as sent. */
  readonly content: string;
  readonly msgSource: string;
  readonly text: string;
  readonly fields: Readonly<Record<string, string>>;
  /** NewMsgId of the revoke that recalled this message, or null. */
  readonly recalledBy: string | null;
  /** CreateTime of that revoke, or null. */
  readonly recallTime: number | null;
}

interface PlanStep {
  readonly kind: SimKind;
  readonly variant?: TextVariant;
  /** Force a pseudo id (MsgId == NewMsgId == CreateTime); only valid at even indices. */
  readonly pseudo?: boolean;
  readonly newMsgId?: string;
  /** Only for this provider (the syncFinder seed's pinned functionmsg id). */
  readonly provider?: SimProvider;
}

/** NewMsgId of the syncFinder seed's first functionmsg, pinned end to end by DESIGN §3. */
export const SEED_FUNCTIONMSG_ID = '3876235366388279544';
/** int64 max: the largest NewMsgId there can be. */
export const INT64_MAX_ID = '9223372036854775807';
/** 2^53 + 1: the smallest integer a double cannot hold; JSON.parse turns it into …992. */
export const JUST_ABOVE_2_53_ID = '9007199254740993';

/** The opening of every stream: each kind once, in an order that satisfies the neighbour rules. */
const OPENING: readonly PlanStep[] = [
  { kind: 'text', variant: 'emoji' },
  { kind: 'image' },
  { kind: 'text', variant: 'mention' },
  { kind: 'revoke' },
  { kind: 'file_placeholder' },
  { kind: 'file' },
  { kind: 'image' },
  { kind: 'quote' },
  { kind: 'voice' },
  { kind: 'video' },
  { kind: 'emoji' },
  { kind: 'location' },
  { kind: 'card' },
  { kind: 'link' },
  { kind: 'chatrecord' },
  { kind: 'weapp' },
  { kind: 'finder_feed' },
  { kind: 'finder_live' },
  { kind: 'transfer' },
  { kind: 'redpacket' },
  { kind: 'pat' },
  { kind: 'system' },
  { kind: 'functionmsg', pseudo: true },
  { kind: 'finderliveclose' },
  { kind: 'functionmsg', newMsgId: SEED_FUNCTIONMSG_ID, provider: 'syncfinder' },
  { kind: 'statusnotify' },
  { kind: 'unknown_msgtype' },
  { kind: 'unknown_appmsg' },
  { kind: 'text', variant: 'multiline' },
  { kind: 'text', newMsgId: INT64_MAX_ID },
  { kind: 'text', newMsgId: JUST_ABOVE_2_53_ID },
  { kind: 'text', variant: 'plain' },
  { kind: 'revoke', pseudo: true },
  { kind: 'text' },
];

/** Kinds a revoke or a quote may point at (user content with its own session). */
const REFERABLE: ReadonlySet<SimKind> = new Set<SimKind>([
  'text',
  'image',
  'voice',
  'video',
  'emoji',
  'location',
  'card',
  'link',
  'chatrecord',
  'weapp',
  'finder_feed',
  'finder_live',
  'transfer',
]);

const EVENT_KINDS: ReadonlySet<SimKind> = new Set<SimKind>(['functionmsg', 'finderliveclose']);
/** Kinds that only ever arrive from the other side or the server. */
const RECEIVED_ONLY: ReadonlySet<SimKind> = new Set<SimKind>(['pat', 'system', 'functionmsg', 'finderliveclose', 'unknown_msgtype']);
const PSEUDO_CAPABLE: ReadonlySet<SimKind> = new Set<SimKind>(['revoke', 'functionmsg', 'finderliveclose']);

// Salts separate the independent random draws of one message.
const SALT_KIND = 1;
const SALT_SESSION = 2;
const SALT_ID = 3;
const SALT_TIME = 4;
const SALT_TIME_ODD = 5;
const SALT_PSEUDO = 6;
const SALT_CONTENT = 7;

/** The lazy, deterministic message stream of one account. Not thread-shared: one per account. */
export class MessageStream {
  readonly config: StreamConfig;
  readonly identity: AccountIdentity;
  private readonly rng = new Rng();
  private readonly idRng = new Rng();
  private readonly cumulative: Float64Array;
  private readonly kinds: readonly SimKind[];
  private readonly msgIdBase: number;
  private readonly seqBase: number;
  private readonly stride: number;

  constructor(config: StreamConfig) {
    this.config = config;
    this.identity = buildIdentity(config.seed, Math.max(1, config.sessions));
    const kinds = SIM_KINDS.filter((k) => config.mix[k] > 0);
    if (kinds.length === 0) kinds.push('text');
    this.kinds = kinds;
    this.cumulative = new Float64Array(kinds.length);
    let total = 0;
    kinds.forEach((k, n) => {
      total += config.mix[k] > 0 ? config.mix[k] : 0;
      this.cumulative[n] = total;
    });
    for (let n = 0; n < kinds.length; n++) this.cumulative[n] = (this.cumulative[n] ?? 0) / total;
    this.msgIdBase = 1_000_000_000 + (hash3(config.seed, 0, 11) % 1_100_000_000);
    this.seqBase = hash3(config.seed, 0, 12) % 2_000;
    this.stride = Math.max(2, Math.round(config.secondsPerMessage * 2));
  }

  /** The number of messages in the stream. */
  get length(): number {
    return this.config.messages;
  }

  private planAt(i: number): PlanStep | undefined {
    const step = OPENING[i];
    if (step?.provider !== undefined && step.provider !== this.config.provider) return { kind: step.kind };
    return step;
  }

  /** The kind drawn for index i before the neighbour rules apply. */
  private rawKind(i: number): SimKind {
    const step = this.planAt(i);
    if (step !== undefined) return step.kind;
    const u = hash3(this.config.seed, i, SALT_KIND) / 4294967296;
    const c = this.cumulative;
    for (let n = 0; n < c.length; n++) {
      if (u < (c[n] ?? 1)) return this.kinds[n] ?? 'text';
    }
    return this.kinds[this.kinds.length - 1] ?? 'text';
  }

  /** True when index j holds a file-upload placeholder (even index, with room for its file). */
  private isPlaceholder(j: number): boolean {
    if (j < 0 || (j & 1) !== 0 || j + 1 >= this.config.messages) return false;
    const raw = this.rawKind(j);
    return raw === 'file_placeholder' || raw === 'file';
  }

  /** True when a revoke or a quote at j+1 may point at j. Decided on raw kinds: no recursion. */
  private isReferable(j: number): boolean {
    if (j < 0) return false;
    if (this.isPlaceholder(j - 1)) return true; // j is the finished file
    const raw = this.rawKind(j);
    return REFERABLE.has(raw) && !this.isPlaceholder(j);
  }

  /** The kind of message i after the neighbour rules. */
  kindAt(i: number): SimKind {
    if (this.isPlaceholder(i - 1)) return 'file';
    const raw = this.rawKind(i);
    if (raw === 'file_placeholder' || raw === 'file') return this.isPlaceholder(i) ? 'file_placeholder' : 'text';
    if (raw === 'revoke' || raw === 'quote') return this.isReferable(i - 1) ? raw : 'text';
    return raw;
  }

  /** The session of message i, or undefined for server instructions (msgSessionId ""). */
  private sessionAt(i: number, kind: SimKind): SimSession | undefined {
    if (EVENT_KINDS.has(kind)) return undefined;
    if (kind === 'file' || kind === 'revoke' || kind === 'quote') return this.sessionAt(i - 1, this.kindAt(i - 1));
    const sessions = this.identity.sessions;
    // Skewed: a few sessions are busy, most are quiet, as in a real inbox.
    const u = hash3(this.config.seed, i, SALT_SESSION) / 4294967296;
    return sessions[Math.floor(u * u * sessions.length)] ?? sessions[0];
  }

  private isSenderAt(i: number, kind: SimKind): 0 | 1 {
    if (kind === 'file' || kind === 'revoke') return this.isSenderAt(i - 1, this.kindAt(i - 1));
    if (RECEIVED_ONLY.has(kind)) return 0;
    if (kind === 'statusnotify') return 1;
    return hash3(this.config.seed, i, SALT_SESSION + 100) % 10 < 4 ? 1 : 0;
  }

  /**
   * CreateTime of message i. Messages come in pairs: pair m lives in its own window of
   * `stride` seconds, and the second of a pair shares the first's second one time in four. So
   * seconds are shared (as in real traffic) but only within a pair, never by two even indices.
   */
  createTimeAt(i: number): number {
    const m = Math.floor(i / 2);
    const jitter = hash3(this.config.seed, m, SALT_TIME) % (this.stride - 1);
    const odd = (i & 1) === 1 && hash3(this.config.seed, i, SALT_TIME_ODD) % 4 !== 0 ? 1 : 0;
    return this.config.startTime + m * this.stride + jitter + odd;
  }

  private isPseudo(i: number, kind: SimKind): boolean {
    if ((i & 1) !== 0 || !PSEUDO_CAPABLE.has(kind)) return false;
    const step = this.planAt(i);
    if (step !== undefined) return step.pseudo === true;
    return hash3(this.config.seed, i, SALT_PSEUDO) % 2 === 0;
  }

  /** NewMsgId and MsgId of message i, without building its content. */
  idsAt(i: number, kind: SimKind = this.kindAt(i)): { newMsgId: string; msgId: number; seq: number } {
    const seq = this.seqBase + i + 1;
    if (this.isPseudo(i, kind)) {
      const t = this.createTimeAt(i);
      return { newMsgId: String(t), msgId: t, seq };
    }
    const forced = this.planAt(i)?.newMsgId;
    const newMsgId = forced ?? this.idRng.reset(hash3(this.config.seed, i, SALT_ID)).int64Id();
    // syncFinder numbers MsgId like its seq (1172, 1173 …); GeWe's int32 MsgId wraps negative.
    const msgId = this.config.provider === 'syncfinder' ? seq : (this.msgIdBase + i) | 0;
    return { newMsgId, msgId, seq };
  }

  private referenced(j: number): ReferencedMessage {
    const m = this.messageAt(j);
    const session = this.sessionAt(j, m.kind);
    return {
      msgId: m.msgId,
      newMsgId: m.newMsgId,
      msgType: m.msgType,
      from: m.from,
      createTime: m.createTime,
      content: m.content,
      msgSource: m.msgSource,
      senderName: m.isSender === 1 ? this.identity.finderName : (session?.peerName ?? ''),
      fields: m.fields,
    };
  }

  /** Builds message i. Throws RangeError outside the stream. */
  messageAt(i: number): SimMessage {
    if (!Number.isInteger(i) || i < 0 || i >= this.config.messages) {
      throw new RangeError(`message index ${i} outside 0..${this.config.messages - 1}`);
    }
    const kind = this.kindAt(i);
    const info = KIND_INFO[kind];
    // Referenced messages are built first: they reuse the shared generator.
    const ref = kind === 'file' || kind === 'quote' ? this.referenced(i - 1) : undefined;
    const revokeTarget = kind === 'revoke' ? this.idsAt(i - 1) : undefined;
    const session = this.sessionAt(i, kind);
    const isSender = this.isSenderAt(i, kind);
    const { newMsgId, msgId, seq } = this.idsAt(i, kind);
    const createTime = this.createTimeAt(i);
    const me = session?.me ?? '';
    const peer = session?.peer ?? '';
    const from = isSender === 1 ? me : peer;
    const to = isSender === 1 ? peer : me;
    const rng = this.rng.reset(hash3(this.config.seed, i, SALT_CONTENT));
    const ctx: BuildContext = {
      rng,
      identity: this.identity,
      session: session ?? EMPTY_SESSION,
      isSender,
      from,
      to,
      createTime,
      newMsgId,
    };
    const built = this.build(kind, i, ctx, ref, revokeTarget);
    const jsonMe = session?.jsonMe ?? '""';
    const jsonPeer = session?.jsonPeer ?? '""';
    return {
      index: i,
      kind,
      msgType: info.msgType,
      newMsgId,
      msgId,
      msgSeq: seq,
      seq,
      createTime,
      from,
      to,
      sessionId: session?.id ?? '',
      isSender,
      content: built.content,
      msgSource: built.msgSource,
      status: built.status ?? 3,
      imgStatus: built.imgStatus ?? 1,
      imgBufLen: built.imgBuf?.len ?? 0,
      imgBuf: built.imgBuf?.base64,
      syncKeyType: session?.syncKeyType ?? 1,
      itemType: 1,
      subType: session?.subType ?? 0,
      extinfo: session === undefined ? undefined : session.extinfo,
      text: built.text,
      fields: built.fields,
      jsonFrom: isSender === 1 ? jsonMe : jsonPeer,
      jsonTo: isSender === 1 ? jsonPeer : jsonMe,
      jsonSessionId: session?.jsonId ?? '""',
    };
  }

  private build(
    kind: SimKind,
    i: number,
    ctx: BuildContext,
    ref: ReferencedMessage | undefined,
    target: { newMsgId: string; msgId: number } | undefined,
  ): BuiltContent {
    switch (kind) {
      case 'text':
        return buildText(ctx, this.planAt(i)?.variant);
      case 'image':
        return buildImage(ctx);
      case 'voice':
        return buildVoice(ctx);
      case 'video':
        return buildVideo(ctx);
      case 'emoji':
        return buildEmoji(ctx);
      case 'location':
        return buildLocation(ctx);
      case 'card':
        return buildCard(ctx);
      case 'link':
        return buildLink(ctx);
      case 'file_placeholder':
        return buildFilePlaceholder(ctx);
      case 'file':
        return buildFile(ctx, ref ?? missingRef(i));
      case 'chatrecord':
        return buildChatRecord(ctx);
      case 'weapp':
        return buildWeapp(ctx);
      case 'finder_feed':
        return buildFinderFeed(ctx);
      case 'finder_live':
        return buildFinderLive(ctx);
      case 'quote':
        return buildQuote(ctx, ref ?? missingRef(i));
      case 'transfer':
        return buildTransfer(ctx);
      case 'redpacket':
        return buildRedPacket(ctx);
      case 'revoke':
        return buildRevoke(ctx, target ?? missingRef(i));
      case 'pat':
        return buildPat(ctx);
      case 'system':
        return buildSystem(ctx);
      case 'functionmsg':
        return buildFunctionMsg(ctx);
      case 'finderliveclose':
        return buildFinderLiveClose(ctx);
      case 'statusnotify': {
        const prev = i > 0 ? this.idsAt(i - 1).newMsgId : ctx.newMsgId;
        return buildStatusNotify(ctx, prev, i > 0 ? this.createTimeAt(i - 1) : ctx.createTime);
      }
      case 'unknown_msgtype':
        return buildUnknownMsgType(ctx);
      case 'unknown_appmsg':
        return buildUnknownAppmsg(ctx);
    }
  }

  /**
   * The ground truth for messages [0, upTo): each unique message once, revoked ones marked.
   * Builds every message, so call it on test-sized streams.
   */
  expected(upTo: number = this.config.messages): ExpectedMessage[] {
    const n = Math.min(upTo, this.config.messages);
    const out: ExpectedMessage[] = [];
    const recalls = new Map<number, { by: string; at: number }>();
    for (let i = 0; i < n; i++) {
      const m = this.messageAt(i);
      if (m.kind === 'revoke') recalls.set(i - 1, { by: m.newMsgId, at: m.createTime });
      out.push(toExpected(m));
    }
    for (const [j, r] of recalls) {
      const e = out[j];
      if (e !== undefined) out[j] = { ...e, recalledBy: r.by, recallTime: r.at };
    }
    return out;
  }
}

const EMPTY_SESSION: SimSession = {
  id: '',
  me: '',
  peer: '',
  peerKind: 'session',
  peerName: '',
  syncKeyType: 1,
  subType: 0,
  extinfo: '',
  jsonId: '""',
  jsonMe: '""',
  jsonPeer: '""',
};

function missingRef(i: number): never {
  throw new RangeError(`message ${i} refers to a message before the stream`);
}

/**
 * The `msgid` msgpipe is to store for `m` (docs/schema.md): NewMsgId, except for a system line or
 * sysmsg given a pseudo id (the stream's pseudo ids equal CreateTime), whose id is the first 64
 * bits of SHA-256 over `[MsgType, CreateTime, from, to, session, content]` as decimal.
 */
function storedMsgid(m: SimMessage, msgType: number): string {
  if ((msgType !== 10000 && msgType !== 10002) || m.newMsgId !== String(m.createTime)) return m.newMsgId;
  const canonical = JSON.stringify([msgType, m.createTime, m.from, m.to, m.sessionId, m.content]);
  return createHash('sha256').update(canonical).digest().readBigUInt64BE(0).toString();
}

/** The ground-truth view of a generated message. */
export function toExpected(m: SimMessage): ExpectedMessage {
  const info = KIND_INFO[m.kind];
  return {
    index: m.index,
    newMsgId: m.newMsgId,
    msgid: storedMsgid(m, info.msgType),
    msgId: m.msgId,
    msgSessionId: m.sessionId,
    kind: m.kind,
    msgType: info.msgType,
    appType: info.appType,
    sysType: info.sysType,
    destination: info.destination,
    designType: info.designType ?? null,
    eventType: info.eventType ?? null,
    createTime: m.createTime,
    seq: m.seq,
    from: m.from,
    to: m.to,
    isSender: m.isSender,
    content: m.content,
    msgSource: m.msgSource,
    text: m.text,
    fields: m.fields,
    recalledBy: null,
    recallTime: null,
  };
}
