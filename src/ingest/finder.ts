/**
 * The poller shared by the WeChat Channels private-letter providers (gewe, videosapi,
 * syncfinder): they wrap the same WeChat `bypsync` call, so only the request path, the auth
 * header, the account field and the success envelope differ (see the provider files).
 *
 * Request: `POST {baseUrl}{path}` with `{<accountField>: account, keyBuff}`; first `keyBuff` is
 * `""`, then exactly the `data.keyBuff` of the last page (opaque: never decoded or trimmed).
 * Response: `{…envelope, data: {list: [item…], keyBuff}}`; each item is handed on as the exact
 * bytes it had in the body.
 *
 * Polling: at once again while pages come back with items; after an empty page wait
 * `pollIntervalMs`, doubling while pages stay empty (up to 10×). Transient failures retry with
 * jittered backoff (Retry-After honoured) and the same keyBuff. An auth failure parks the
 * account (checked again every minute) without touching other sources. A malformed page is
 * dead-lettered with its bytes and retried; the cursor never moves past it. A keyBuff the
 * provider refuses 5 times in a row (`keyBuff 参数错误`, as after a re-login on its side) is
 * given up: the source starts again from `""`, and the sink drops what it already stored.
 */
import { createHash } from 'node:crypto';

import { AuthError, isProgrammerError, MsgpipeError, TransientError } from '../core/errors.ts';
import { decodeUtf8Lenient, isNullAt, parseLossless, scanArray, type Span, valueStart } from '../core/json.ts';
import { backoffMs, retry, type RetryPolicy } from '../core/retry.ts';
import type { DeadLetterRow, Origin, RawRecord } from '../core/types.ts';
import { finderAccount, type FinderSourceConfig } from './finder-config.ts';
import { postJson } from './http.ts';
import { newSourceStats, type Source, type SourceContext, type SourcePage, type SourceStats, waitBeforeRetry, waitBetweenPolls } from './source.ts';

/** What distinguishes one finder provider from another. */
export interface FinderProvider {
  readonly type: FinderSourceConfig['type'];
  /** Request path below `baseUrl`. */
  readonly path: string;
  /** Header carrying the token. */
  readonly authHeader: string;
  /** Body field naming the account. */
  readonly accountField: 'appId' | 'wId';
  /** Envelope field with the outcome (`ret` 200, `code` "1000"): a page without it is not this API's. */
  readonly statusField: 'ret' | 'code';
  /**
   * Checks the envelope of a parsed page.
   *
   * @throws {AuthError} when the provider refuses the token.
   * @throws {TransientError} for any other provider error (they are retried with backoff).
   */
  checkEnvelope(envelope: Readonly<Record<string, unknown>>): void;
}

/** Provider error texts that mean "this token or login is no longer valid". */
const AUTH_TEXT = /token|不可用|过期|失效|未登录|重新登录|授权|鉴权|unauthori[sz]ed|expired|forbidden/i;
/** A provider error that names the cursor (`keyBuff 参数错误`) and not the token. */
const CURSOR_TEXT = /keybuff/i;

/** The provider refused the keyBuff it was sent; retried, and after a few the source starts again from `""`. */
export class CursorRefusedError extends TransientError {
  constructor(details: Readonly<Record<string, string>>) {
    super('MSGPIPE_ERR_CURSOR_REFUSED', 'Provider refused the keyBuff.', { details });
  }
}

/** Turns a provider error envelope into the error the poller acts on. */
export function providerError(provider: string, code: string, message: string): AuthError | TransientError {
  const details = { provider, providerCode: code, providerMessage: message.slice(0, 200) };
  // "keyBuff expired" is about the cursor, not the login: checked before the auth words.
  if (CURSOR_TEXT.test(message) && !/token/i.test(message)) return new CursorRefusedError(details);
  if (AUTH_TEXT.test(message)) return new AuthError('Provider refused the account token.', { details });
  return new TransientError('MSGPIPE_ERR_PROVIDER', 'Provider answered with an error.', { details });
}

/** Stands in for the item list when the envelope is parsed. */
const EMPTY_LIST = Buffer.from('[]');

/** Backoff for transient failures: 0.5 s doubling to 60 s, forever (until stopped). */
const TRANSIENT_RETRY: RetryPolicy = { attempts: Infinity, minMs: 500, maxMs: 60_000, factor: 2 };
/** How often a parked account is tried again. */
const PARK_RETRY_MS = 60_000;
/** Longest wait after consecutive empty pages, as a multiple of pollIntervalMs. */
const MAX_IDLE_FACTOR = 10;
/**
 * Refusals of one stored keyBuff in a row after which the source starts again from `""`
 * (formats reference A11.4): about 8 s of backoff with the default policy. The provider then
 * sends what it still holds from the start, and the sink stores each message once.
 */
const CURSOR_REFUSALS_BEFORE_RESTART = 5;

class MalformedPageError extends TransientError {
  constructor(message: string, cause?: unknown) {
    super('MSGPIPE_ERR_PAGE_MALFORMED', message, cause === undefined ? {} : { cause });
  }
}

/** A page body that is not the provider's JSON: dead-lettered by the poll loop. */
class MalformedPage {
  readonly body: Buffer;
  readonly error: MalformedPageError;

  constructor(body: Buffer, error: MalformedPageError) {
    this.body = body;
    this.error = error;
  }
}

interface FetchedPage {
  readonly keyBuff: string;
  readonly records: RawRecord[];
}

/** Tuning knobs, mostly for tests. */
export interface FinderSourceOptions {
  /** Backoff of transient failures (default: 0.5 s doubling to 60 s, forever). */
  readonly retry?: RetryPolicy;
  /** How often a parked account is tried again (default 60 s). */
  readonly parkRetryMs?: number;
}

/** A running poller of one finder account. */
export class FinderSource implements Source {
  readonly name: string;
  readonly origin: Origin;
  readonly stats: SourceStats = newSourceStats();
  private readonly account: string;
  private readonly url: string;
  /** Hashes of malformed bodies already dead-lettered at the current cursor. */
  private readonly reportedMalformed = new Set<string>();
  private readonly provider: FinderProvider;
  private readonly config: FinderSourceConfig;
  private readonly retryPolicy: RetryPolicy;
  private readonly parkRetryMs: number;

  constructor(provider: FinderProvider, config: FinderSourceConfig, options: FinderSourceOptions = {}) {
    this.provider = provider;
    this.config = config;
    this.retryPolicy = options.retry ?? TRANSIENT_RETRY;
    this.parkRetryMs = options.parkRetryMs ?? PARK_RETRY_MS;
    this.name = config.name;
    this.account = finderAccount(config);
    this.origin = Object.freeze({
      source: config.name,
      sourceType: config.type,
      tenant: config.tenant,
      staffId: config.staffId ?? this.account,
    });
    this.url = new URL(provider.path.replace(/^\//, ''), config.baseUrl.endsWith('/') ? config.baseUrl : `${config.baseUrl}/`).toString();
  }

  async run(ctx: SourceContext): Promise<void> {
    const log = ctx.log.child({ component: 'ingest.poller', source: this.name, sourceType: this.provider.type });
    let cursor =
      (await retry(() => ctx.loadCursor(this.account), {
        policy: this.retryPolicy,
        signal: ctx.signal,
        onRetry: (err, attempt, waitMs) => { log.warn({ err, attempt, waitMs }, 'Loading the cursor failed; retrying.'); },
      })) ?? '';
    log.info({ resumed: cursor !== '' }, 'Source started.');
    let idle = 0;
    let malformedInARow = 0;
    let cursorRefusals = 0;
    // A function, not a property read: the signal changes under awaits, which narrowing ignores.
    const stopped = (): boolean => ctx.signal.aborted;
    while (!stopped()) {
      let page: FetchedPage | MalformedPage;
      try {
        // `cursor` is read at each attempt: a refused keyBuff may be given up between them.
        page = await retry(() => this.fetchPage(cursor, ctx), {
          policy: this.retryPolicy,
          signal: ctx.signal,
          onRetry: (err, attempt, waitMs) => {
            this.stats.errors++;
            log.warn({ err, attempt, waitMs }, 'Poll failed; retrying.');
            if (!(err instanceof CursorRefusedError) || cursor === '') return;
            if (++cursorRefusals < CURSOR_REFUSALS_BEFORE_RESTART) return;
            // The keyBuff's length and a hash, never its value (formats reference A11.5).
            const refused = { keyBuffLength: cursor.length, keyBuffSha1: createHash('sha1').update(cursor).digest('hex').slice(0, 12) };
            log.error({ err, refusals: cursorRefusals, ...refused }, 'The provider keeps refusing the stored keyBuff; starting again from "" (each message is still stored once).');
            cursor = '';
            cursorRefusals = 0;
          },
        });
      } catch (err) {
        if (stopped()) break;
        if (err instanceof AuthError) {
          this.stats.errors++;
          if (!this.stats.parked) log.error({ err }, 'Account parked: the provider refused its token.');
          this.stats.parked = true;
          await waitBeforeRetry(ctx, this.parkRetryMs);
          continue;
        }
        if (isProgrammerError(err) || !(err instanceof MsgpipeError)) throw err;
        // A permanent HTTP status: keep the account alive at the slowest pace.
        this.stats.errors++;
        log.error({ err }, 'Poll failed permanently; trying again later.');
        await waitBeforeRetry(ctx, this.parkRetryMs);
        continue;
      }
      if (page instanceof MalformedPage) {
        // Kept as a dead letter (outside the retry, so a sink failure stops the pipeline) and
        // asked for again with the same cursor after a backoff.
        this.stats.errors++;
        malformedInARow++;
        log.warn({ err: page.error, attempt: malformedInARow }, 'Malformed page; asking again.');
        await this.reportMalformed(ctx, cursor, page);
        await waitBeforeRetry(ctx, backoffMs(this.retryPolicy, malformedInARow));
        continue;
      }
      malformedInARow = 0;
      cursorRefusals = 0;
      if (this.stats.parked) log.info('Account unparked: the provider accepted its token again.');
      this.stats.parked = false;
      this.stats.lastSuccessAt = Date.now();
      this.stats.pages++;
      this.stats.records += page.records.length;
      const advanced = page.keyBuff !== cursor;
      if (page.records.length > 0 || advanced) {
        await ctx.emit(this.page(cursor, page.keyBuff, page.records, []));
        if (advanced) this.reportedMalformed.clear();
        cursor = page.keyBuff;
      }
      // Only a page that moved the keyBuff is progress. One that hands back items with the
      // keyBuff it was asked with would come back the same at once, forever: its items are
      // passed on (the sink stores each message once) and the next poll waits, as after an
      // empty page.
      if (page.records.length > 0 && advanced) {
        idle = 0;
        continue;
      }
      if (page.records.length > 0) log.warn({ records: page.records.length }, 'Page with items but an unchanged keyBuff; asking again after a wait.');
      else this.stats.emptyPolls++;
      idle = idle === 0 ? this.config.pollIntervalMs : Math.min(idle * 2, this.config.pollIntervalMs * MAX_IDLE_FACTOR);
      await waitBetweenPolls(ctx, idle);
    }
    log.info('Source stopped.');
  }

  private page(cursorBefore: string, cursorAfter: string, records: RawRecord[], deadLetters: DeadLetterRow[]): SourcePage {
    return { origin: this.origin, stream: this.account, cursorBefore, cursorAfter, records, deadLetters };
  }

  private async fetchPage(cursor: string, ctx: SourceContext): Promise<FetchedPage | MalformedPage> {
    this.stats.polls++;
    const res = await postJson(
      this.url,
      { [this.provider.authHeader]: this.config.token },
      { [this.provider.accountField]: this.account, keyBuff: cursor },
      { timeoutMs: this.config.requestTimeoutMs, signal: ctx.signal },
    );
    try {
      return this.parsePage(res.body, cursor);
    } catch (err) {
      if (err instanceof MalformedPageError) return new MalformedPage(res.body, err);
      throw err;
    }
  }

  /** Keeps a malformed body as a dead letter (once per distinct body at this cursor). */
  private async reportMalformed(ctx: SourceContext, cursor: string, page: MalformedPage): Promise<void> {
    const hash = createHash('sha1').update(page.body).digest('hex');
    if (this.reportedMalformed.has(hash)) return;
    const deadLetter: DeadLetterRow = {
      tenant: this.origin.tenant,
      source: this.origin.source,
      source_type: this.origin.sourceType,
      stage: 'ingest',
      error_code: page.error.code,
      error_message: page.error.message,
      original_base64: page.body.toString('base64'),
      origin_key: `${this.name}:${cursor}#page`,
      occurred_at: Date.now(),
    };
    await ctx.emit(this.page(cursor, cursor, [], [deadLetter]));
    // A body that changes on every answer (an error page with a request id) must not grow the set without end.
    if (this.reportedMalformed.size >= 10_000) this.reportedMalformed.clear();
    this.reportedMalformed.add(hash);
  }

  /**
   * Splits a page body into exact item records and the next keyBuff.
   *
   * The items are only sliced here, not parsed: the transform parses each one (a broken item
   * is its own dead letter). The envelope is parsed with the list cut out, so no item is parsed
   * twice.
   */
  parsePage(body: Buffer, cursor: string): FetchedPage {
    let envelope: unknown;
    let spans: Span[];
    let dataKey = 'data';
    try {
      // `Data` instead of `data` has been seen in the wild (formats reference, pitfall 24).
      if (valueStart(body, ['data']) === undefined && valueStart(body, ['Data']) !== undefined) dataKey = 'Data';
      // One pass over the page: find where the list starts, then split it into items.
      const listAt = valueStart(body, [dataKey, 'list']);
      const list = listAt === undefined ? undefined : scanArray(body, listAt);
      // `"list": {"0": …}` or a string: not a page we understand, and its items must not be
      // skipped as if the page were empty. `null` is an empty page.
      if (listAt !== undefined && list === undefined && !isNullAt(body, listAt)) {
        throw new MalformedPageError('Provider page data.list is not an array.');
      }
      spans = list?.items ?? [];
      const rest = listAt !== undefined && list ? Buffer.concat([body.subarray(0, listAt), EMPTY_LIST, body.subarray(list.end)]) : body;
      envelope = parseLossless(decodeUtf8Lenient(rest));
    } catch (err) {
      if (err instanceof MalformedPageError) throw err;
      throw new MalformedPageError('Provider page is not JSON.', err);
    }
    if (envelope === null || typeof envelope !== 'object' || Array.isArray(envelope)) {
      throw new MalformedPageError('Provider page is not a JSON object.');
    }
    const fields = envelope as Record<string, unknown>;
    // `{"error":"upstream timed out"}` from a gateway, or another provider's envelope (a wrong
    // baseUrl): kept as a dead letter for the operator to see, not retried as a provider error.
    const status = fields[this.provider.statusField];
    if (typeof status !== 'number' && typeof status !== 'string') {
      throw new MalformedPageError(`Provider page has no ${this.provider.statusField}: not the ${this.provider.type} envelope.`);
    }
    this.provider.checkEnvelope(fields);
    const data = fields[dataKey];
    if (data === null || typeof data !== 'object' || Array.isArray(data)) {
      throw new MalformedPageError('Provider page has no data object.');
    }
    const { keyBuff, list } = data as Record<string, unknown>;
    if (typeof keyBuff !== 'string') throw new MalformedPageError('Provider page has no data.keyBuff string.');
    if (list !== undefined && list !== null && !Array.isArray(list)) {
      throw new MalformedPageError('Provider page data.list is not an array.');
    }
    // The list the byte scan sliced was cut out before the parse, so the parsed envelope holds
    // items only when the scan missed them: an escaped key (`"li\u0073t"`) or a repeated
    // `data`. Taking such a page as empty would move the cursor past its items.
    if (Array.isArray(list) && list.length > 0) {
      throw new MalformedPageError('Provider page data.list could not be sliced from the page bytes (an escaped or repeated key).');
    }
    const fetchedAt = Date.now();
    const records = spans.map(
      (span, index): RawRecord => ({ origin: this.origin, bytes: body.subarray(span.start, span.end), fetchedAt, cursor, index }),
    );
    return { keyBuff, records };
  }
}
