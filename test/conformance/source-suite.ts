/**
 * The source conformance suite (docs/component-spec.md §Source): every source type runs it
 * against its simulator over real HTTP.
 *
 * The suite plays the pipeline: it gives the source a {@link SourceContext} whose `emit`
 * collects pages and "stores" each page's `cursorAfter` at once (an in-memory cursor table, one
 * cursor per stream), and checks what the source emitted against the simulator's ground truth
 * and its request log.
 *
 * What differs between source types comes through a {@link SourceHarness}: how to start the
 * simulator with accounts and faults, build the source, name the ground truth per stream, read
 * the simulator's request log in the suite's terms, and frame items as the provider's answers
 * hold them. The cases themselves are shared. The Kafka mode can run the same suite with a
 * harness whose sources hand pages on through topics; the suite only needs a {@link Source}.
 */
import { Writable } from 'node:stream';

import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { RetryPolicy } from '../../src/core/retry.ts';
import type { Source, SourceContext, SourcePage } from '../../src/ingest/source.ts';

/** Per-test tuning, so retries, parking and idling fit in a fast test. */
export interface SourceTuning {
  /** Backoff of transient failures. */
  readonly retry: RetryPolicy;
  /** How often a parked account is tried again, ms. */
  readonly parkRetryMs: number;
  /** Wait after an empty page, ms. */
  readonly pollIntervalMs: number;
}

/** What a harness is given to build one source. */
export interface SourceBuildInput {
  /** A unique source name (letters, digits, `-`). */
  readonly name: string;
  readonly tenant: string;
  readonly tuning: SourceTuning;
}

/** Faults a case asks for, in contract terms; each harness maps them onto its simulator's knobs. */
export interface CaseFaults {
  /** A good share of answers are 5xx or 429 (with `Retry-After: 0`). */
  readonly transient?: boolean;
  /** The token is refused from the request after the account's first page on, until renewed. */
  readonly tokenExpiresAfterFirstPage?: boolean;
  /** Every read is answered this late, ms. */
  readonly latencyMs?: number;
}

/** A simulated account a case needs: a few pages of items per stream. */
export interface CaseAccount {
  readonly id: string;
  readonly faults?: CaseFaults;
}

/** What a simulator answered, as far as the suite cares. */
export type SimOutcome = 'page' | 'caught_up' | 'error' | 'rate_limited' | 'malformed' | 'auth_refused' | 'other';

/** One request a simulated account received, in the suite's terms, oldest first. */
export interface SimRequest {
  /** Arrival (or answer) time, unix ms. */
  readonly at: number;
  /**
   * `read`: asks for what follows `cursor` in `stream`. `reread`: asks again for items before the
   * highest position the stream was already served (Yunhu's re-read window, on purpose).
   * `other`: no page read (a conversation list, an edit history); `stream` names what it was.
   */
  readonly kind: 'read' | 'reread' | 'other';
  readonly stream: string;
  /** The cursor sent; null when the request carried none. */
  readonly cursor: string | null;
  readonly outcome: SimOutcome;
  /** Items in the answer (0 unless a page was sent). */
  readonly items: number;
  /** Items in the answer that re-sent earlier ones. */
  readonly duplicates: number;
  /** The cursor the answer leads to (page or caught up), else null. */
  readonly cursorAfter: string | null;
  /** True when the simulator restarted the stream from its beginning (a cursor from before a reset). */
  readonly restarted: boolean;
  /** The body the simulator sent, when it keeps it. */
  readonly body?: Uint8Array | undefined;
}

/** Checks a harness may declare not applicable to its source type, each with a one-line reason. */
export type OptionalCheck = 'resentDuplicates';

const CHECK_TITLES: Record<OptionalCheck, string> = {
  resentDuplicates: 'items the provider re-sends are records too',
};

/**
 * The provider-specific half of the suite. `Sim` is the harness's simulator handle. A harness
 * that holds resources besides the simulator (Kafka clients …) registers their cleanup itself,
 * e.g. with vitest's `onTestFinished`.
 */
export interface SourceHarness<Sim> {
  /** The cursor a stream starts from when none is stored (what the first page's `cursorBefore` is). */
  readonly initialCursor: string;
  /** Checks that do not apply to this source type, with why; the case titles say so. */
  readonly notApplicable?: Partial<Record<OptionalCheck, string>>;
  /** Starts one simulator serving these accounts over HTTP. */
  start(accounts: readonly CaseAccount[]): Promise<Sim>;
  close(sim: Sim): Promise<void>;
  /** Builds the source under test for the simulated account `id`. */
  build(sim: Sim, id: string, input: SourceBuildInput): Source | Promise<Source>;
  /** The ground truth: stream → the ids of its unique items, in stream order. */
  expected(sim: Sim, id: string): Map<string, string[]>;
  /** The id of the item a record holds; undefined for records that are no item (e.g. an edit history entry). */
  itemId(bytes: Uint8Array): string | undefined;
  /** The `cursor` every record of the page must carry. */
  recordCursor(page: SourcePage): string;
  /** Every request the account received, in the suite's terms. */
  requests(sim: Sim, id: string): SimRequest[];
  /** How many requests reached the account, including ones not answered yet. */
  arrivals(sim: Sim, id: string): number;
  /** The body of a page the simulator serves (or served) for `stream` at `cursor`. */
  pageBody(sim: Sim, id: string, stream: string, cursor: string): Promise<Uint8Array>;
  /** The bytes a page's body holds for exactly these items, in this order. */
  frame(items: readonly Uint8Array[]): Uint8Array;
  /** True when `bytes` is the whole body of the malformed answer `request` got. */
  isWholeBody(sim: Sim, id: string, request: SimRequest, bytes: Uint8Array): Promise<boolean>;
  /** Makes every answer malformed (`true`) or heals the account (`false`). */
  setMalformed(sim: Sim, id: string, on: boolean): void;
  /** Accepts the account's token again and lifts its faults. */
  renewToken(sim: Sim, id: string): void;
}

const TENANT = 'corp-conformance';
const WAIT = { timeout: 10_000, interval: 20 } as const;
const FAST: SourceTuning = {
  retry: { attempts: Infinity, minMs: 5, maxMs: 40, factor: 2 },
  parkRetryMs: 150,
  pollIntervalMs: 50,
};

function recordsOf(pages: readonly SourcePage[]): Uint8Array[] {
  return pages.flatMap((p) => p.records.map((r) => r.bytes));
}

/** One source run driven by the suite. */
interface Run {
  readonly pages: SourcePage[];
  /** Stream → the last stored cursor: what `loadCursor` answers. */
  readonly cursors: Map<string, string>;
  readonly loads: string[];
  readonly done: Promise<void>;
  readonly signal: AbortSignal;
  /** Aborts and waits for `run` to return; resolves with how long that took, ms. */
  stop(): Promise<number>;
}

interface RunOptions {
  readonly cursors?: Map<string, string>;
  readonly log?: Logger;
  /** Called inside `emit`, after the page is collected and its cursor stored. */
  readonly onEmit?: (page: SourcePage, run: Run) => void | Promise<void>;
}

function startRun(source: Source, options: RunOptions = {}): Run {
  const controller = new AbortController();
  const pages: SourcePage[] = [];
  const cursors = options.cursors ?? new Map<string, string>();
  const loads: string[] = [];
  let settled = false;
  const ctx: SourceContext = {
    signal: controller.signal,
    log: options.log ?? pino({ level: 'silent' }),
    loadCursor: (stream) => {
      loads.push(stream);
      return Promise.resolve(cursors.get(stream));
    },
    emit: async (page) => {
      pages.push(page);
      cursors.set(page.stream, page.cursorAfter);
      await options.onEmit?.(page, run);
    },
    // Nobody asks for an immediate poll in these tests; settle when stopped.
    wakeup: (signal) =>
      new Promise<void>((resolve) => {
        signal.addEventListener('abort', () => { resolve(); }, { once: true });
      }),
  };
  const done = source.run(ctx).finally(() => {
    settled = true;
  });
  // Surface a failure of run() in the test that awaits it, not as an unhandled rejection.
  done.catch(() => undefined);
  const run: Run = {
    pages,
    cursors,
    loads,
    done,
    signal: controller.signal,
    stop: async () => {
      const started = performance.now();
      controller.abort();
      await done;
      return settled ? performance.now() - started : Infinity;
    },
  };
  return run;
}

/** Captures a pino logger's lines. */
function captureLog(): { log: Logger; lines: { level: number; msg?: string }[] } {
  const lines: { level: number; msg?: string }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as { level: number });
      callback();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines };
}

/** Same request target: a retry of `a` asks for the same stream at the same cursor. */
function sameTarget(a: SimRequest | undefined, b: SimRequest): boolean {
  return a?.kind === b.kind && a.stream === b.stream && a.cursor === b.cursor;
}

/**
 * Runs the source contract cases for one source type.
 *
 * @param name the suite's name (the source type)
 * @param harness the provider-specific half: simulator, source, ground truth, request log
 */
export function sourceConformance<Sim>(name: string, harness: SourceHarness<Sim>): void {
  let sims: Sim[] = [];
  let sourceNumber = 0;

  afterEach(async () => {
    await Promise.all(sims.map((s) => harness.close(s)));
    sims = [];
  });

  async function simulator(...accounts: CaseAccount[]): Promise<Sim> {
    const sim = await harness.start(accounts);
    sims.push(sim);
    return sim;
  }

  async function build(sim: Sim, id: string, tuning: Partial<SourceTuning> = {}): Promise<Source> {
    sourceNumber += 1;
    return harness.build(sim, id, { name: `conf-${name}-${sourceNumber}`, tenant: TENANT, tuning: { ...FAST, ...tuning } });
  }

  /** Distinct item ids per stream, in order of first appearance (providers may re-send items). */
  function firstOccurrences(pages: readonly SourcePage[]): Map<string, string[]> {
    const seen = new Set<string>();
    const out = new Map<string, string[]>();
    for (const page of pages) {
      for (const r of page.records) {
        const id = harness.itemId(r.bytes);
        if (id === undefined || seen.has(`${page.stream}\n${id}`)) continue;
        seen.add(`${page.stream}\n${id}`);
        const ids = out.get(page.stream) ?? [];
        ids.push(id);
        out.set(page.stream, ids);
      }
    }
    return out;
  }

  /** Page reads (not re-reads) the simulator answered with items, from request `since` on. */
  function servedPages(sim: Sim, id: string, since = 0): SimRequest[] {
    return harness.requests(sim, id).slice(since).filter((r) => r.kind === 'read' && r.outcome === 'page');
  }

  /** True once every stream of the account answered "caught up" to a read numbered `since` or later. */
  function caughtUp(sim: Sim, id: string, since = 0): boolean {
    const done = new Set(harness.requests(sim, id).slice(since).filter((r) => r.kind === 'read' && r.outcome === 'caught_up').map((r) => r.stream));
    return [...harness.expected(sim, id).keys()].every((stream) => done.has(stream));
  }

  const skipped = (check: OptionalCheck): string | undefined => harness.notApplicable?.[check];
  /** The end of a case title: the checks of the case this source type declared not applicable, and why. */
  function notApplicable(checks: readonly OptionalCheck[]): string {
    const notes = checks.flatMap((c) => {
      const reason = skipped(c);
      return reason === undefined ? [] : [`not applicable: ${CHECK_TITLES[c]}, because ${reason}`];
    });
    return notes.length === 0 ? '' : ` (${notes.join('; ')})`;
  }

  describe(`source conformance: ${name}`, () => {
    it('delivers every item exactly, in order, from an empty cursor' + notApplicable(['resentDuplicates']), async () => {
      const sim = await simulator({ id: 'a1' });
      const source = await build(sim, 'a1');
      const run = startRun(source);
      await vi.waitFor(() => {
        expect(caughtUp(sim, 'a1')).toBe(true);
        // The simulator sent "caught up"; on a loaded machine the source may not have read it yet.
        expect(source.stats.emptyPolls).toBeGreaterThanOrEqual(1);
      }, WAIT);
      await run.stop();
      // Read the log before the exactness check below may ask for pages again.
      const served = servedPages(sim, 'a1');
      const servedTotal = served.reduce((n, r) => n + r.items, 0);
      const resent = served.reduce((n, r) => n + r.duplicates, 0);
      const expected = harness.expected(sim, 'a1');
      const expectedTotal = [...expected.values()].reduce((n, ids) => n + ids.length, 0);

      const pages = run.pages;
      // Every unique item, once each in first appearance, in stream order; nothing else.
      expect(firstOccurrences(pages)).toEqual(expected);
      // Every item the provider sent is a record (re-sent duplicates too: dropping them is the sink's job) …
      expect(recordsOf(pages)).toHaveLength(servedTotal);
      // … and the provider sent each unique item once, plus the duplicates it re-sent.
      expect(servedTotal).toBe(expectedTotal + resent);
      if (skipped('resentDuplicates') === undefined) expect(resent).toBeGreaterThan(0);
      expect(run.loads.length).toBeGreaterThanOrEqual(1);

      // Pages chain per stream: the first starts from the provider's initial cursor, each from the last one's end.
      const last = new Map<string, string>();
      for (const page of pages) {
        expect(page.cursorBefore).toBe(last.get(page.stream) ?? harness.initialCursor);
        last.set(page.stream, page.cursorAfter);
      }
      // The cursor is the provider's: exactly the position each answer led to, sent back as is.
      expect(pages.filter((p) => p.records.length > 0).map((p) => [p.stream, p.cursorBefore, p.cursorAfter, p.records.length])).toEqual(
        served.map((r) => [r.stream, r.cursor, r.cursorAfter, r.items]),
      );

      for (const page of pages) {
        expect(page.deadLetters).toEqual([]);
        expect(page.records.map((r) => r.index)).toEqual(page.records.map((_r, i) => i));
        for (const r of page.records) {
          expect(r.cursor).toBe(harness.recordCursor(page));
          expect(r.origin).toEqual(source.origin);
        }
        expect(source.origin.tenant).toBe(TENANT);
        if (page.records.length === 0) continue;
        // Exact bytes: the page's records, framed as the provider frames items, are the very list it sent.
        const body = Buffer.from(await harness.pageBody(sim, 'a1', page.stream, page.cursorBefore));
        expect(body.includes(Buffer.from(harness.frame(page.records.map((r) => r.bytes))))).toBe(true);
      }

      expect(source.stats.records).toBe(servedTotal);
      expect(source.stats.pages).toBeGreaterThanOrEqual(served.length);
      expect(source.stats.polls).toBeGreaterThanOrEqual(served.length + 1);
      expect(source.stats.emptyPolls).toBeGreaterThanOrEqual(1);
      expect(source.stats.parked).toBe(false);
      expect(source.stats.lastSuccessAt).toBeTypeOf('number');
    });

    it('resumes from the stored cursors and loses nothing across the restart', async () => {
      const sim = await simulator({ id: 'r1' });
      // First run: stopped while its second page is being emitted.
      const first = startRun(await build(sim, 'r1'), {
        onEmit: (_page, run) => {
          if (run.pages.filter((p) => p.records.length > 0).length === 2) void run.stop();
        },
      });
      await first.done;
      const stored = new Map(first.cursors);
      expect(stored.size).toBeGreaterThanOrEqual(1);
      for (const cursor of stored.values()) expect(cursor).not.toBe(harness.initialCursor);
      const requestsBefore = harness.requests(sim, 'r1').length;

      // Second run: a new instance that only knows the stored cursors.
      const second = startRun(await build(sim, 'r1'), { cursors: new Map(stored) });
      await vi.waitFor(() => {
        expect(caughtUp(sim, 'r1', requestsBefore)).toBe(true);
      }, WAIT);
      await second.stop();

      const streams = [...harness.expected(sim, 'r1').keys()];
      // Each stream's cursor is loaded once, and only the account's streams are asked for.
      expect([...second.loads].sort()).toEqual([...streams].sort());
      expect(first.loads[0]).toBe(first.pages[0]?.stream);
      const after = harness.requests(sim, 'r1').slice(requestsBefore);
      for (const [stream, cursor] of stored) {
        // The stream is read on from its stored cursor …
        expect(after.find((r) => r.kind === 'read' && r.stream === stream)?.cursor).toBe(cursor);
        expect(second.pages.find((p) => p.stream === stream)?.cursorBefore).toBe(cursor);
        // … and nothing before it is fetched again.
        expect(after.some((r) => r.kind === 'read' && r.stream === stream && (r.cursor === harness.initialCursor || r.restarted))).toBe(false);
      }
      expect(firstOccurrences([...first.pages, ...second.pages])).toEqual(harness.expected(sim, 'r1'));
    });

    it('loses nothing under transient failures and retries with the same cursor', async () => {
      const sim = await simulator({ id: 't1', faults: { transient: true } });
      // A long poll interval: once caught up, the source waits with no request under way, so
      // every failure in the log below had its chance to be retried before the stop.
      const source = await build(sim, 't1', { pollIntervalMs: 10_000 });
      const run = startRun(source);
      await vi.waitFor(() => {
        expect(caughtUp(sim, 't1')).toBe(true);
        expect(source.stats.emptyPolls).toBeGreaterThanOrEqual(1);
      }, WAIT);
      await run.stop();

      const log = harness.requests(sim, 't1');
      const failed = log.filter((r) => r.outcome === 'error' || r.outcome === 'rate_limited');
      // The faults did happen, of both kinds …
      expect(log.some((r) => r.outcome === 'error')).toBe(true);
      expect(log.some((r) => r.outcome === 'rate_limited')).toBe(true);
      // … each was retried with the cursor it failed with: the stream's next request asks for
      // the same. That is the very next request, unless the read had used up its attempts and
      // the stream waits out a backoff of its own while the others are read (Yunhu, ADR 0014).
      // The stop may then come first, but only for a poll at the end of a stream caught up …
      for (const f of failed) {
        const next = log.slice(log.indexOf(f) + 1).find((r) => r.kind === f.kind && r.stream === f.stream);
        if (next === undefined) {
          expect(log.some((r) => sameTarget(r, f) && r.outcome === 'caught_up'), `${f.stream} at ${f.cursor ?? ''}`).toBe(true);
        } else {
          expect(sameTarget(next, f)).toBe(true);
        }
      }
      // … and nothing was lost, doubled out of order or parked.
      expect(firstOccurrences(run.pages)).toEqual(harness.expected(sim, 't1'));
      expect(recordsOf(run.pages)).toHaveLength(servedPages(sim, 't1').reduce((n, r) => n + r.items, 0));
      expect(run.pages.every((p) => p.deadLetters.length === 0)).toBe(true);
      expect(source.stats.errors).toBeGreaterThanOrEqual(failed.length);
      expect(source.stats.parked).toBe(false);
    });

    it('dead-letters a malformed page with its whole body and does not move the cursor past it', async () => {
      const sim = await simulator({ id: 'm1' });
      const source = await build(sim, 'm1');
      const run = startRun(source, {
        onEmit: (page, r) => {
          // After the first good page, the next answer is malformed; once it is reported, heal.
          if (r.pages.length === 1 && page.records.length > 0) harness.setMalformed(sim, 'm1', true);
          if (page.deadLetters.length > 0) harness.setMalformed(sim, 'm1', false);
        },
      });
      await vi.waitFor(() => {
        expect(caughtUp(sim, 'm1')).toBe(true);
      }, WAIT);
      await run.stop();

      const log = harness.requests(sim, 'm1');
      const malformed = log.filter((r) => r.outcome === 'malformed');
      expect(malformed.length).toBeGreaterThanOrEqual(1);
      const at = run.pages.findIndex((p) => p.deadLetters.length > 0);
      expect(at).toBe(1);
      const page = run.pages[at]!;
      const previous = run.pages[0]!;
      // The page carries no records and keeps the stream's cursor where it was.
      expect(page.stream).toBe(previous.stream);
      expect(page.records).toEqual([]);
      expect(page.cursorBefore).toBe(previous.cursorAfter);
      expect(page.cursorAfter).toBe(page.cursorBefore);
      expect([malformed[0]?.kind, malformed[0]?.stream, malformed[0]?.cursor]).toEqual(['read', page.stream, page.cursorBefore]);
      // The next request for that stream asks for the same position again (another stream of
      // the source may be read in between).
      const next = log.slice(log.indexOf(malformed[0]!) + 1).find((r) => r.kind === malformed[0]!.kind && r.stream === malformed[0]!.stream);
      expect(sameTarget(next, malformed[0]!)).toBe(true);

      expect(page.deadLetters).toHaveLength(1);
      const letter = page.deadLetters[0]!;
      expect(letter).toMatchObject({ stage: 'ingest', tenant: TENANT, source: source.name, source_type: source.origin.sourceType });
      expect(letter.error_code).toMatch(/^MSGPIPE_ERR_[A-Z0-9_]+$/);
      // The whole body the simulator sent, not a part or a re-serialisation.
      const bytes = Buffer.from(letter.original_base64, 'base64');
      expect(bytes.length).toBeGreaterThan(0);
      expect(await harness.isWholeBody(sim, 'm1', malformed[0]!, bytes)).toBe(true);

      expect(firstOccurrences(run.pages)).toEqual(harness.expected(sim, 'm1'));
    });

    it('parks only the account whose token expired, logs it once, and resumes after renewal', async () => {
      const sim = await simulator({ id: 'p1', faults: { tokenExpiresAfterFirstPage: true } }, { id: 'p2' });
      const parkedSource = await build(sim, 'p1');
      const healthySource = await build(sim, 'p2');
      const capture = captureLog();
      const parked = startRun(parkedSource, { log: capture.log });
      const healthy = startRun(healthySource);

      await vi.waitFor(() => {
        expect(caughtUp(sim, 'p2')).toBe(true);
        expect(parkedSource.stats.parked).toBe(true);
        // Tried again (slowly) while parked.
        expect(harness.requests(sim, 'p1').filter((r) => r.outcome === 'auth_refused').length).toBeGreaterThanOrEqual(3);
      }, WAIT);
      const stuckAt = parked.pages.at(-1);
      expect(stuckAt).toBeDefined();
      expect(firstOccurrences(healthy.pages)).toEqual(harness.expected(sim, 'p2'));
      expect(healthySource.stats.parked).toBe(false);
      // Only the first page was accepted; the refused requests kept its cursor and were spaced out.
      const refused = harness.requests(sim, 'p1').filter((r) => r.outcome === 'auth_refused');
      // Each asks for what follows that cursor, or (a source with a re-read window) again for
      // items before it; neither can move it.
      for (const r of refused) {
        expect(r.stream).toBe(stuckAt?.stream);
        expect(['read', 'reread']).toContain(r.kind);
        if (r.kind === 'read') expect(r.cursor).toBe(stuckAt?.cursorAfter);
      }
      const gaps = refused.slice(1).map((r, i) => r.at - refused[i]!.at);
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(FAST.parkRetryMs * 0.5);
      expect(capture.lines.filter((l) => l.level >= 50)).toHaveLength(1);

      harness.renewToken(sim, 'p1');
      await vi.waitFor(() => {
        expect(firstOccurrences(parked.pages)).toEqual(harness.expected(sim, 'p1'));
        expect(parkedSource.stats.parked).toBe(false);
      }, WAIT);
      await Promise.all([parked.stop(), healthy.stop()]);
    });

    it('stops promptly when aborted during a request or while idle, and finishes an emit under way', async () => {
      // During a slow request: abandoned, nothing emitted.
      const sim = await simulator({ id: 's1', faults: { latencyMs: 4000 } }, { id: 's2' }, { id: 's3' });
      const slow = startRun(await build(sim, 's1'));
      await vi.waitFor(() => {
        expect(harness.arrivals(sim, 's1')).toBeGreaterThanOrEqual(1);
      }, WAIT);
      expect(await slow.stop()).toBeLessThan(1000);
      expect(slow.pages).toEqual([]);

      // While idle after catching up, with a long poll interval.
      const idleSource = await build(sim, 's2', { pollIntervalMs: 10_000 });
      const idle = startRun(idleSource);
      await vi.waitFor(() => {
        expect(caughtUp(sim, 's2')).toBe(true);
        // A pass that found nothing new: the source now waits out its poll interval.
        expect(idleSource.stats.emptyPolls).toBeGreaterThanOrEqual(1);
      }, WAIT);
      const requests = harness.requests(sim, 's2').length;
      expect(await idle.stop()).toBeLessThan(1000);
      expect(harness.requests(sim, 's2')).toHaveLength(requests);

      // During an emit: the emit finishes, then run returns without another request.
      let emitFinished = false;
      let requestsAtAbort = -1;
      const busy = startRun(await build(sim, 's3'), {
        onEmit: async (_page, r) => {
          if (r.pages.length !== 1) return;
          requestsAtAbort = harness.arrivals(sim, 's3');
          void r.stop();
          await new Promise((resolve) => setTimeout(resolve, 200));
          emitFinished = true;
        },
      });
      await busy.done;
      expect(emitFinished).toBe(true);
      expect(busy.pages).toHaveLength(1);
      expect(harness.arrivals(sim, 's3')).toBe(requestsAtAbort);
      // The page whose emit was under way is kept: the stored cursor is after it.
      expect([...busy.cursors.entries()]).toEqual([[busy.pages[0]?.stream, busy.pages[0]?.cursorAfter]]);
    });
  });
}
