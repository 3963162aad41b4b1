/**
 * One simulated provider account at run time: auth, paging, release over time, duplicates,
 * faults, injected poison, and the log of what the client sent.
 *
 * The HTTP layer (server.ts) only maps requests to {@link SimAccount.serve} and writes back the
 * {@link SimResponse}; everything a provider "decides" is decided here, synchronously, so the
 * rules are in one place:
 *
 *  - A page is a pure function of (cursor, released count, injections): asking again with the
 *    same keyBuff gives the same bytes. The returned keyBuff points after the page.
 *  - Faulty answers (5xx, 429, malformed bodies, wrong-types pages, expired tokens) never move a
 *    cursor: the wrong-types page hands back the keyBuff it was asked with, so a client that
 *    retries (or simply continues from what it got) loses nothing.
 *  - After a keyBuff reset the epoch changes; any older keyBuff restarts from the beginning,
 *    so everything is delivered again, as after a real provider re-login; or, with the
 *    `refuseStaleKeyBuff` fault, is refused with the provider's `keyBuff 参数错误` error, so
 *    the client must start again from `""` itself.
 */

import { Buffer } from 'node:buffer';

import { buildHostile } from './hostile.ts';
import type { HostileKind, PoisonItem } from './hostile.ts';
import { cursorKeys, decodeKeyBuff, encodeKeyBuff } from './keybuff.ts';
import type { CursorKeys, CursorPosition } from './keybuff.ts';
import { DEFAULT_MIX, KIND_INFO, SIM_KINDS } from './kinds.ts';
import type { Destination, SimKind } from './kinds.ts';
import type { SimulatorAccount, SimulatorFaults } from './options.ts';
import { accountId } from './options.ts';
import { Rng, hash3, hashString, mix32 } from './random.ts';
import { MessageStream } from './stream.ts';
import type { ExpectedMessage, SimProvider } from './stream.ts';
import { errorEnvelope, pageBody, PROVIDER_TEXTS, serializeItem, serializeWrongTypes } from './wire.ts';
import type { PagePart, WireStyle } from './wire.ts';

/** What happened to one request. */
export type RequestOutcome =
  | 'page'
  | 'caught_up'
  | 'error'
  | 'rate_limited'
  | 'malformed'
  | 'wrong_types'
  | 'auth_missing'
  | 'auth_refused'
  | 'bad_keybuff';

/** One request as the simulator saw it: `received()` lists them in arrival order. */
export interface ReceivedRequest {
  /** Arrival order within the account, from 0 (keeps counting when old entries are dropped). */
  readonly sequence: number;
  /** Arrival time, unix ms. */
  readonly at: number;
  /** The keyBuff the client sent; null when the body had none. */
  readonly keyBuff: string | null;
  readonly outcome: RequestOutcome;
  /** Items in the answer (0 unless a page was sent). */
  readonly items: number;
  /** Items in the answer that were re-sent duplicates of earlier messages. */
  readonly duplicates: number;
  /** The keyBuff the answer carried, or null when it carried none. */
  readonly returnedKeyBuff: string | null;
  /** True when the keyBuff was from before a reset, so the page restarted from the beginning. */
  readonly restarted: boolean;
  /** The bytes of a malformed answer, so a test can check what the client kept of it. */
  readonly body?: Buffer;
}

/** Counts describing an account's ground truth and traffic. */
export interface AccountSummary {
  readonly id: string;
  readonly provider: SimProvider;
  readonly login: string;
  /** Messages in the whole stream. */
  readonly messages: number;
  /** Messages released so far (what expected() would list). */
  readonly released: number;
  readonly byKind: Readonly<Record<SimKind, number>>;
  /** Released messages by where msgpipe should store them. */
  readonly byDestination: Readonly<Record<Destination, number>>;
  readonly poison: number;
  /** Requests received so far. */
  readonly requests: number;
  /** Bumped by every keyBuff reset. */
  readonly epoch: number;
}

/** An answer to write back. */
export interface SimResponse {
  readonly status: number;
  readonly contentType: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** Wait this long before answering (latency knobs). */
  readonly delayMs: number;
}

/** Fault knobs with every value resolved. */
export interface EffectiveFaults {
  readonly errorRate: number;
  readonly rateLimitRate: number;
  readonly retryAfterSec: number;
  readonly latencyMs: number;
  readonly latencyJitterMs: number;
  readonly malformedRate: number;
  readonly wrongTypesRate: number;
  readonly tokenExpiresAfter: number | null;
  readonly refuseStaleKeyBuff: boolean;
}

const NO_FAULTS: EffectiveFaults = {
  errorRate: 0,
  rateLimitRate: 0,
  retryAfterSec: 1,
  latencyMs: 0,
  latencyJitterMs: 0,
  malformedRate: 0,
  wrongTypesRate: 0,
  tokenExpiresAfter: null,
  refuseStaleKeyBuff: false,
};

/** Resolves fault patches, later ones winning; absent keys inherit. */
export function resolveFaults(...patches: readonly (SimulatorFaults | undefined)[]): EffectiveFaults {
  const out: Record<string, number | boolean | null> = { ...NO_FAULTS };
  for (const p of patches) {
    if (p === undefined) continue;
    for (const [k, v] of Object.entries(p)) if (v !== undefined) out[k] = v;
  }
  return out as unknown as EffectiveFaults;
}

const JSON_TYPE = 'application/json; charset=utf-8';
const SALT_DUP = 21;
const SALT_DUP_AT = 22;
const SALT_PAGE = 23;

const NGINX_502 =
  '<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n';

interface Injection {
  readonly poison: PoisonItem;
  readonly part: () => PagePart;
}

/** A built page before faults are applied. */
interface Page {
  readonly parts: PagePart[];
  /** Positions in `parts` that hold generated (not injected) messages, with their stream index. */
  readonly generated: { at: number; index: number }[];
  readonly duplicates: number;
  readonly next: CursorPosition;
}

export class SimAccount {
  readonly id: string;
  readonly provider: SimProvider;
  /** appId (gewe, videosapi) or wId (syncfinder). */
  readonly login: string;
  readonly stream: MessageStream;
  private readonly config: SimulatorAccount;
  private readonly keys: CursorKeys;
  private readonly style: WireStyle;
  private readonly seed: number;
  private readonly dice: Rng;
  private readonly maxRecorded: number;
  private readonly startedAt: number;
  private token: string;
  private acceptedSinceRenew = 0;
  private epoch = 0;
  private manualRelease = 0;
  private faultPatch: SimulatorFaults | undefined;
  private globalFaults: SimulatorFaults | undefined;
  private readonly injections: Injection[] = [];
  private readonly log: ReceivedRequest[] = [];
  private requestCount = 0;
  private countedUpTo = 0;
  /** Item bytes serialized ahead by {@link SimAccount.prerender}, by stream index. */
  private rendered: Uint8Array[] = [];
  private readonly kindCounts = Object.fromEntries(SIM_KINDS.map((k) => [k, 0])) as Record<SimKind, number>;

  constructor(config: SimulatorAccount, options: { faultSeed: number; maxRecorded: number; now: number }) {
    this.config = config;
    this.id = accountId(config);
    this.provider = config.provider;
    this.login = config.provider === 'syncfinder' ? config.wId : config.appId;
    this.token = config.token;
    this.seed =
      config.seed === undefined ? hashString(this.id) : typeof config.seed === 'string' ? hashString(config.seed) : mix32(config.seed);
    this.stream = new MessageStream({
      provider: config.provider,
      seed: this.seed,
      messages: config.messages,
      sessions: config.sessions,
      startTime: config.startTime,
      secondsPerMessage: config.secondsPerMessage,
      mix: { ...DEFAULT_MIX, ...config.mix },
    });
    this.keys = cursorKeys(this.seed);
    this.style = { provider: config.provider, booleanIsSender: config.booleanIsSender };
    this.dice = new Rng(mix32(options.faultSeed) ^ this.seed);
    this.maxRecorded = options.maxRecorded;
    this.startedAt = options.now;
    this.faultPatch = config.faults;
  }

  /** The token the account currently accepts. */
  get currentToken(): string {
    return this.token;
  }

  /** This account's own fault patch (without the global one). */
  get faults(): SimulatorFaults | undefined {
    return this.faultPatch;
  }

  /** Merges `patch` into the account's faults (undefined clears them all). */
  setFaults(patch: SimulatorFaults | undefined): void {
    this.faultPatch = patch === undefined ? undefined : { ...this.faultPatch, ...patch };
    if (patch?.tokenExpiresAfter !== undefined) this.acceptedSinceRenew = 0;
  }

  /** Called when the global tokenExpiresAfter changes: the count starts again. */
  restartTokenClock(): void {
    this.acceptedSinceRenew = 0;
  }

  /** Accepts the token again (optionally a new one) and restarts the expiry count. */
  renewToken(token?: string): void {
    if (token !== undefined) this.token = token;
    this.acceptedSinceRenew = 0;
  }

  /** Forgets every cursor: older keyBuffs restart from the beginning. */
  resetKeyBuff(): void {
    this.epoch += 1;
  }

  /** Messages released so far (all of them unless ratePerSec is set). */
  released(now: number): number {
    const { messages, ratePerSec } = this.config;
    if (ratePerSec === undefined) return messages;
    const timed = Math.floor(((now - this.startedAt) / 1000) * ratePerSec);
    return Math.min(messages, (this.config.backlog ?? 0) + this.manualRelease + Math.max(0, timed));
  }

  /** Releases `count` more messages now (live-traffic accounts); returns the released total. */
  release(count: number, now: number): number {
    this.manualRelease += Math.max(0, Math.floor(count));
    return this.released(now);
  }

  /** The unique upstream messages released so far, revoked ones marked; poison excluded. */
  expected(now: number): ExpectedMessage[] {
    return this.stream.expected(this.released(now));
  }

  poison(): PoisonItem[] {
    return this.injections.map((i) => i.poison);
  }

  received(): ReceivedRequest[] {
    return [...this.log];
  }

  /** The latest request, without copying the log. */
  lastReceived(): ReceivedRequest | undefined {
    return this.log.at(-1);
  }

  /**
   * Counts of the ground truth without building it: kinds only, counted once per index and
   * extended as messages are released, so polling it during a million-message run is cheap.
   */
  summary(now: number): AccountSummary {
    const released = this.released(now);
    for (; this.countedUpTo < released; this.countedUpTo++) {
      const kind = this.stream.kindAt(this.countedUpTo);
      this.kindCounts[kind] += 1;
    }
    const byDestination: Record<Destination, number> = { messages: 0, events: 0, none: 0 };
    for (const k of SIM_KINDS) byDestination[KIND_INFO[k].destination] += this.kindCounts[k];
    return {
      id: this.id,
      provider: this.provider,
      login: this.login,
      messages: this.stream.length,
      released,
      byKind: { ...this.kindCounts },
      byDestination,
      poison: this.injections.length,
      requests: this.requestCount,
      epoch: this.epoch,
    };
  }

  /** Queues a hostile item: it is delivered after the messages released so far. */
  inject(kind: HostileKind, now: number): PoisonItem {
    const anchor = this.released(now);
    const sessions = this.stream.identity.sessions;
    const sequence = this.injections.length;
    const session = sessions[sequence % sessions.length] ?? sessions[0];
    if (session === undefined) throw new RangeError('account has no sessions');
    const createTime = anchor > 0 ? this.stream.createTimeAt(anchor - 1) + 1 : this.config.startTime;
    const built = buildHostile(kind, sequence, anchor, { seed: this.seed, session, createTime, style: this.style });
    this.injections.push(built);
    return built.poison;
  }

  private record(entry: Omit<ReceivedRequest, 'sequence'>): void {
    const sequence = this.requestCount++;
    if (this.maxRecorded === 0) return;
    this.log.push({ sequence, ...entry });
    // Trim in bulk so a long benchmark does not pay an O(n) shift per request.
    if (this.log.length > this.maxRecorded + Math.ceil(this.maxRecorded / 10)) {
      this.log.splice(0, this.log.length - this.maxRecorded);
    }
  }

  /**
   * Serializes every message of the stream now, so pages are later assembled from ready bytes.
   * For benchmarks: the upstream's cost of making its traffic then stays out of the timed run,
   * as it would with a real provider on another machine. Pages are byte for byte the same.
   */
  prerender(): void {
    const rendered: Uint8Array[] = [];
    for (let g = 0; g < this.stream.length; g++) rendered.push(Buffer.from(serializeItem(this.stream.messageAt(g), this.style), 'utf8'));
    this.rendered = rendered;
  }

  private item(g: number): PagePart {
    return this.rendered[g] ?? serializeItem(this.stream.messageAt(g), this.style);
  }

  /** Builds the page that starts at `pos`. */
  private page(pos: CursorPosition, now: number): Page {
    const available = this.released(now);
    const { pageSize, pageSizeVariation, duplicateRate } = this.config;
    let g = pos.generated;
    let k = Math.min(pos.injected, this.injections.length);
    const spread = Math.floor(pageSize * pageSizeVariation);
    const size = spread > 0 ? pageSize - (hash3(this.seed, g, SALT_PAGE) % (spread + 1)) : pageSize;
    const parts: PagePart[] = [];
    const generated: { at: number; index: number }[] = [];
    let duplicates = 0;
    while (parts.length < size) {
      const inj = this.injections[k];
      if (inj !== undefined && inj.poison.anchor <= g) {
        parts.push(inj.part());
        k++;
        continue;
      }
      if (g >= available) break;
      // A re-send goes before its message only when both fit: a page never exceeds its size.
      if (duplicateRate > 0 && g > 0 && parts.length + 2 <= size && hash3(this.seed, g, SALT_DUP) / 4294967296 < duplicateRate) {
        // A re-send of an earlier message: same NewMsgId, same bytes, possibly pages back.
        const back = 1 + (hash3(this.seed, g, SALT_DUP_AT) % Math.min(g, 3 * pageSize));
        parts.push(this.item(g - back));
        duplicates++;
      }
      generated.push({ at: parts.length, index: g });
      parts.push(this.item(g));
      g++;
    }
    return { parts, generated, duplicates, next: { generated: g, injected: k, epoch: pos.epoch } };
  }

  private envelope(status: number, body: string, delayMs: number, headers: Record<string, string> = {}): SimResponse {
    return { status, contentType: JSON_TYPE, headers, body: Buffer.from(body, 'utf8'), delayMs };
  }

  /**
   * Answers one sync request.
   *
   * @param token the auth header value, undefined when absent
   * @param keyBuff the body's keyBuff, undefined when absent (treated like ""); a value that is
   *   not a string is refused as a bad keyBuff, and recorded as its JSON text
   * @param now the arrival time, unix ms
   */
  serve(token: string | undefined, keyBuff: unknown, now: number): SimResponse {
    const faults = this.effectiveFaults();
    const texts = PROVIDER_TEXTS[this.provider];
    const sent = keyBuff === undefined ? null : typeof keyBuff === 'string' ? keyBuff : JSON.stringify(keyBuff);
    const base = { at: now, keyBuff: sent, items: 0, duplicates: 0, returnedKeyBuff: null, restarted: false };

    if (token === undefined || token === '') {
      this.record({ ...base, outcome: 'auth_missing' });
      return this.envelope(200, errorEnvelope(this.provider, texts.missingToken), 0);
    }
    const expired = faults.tokenExpiresAfter !== null && this.acceptedSinceRenew >= faults.tokenExpiresAfter;
    if (token !== this.token || expired) {
      this.record({ ...base, outcome: 'auth_refused' });
      return this.envelope(200, errorEnvelope(this.provider, texts.invalidToken), 0);
    }
    this.acceptedSinceRenew++;

    // A fixed number of draws per request, so one knob's value never shifts another's dice.
    const dLatency = this.dice.float();
    const dRate = this.dice.float();
    const dError = this.dice.float();
    const dMalformed = this.dice.float();
    const dWrong = this.dice.float();
    const dVariant = this.dice.float();
    const delayMs = faults.latencyMs + Math.floor(dLatency * (faults.latencyJitterMs + 1));

    if (dRate < faults.rateLimitRate) {
      this.record({ ...base, outcome: 'rate_limited' });
      const body =
        this.provider === 'syncfinder'
          ? '{"code":"1001","message":"请求过于频繁，请稍后再试","data":null}'
          : '{"ret":429,"msg":"请求过于频繁，请稍后再试","data":null}';
      return this.envelope(429, body, delayMs, { 'retry-after': String(faults.retryAfterSec) });
    }
    if (dError < faults.errorRate) {
      this.record({ ...base, outcome: 'error' });
      return this.transientError(dVariant, delayMs);
    }

    if (keyBuff !== undefined && typeof keyBuff !== 'string') {
      this.record({ ...base, outcome: 'bad_keybuff' });
      return this.envelope(200, errorEnvelope(this.provider, 'keyBuff 参数错误'), delayMs);
    }
    let pos: CursorPosition = { generated: 0, injected: 0, epoch: this.epoch };
    let restarted = false;
    if (keyBuff !== undefined && keyBuff !== '') {
      const decoded = decodeKeyBuff(this.keys, keyBuff);
      if (decoded === undefined) {
        this.record({ ...base, outcome: 'bad_keybuff' });
        return this.envelope(200, errorEnvelope(this.provider, 'keyBuff 参数错误'), delayMs);
      }
      if (decoded.epoch === this.epoch) pos = decoded;
      else if (faults.refuseStaleKeyBuff) {
        this.record({ ...base, outcome: 'bad_keybuff' });
        return this.envelope(200, errorEnvelope(this.provider, 'keyBuff 参数错误'), delayMs);
      } else restarted = true;
    }
    const page = this.page(pos, now);
    const here = encodeKeyBuff(this.keys, pos);

    if (dMalformed < faults.malformedRate) {
      if (dVariant < 0.5) {
        const html = Buffer.from(NGINX_502, 'utf8');
        this.record({ ...base, outcome: 'malformed', restarted, body: html });
        return { status: 200, contentType: 'text/html', headers: {}, body: html, delayMs };
      }
      const full = pageBody(this.provider, page.parts, encodeKeyBuff(this.keys, page.next));
      const cut = Math.max(1, Math.floor(full.length * (0.2 + 0.7 * ((dVariant - 0.5) * 2))));
      const body = full.subarray(0, Math.min(cut, full.length - 1));
      this.record({ ...base, outcome: 'malformed', restarted, body });
      return { status: 200, contentType: JSON_TYPE, headers: {}, body, delayMs };
    }
    if (dWrong < faults.wrongTypesRate && page.generated.length > 0) {
      const victim = page.generated[Math.floor(dVariant * page.generated.length)] ?? page.generated[0];
      if (victim !== undefined) {
        page.parts[victim.at] = serializeWrongTypes(this.stream.messageAt(victim.index), this.style);
      }
      // Not advanced: the client comes back with the same position and gets the real item.
      this.record({ ...base, outcome: 'wrong_types', items: page.parts.length, duplicates: page.duplicates, returnedKeyBuff: here, restarted });
      return { status: 200, contentType: JSON_TYPE, headers: {}, body: pageBody(this.provider, page.parts, here), delayMs };
    }

    const caughtUp = page.parts.length === 0;
    // Caught up: an empty list and the very keyBuff that was sent.
    const next = caughtUp && keyBuff !== undefined && keyBuff !== '' && !restarted ? keyBuff : encodeKeyBuff(this.keys, page.next);
    this.record({
      ...base,
      outcome: caughtUp ? 'caught_up' : 'page',
      items: page.parts.length,
      duplicates: page.duplicates,
      returnedKeyBuff: next,
      restarted,
    });
    return { status: 200, contentType: JSON_TYPE, headers: {}, body: pageBody(this.provider, page.parts, next), delayMs };
  }

  private transientError(dVariant: number, delayMs: number): SimResponse {
    if (dVariant < 0.3) return { status: 502, contentType: 'text/html', headers: {}, body: Buffer.from(NGINX_502, 'utf8'), delayMs };
    if (dVariant < 0.45) {
      return { status: 503, contentType: 'text/plain', headers: {}, body: Buffer.from('Service Unavailable', 'utf8'), delayMs };
    }
    if (this.provider === 'syncfinder') {
      // wkteam names the message key "message" or "msg" depending on the endpoint.
      const body = dVariant < 0.75 ? '{"code":"1001","message":"失败","data":null}' : '{"code":"1001","msg":"失败","data":null}';
      return this.envelope(200, body, delayMs);
    }
    const body =
      dVariant < 0.75
        ? errorEnvelope(this.provider, '同步私信消息失败', { code: '-1', msg: 'exceeded maximum retries' })
        : errorEnvelope(this.provider, '操作失败');
    return this.envelope(dVariant < 0.6 ? 500 : 200, body, delayMs);
  }

  /** Sets the global patch this account inherits from. */
  inheritFaults(global: SimulatorFaults | undefined): void {
    this.globalFaults = global;
  }

  /** The faults in force: defaults, then global, then the account's own. */
  effectiveFaults(): EffectiveFaults {
    return resolveFaults(this.globalFaults, this.faultPatch);
  }
}
