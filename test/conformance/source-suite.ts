/**
 * The source conformance suite (docs/component-spec.md §Source): every source type runs it
 * against its simulator over real HTTP.
 *
 * The suite plays the pipeline: it gives the source a {@link SourceContext} whose `emit`
 * collects pages and "stores" each page's `cursorAfter` at once (an in-memory cursor table),
 * and checks what the source emitted against the simulator's ground truth (`expected()`) and
 * its request log (`received()`).
 *
 * A source type runs it with one call, passing a factory that builds its source for a given
 * simulated account. The Kafka mode runs the same suite with factories whose sources hand
 * pages on through topics; the suite only needs a {@link Source}.
 */
import { Writable } from 'node:stream';

import { pino, type Logger } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';

import { parseLossless, toDecimal } from '../../src/core/json.ts';
import type { RetryPolicy } from '../../src/core/retry.ts';
import type { Source, SourceContext, SourcePage } from '../../src/ingest/source.ts';
import { PROVIDER_TEXTS, startSimulator } from '../../src/simulate/index.ts';
import type { SimProvider, SimulatedAccountInfo, SimulatorAccountInput, SimulatorHandle } from '../../src/simulate/index.ts';

/** Per-test tuning, so retries, parking and idling fit in a fast test. */
export interface SourceTuning {
  /** Backoff of transient failures. */
  readonly retry: RetryPolicy;
  /** How often a parked account is tried again, ms. */
  readonly parkRetryMs: number;
  /** Wait after an empty page, ms. */
  readonly pollIntervalMs: number;
}

/** What a factory is given to build one source. */
export interface SourceFactoryInput {
  /** The simulated account to poll (login, token, endpoint). */
  readonly account: SimulatedAccountInfo;
  /** The simulator's base URL (the source's `baseUrl`). */
  readonly baseUrl: string;
  /** A unique source name (letters, digits, `-`). */
  readonly name: string;
  readonly tenant: string;
  readonly tuning: SourceTuning;
}

/**
 * Builds sources of one type. `create` may be async; an implementation that holds resources
 * (Kafka clients …) registers their cleanup itself, e.g. with vitest's `onTestFinished`.
 */
export interface SourceFactory {
  /** The simulator provider whose API the source speaks. */
  readonly provider: SimProvider;
  create(input: SourceFactoryInput): Source | Promise<Source>;
}

const TENANT = 'corp-conformance';
const WAIT = { timeout: 10_000, interval: 20 } as const;
const FAST: SourceTuning = {
  retry: { attempts: Infinity, minMs: 5, maxMs: 40, factor: 2 },
  parkRetryMs: 150,
  pollIntervalMs: 50,
};

/** The NewMsgId of an item, parsed losslessly from its exact bytes. */
function newMsgIdOf(bytes: Uint8Array): string | undefined {
  const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  const item = parseLossless(text) as { content?: { msg?: { NewMsgId?: unknown } } } | null;
  return toDecimal(item?.content?.msg?.NewMsgId);
}

function recordsOf(pages: readonly SourcePage[]): Uint8Array[] {
  return pages.flatMap((p) => p.records.map((r) => r.bytes));
}

/** Distinct NewMsgIds in order of first appearance (providers re-send duplicates). */
function firstOccurrences(pages: readonly SourcePage[]): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const bytes of recordsOf(pages)) {
    const id = newMsgIdOf(bytes);
    if (id === undefined || seen.has(id)) continue;
    seen.add(id);
    out.push(id);
  }
  return out;
}

function expectedIds(sim: SimulatorHandle, id: string): string[] {
  return sim.expected(id).map((m) => m.newMsgId);
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

/** True once the account answered "caught up" to a request numbered `since` or later. */
function caughtUp(sim: SimulatorHandle, id: string, since = 0): boolean {
  return sim.received(id).some((r) => r.outcome === 'caught_up' && r.sequence >= since);
}

/** Requests the simulator answered with a page, i.e. the pages a source must have emitted. */
function servedItems(sim: SimulatorHandle, id: string, since = 0): number {
  return sim
    .received(id)
    .filter((r) => r.outcome === 'page' && r.sequence >= since)
    .reduce((n, r) => n + r.items, 0);
}

/** Asks the simulator for the page at `keyBuff` again (pages are pure functions of the cursor). */
async function refetch(sim: SimulatorHandle, id: string, keyBuff: string): Promise<Buffer> {
  const info = sim.accounts().find((a) => a.id === id);
  if (info === undefined) throw new Error(`no simulated account ${id}`);
  const res = await fetch(info.endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', [PROVIDER_TEXTS[info.provider].tokenHeader]: info.token },
    body: JSON.stringify({ [info.provider === 'syncfinder' ? 'wId' : 'appId']: info.login, keyBuff }),
  });
  return Buffer.from(await res.arrayBuffer());
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

/**
 * Runs the source contract cases for one source type.
 *
 * @param name the suite's name (the source type)
 * @param factory builds the source under test for a simulated account
 */
export function sourceConformance(name: string, factory: SourceFactory): void {
  const { provider } = factory;
  let sims: SimulatorHandle[] = [];
  let sourceNumber = 0;

  afterEach(async () => {
    await Promise.all(sims.map((s) => s.close()));
    sims = [];
  });

  function account(id: string, extra: Partial<SimulatorAccountInput> = {}): SimulatorAccountInput {
    const base = { id, token: `tok-${id}`, messages: 90, pageSize: 20, sessions: 6, seed: `conf-${id}` };
    const login = provider === 'syncfinder' ? { provider, wId: `w-${id}` } : { provider, appId: `wx_${id}` };
    return { ...base, ...login, ...extra } as SimulatorAccountInput;
  }

  async function simulator(...accounts: SimulatorAccountInput[]): Promise<SimulatorHandle> {
    const sim = await startSimulator({ accounts });
    sims.push(sim);
    return sim;
  }

  async function build(sim: SimulatorHandle, id: string, tuning: Partial<SourceTuning> = {}): Promise<Source> {
    const info = sim.accounts().find((a) => a.id === id);
    if (info === undefined) throw new Error(`no simulated account ${id}`);
    sourceNumber += 1;
    return factory.create({
      account: info,
      baseUrl: sim.url,
      name: `conf-${provider}-${sourceNumber}`,
      tenant: TENANT,
      tuning: { ...FAST, ...tuning },
    });
  }

  describe(`source conformance: ${name}`, () => {
    it('delivers every item exactly, in order, from an empty cursor', async () => {
      const sim = await simulator(account('a1'));
      const source = await build(sim, 'a1');
      const run = startRun(source);
      await vi.waitFor(() => {
        expect(caughtUp(sim, 'a1')).toBe(true);
        // The simulator sent "caught up"; on a loaded machine the source may not have read it yet.
        expect(source.stats.emptyPolls).toBeGreaterThanOrEqual(1);
      }, WAIT);
      await run.stop();
      // Read the log before the exactness check below asks for pages again.
      const served = sim.received('a1').filter((r) => r.outcome === 'page');
      const servedTotal = servedItems(sim, 'a1');

      const pages = run.pages;
      // Every unique message, once each in first appearance, in stream order; nothing else.
      expect(firstOccurrences(pages)).toEqual(expectedIds(sim, 'a1'));
      // Every item the provider sent is a record (re-sent duplicates too: dropping them is the sink's job).
      expect(recordsOf(pages)).toHaveLength(servedTotal);
      expect(servedTotal).toBeGreaterThan(expectedIds(sim, 'a1').length);
      expect(run.loads.length).toBeGreaterThanOrEqual(1);

      // Pages chain: the first starts from the provider's initial cursor, each from the last one's end.
      expect(pages[0]?.cursorBefore).toBe('');
      for (let i = 1; i < pages.length; i++) expect(pages[i]?.cursorBefore).toBe(pages[i - 1]?.cursorAfter);
      // The cursor is opaque: exactly the keyBuff the provider returned, sent back as is.
      expect(pages.filter((p) => p.records.length > 0).map((p) => [p.cursorBefore, p.cursorAfter, p.records.length])).toEqual(
        served.map((r) => [r.keyBuff, r.returnedKeyBuff, r.items]),
      );

      for (const page of pages) {
        expect(page.deadLetters).toEqual([]);
        expect(page.records.map((r) => r.index)).toEqual(page.records.map((_r, i) => i));
        for (const r of page.records) {
          expect(r.cursor).toBe(page.cursorBefore);
          expect(r.origin).toEqual(source.origin);
        }
        expect(source.origin.tenant).toBe(TENANT);
        if (page.records.length === 0) continue;
        // Exact bytes: the page's records, comma-joined, are the very list the provider sent.
        const body = await refetch(sim, 'a1', page.cursorBefore);
        const list = Buffer.concat([Buffer.from('"list":['), ...page.records.flatMap((r, i) => (i === 0 ? [r.bytes] : [Buffer.from(','), r.bytes])), Buffer.from(']')]);
        expect(body.includes(list)).toBe(true);
      }

      expect(source.stats.records).toBe(servedTotal);
      expect(source.stats.pages).toBeGreaterThanOrEqual(served.length);
      expect(source.stats.polls).toBeGreaterThanOrEqual(served.length + 1);
      expect(source.stats.emptyPolls).toBeGreaterThanOrEqual(1);
      expect(source.stats.parked).toBe(false);
      expect(source.stats.lastSuccessAt).toBeTypeOf('number');
    });

    it('resumes from the stored cursor and loses nothing across the restart', async () => {
      const sim = await simulator(account('r1'));
      // First run: stopped while its second page is being emitted.
      const first = startRun(await build(sim, 'r1'), {
        onEmit: (_page, run) => {
          if (run.pages.filter((p) => p.records.length > 0).length === 2) void run.stop();
        },
      });
      await first.done;
      const stored = [...first.cursors.values()];
      expect(stored).toHaveLength(1);
      const cursor = stored[0]!;
      expect(cursor).not.toBe('');
      const requestsBefore = sim.received('r1').length;

      // Second run: a new instance that only knows the stored cursor.
      const second = startRun(await build(sim, 'r1'), { cursors: new Map(first.cursors) });
      await vi.waitFor(() => {
        expect(caughtUp(sim, 'r1', requestsBefore)).toBe(true);
      }, WAIT);
      await second.stop();

      expect(second.loads).toEqual(first.loads.slice(0, 1));
      expect(sim.received('r1')[requestsBefore]?.keyBuff).toBe(cursor);
      expect(second.pages[0]?.cursorBefore).toBe(cursor);
      expect(firstOccurrences([...first.pages, ...second.pages])).toEqual(expectedIds(sim, 'r1'));
      // Nothing before the stored cursor is fetched again.
      expect(sim.received('r1').slice(requestsBefore).some((r) => r.keyBuff === '' || r.restarted)).toBe(false);
    });

    it('loses nothing under transient failures and retries with the same cursor', async () => {
      const sim = await simulator(account('t1', { faults: { errorRate: 0.3, rateLimitRate: 0.2, retryAfterSec: 0 } }));
      const source = await build(sim, 't1');
      const run = startRun(source);
      await vi.waitFor(() => {
        expect(caughtUp(sim, 't1')).toBe(true);
      }, WAIT);
      await run.stop();

      const log = sim.received('t1');
      const failed = log.filter((r) => r.outcome === 'error' || r.outcome === 'rate_limited');
      // The faults did happen, of both kinds …
      expect(log.some((r) => r.outcome === 'error')).toBe(true);
      expect(log.some((r) => r.outcome === 'rate_limited')).toBe(true);
      // … each was retried with the cursor it failed with …
      for (const f of failed) expect(log[log.indexOf(f) + 1]?.keyBuff ?? null).toBe(f.keyBuff);
      // … and nothing was lost, doubled out of order or parked.
      expect(firstOccurrences(run.pages)).toEqual(expectedIds(sim, 't1'));
      expect(recordsOf(run.pages)).toHaveLength(servedItems(sim, 't1'));
      expect(run.pages.every((p) => p.deadLetters.length === 0)).toBe(true);
      expect(source.stats.errors).toBeGreaterThanOrEqual(failed.length);
      expect(source.stats.parked).toBe(false);
    });

    it('dead-letters a malformed page with its whole body and does not move the cursor past it', async () => {
      const sim = await simulator(account('m1'));
      const source = await build(sim, 'm1');
      const run = startRun(source, {
        onEmit: (page, r) => {
          // After the first good page, the next answer is malformed; once it is reported, heal.
          if (r.pages.length === 1 && page.records.length > 0) sim.setFaults('m1', { malformedRate: 1 });
          if (page.deadLetters.length > 0) sim.clearFaults('m1');
        },
      });
      await vi.waitFor(() => {
        expect(caughtUp(sim, 'm1')).toBe(true);
      }, WAIT);
      await run.stop();

      const log = sim.received('m1');
      const malformed = log.filter((r) => r.outcome === 'malformed');
      expect(malformed.length).toBeGreaterThanOrEqual(1);
      const at = run.pages.findIndex((p) => p.deadLetters.length > 0);
      expect(at).toBe(1);
      const page = run.pages[at]!;
      const previous = run.pages[0]!;
      // The page carries no records and keeps the cursor where it was.
      expect(page.records).toEqual([]);
      expect(page.cursorBefore).toBe(previous.cursorAfter);
      expect(page.cursorAfter).toBe(page.cursorBefore);
      expect(malformed[0]?.keyBuff).toBe(page.cursorBefore);
      // The next request asks for the same position again.
      expect(log[log.indexOf(malformed[0]!) + 1]?.keyBuff).toBe(page.cursorBefore);

      expect(page.deadLetters).toHaveLength(1);
      const letter = page.deadLetters[0]!;
      expect(letter).toMatchObject({ stage: 'ingest', tenant: TENANT, source: source.name, source_type: source.origin.sourceType });
      expect(letter.error_code).toMatch(/^MSGPIPE_ERR_[A-Z0-9_]+$/);
      // The whole body: the simulator's HTML error page, or a cut of the page it would have sent.
      const bytes = Buffer.from(letter.original_base64, 'base64');
      expect(bytes.length).toBeGreaterThan(0);
      const full = await refetch(sim, 'm1', page.cursorBefore);
      const isHtml = bytes.toString('utf8').includes('<title>502 Bad Gateway</title>');
      const isCut = bytes.length < full.length && full.subarray(0, bytes.length).equals(bytes);
      expect(isHtml || isCut).toBe(true);

      expect(firstOccurrences(run.pages)).toEqual(expectedIds(sim, 'm1'));
    });

    it('parks only the account whose token expired, logs it once, and resumes after renewal', async () => {
      const sim = await simulator(account('p1', { faults: { tokenExpiresAfter: 1 } }), account('p2'));
      const parkedSource = await build(sim, 'p1');
      const healthySource = await build(sim, 'p2');
      const capture = captureLog();
      const parked = startRun(parkedSource, { log: capture.log });
      const healthy = startRun(healthySource);

      await vi.waitFor(() => {
        expect(caughtUp(sim, 'p2')).toBe(true);
        expect(parkedSource.stats.parked).toBe(true);
        // Tried again (slowly) while parked.
        expect(sim.received('p1').filter((r) => r.outcome === 'auth_refused').length).toBeGreaterThanOrEqual(3);
      }, WAIT);
      const stuckAt = parked.pages.at(-1)?.cursorAfter;
      expect(firstOccurrences(healthy.pages)).toEqual(expectedIds(sim, 'p2'));
      expect(healthySource.stats.parked).toBe(false);
      // Only the first request was accepted; the refused ones kept the cursor and were spaced out.
      const refused = sim.received('p1').filter((r) => r.outcome === 'auth_refused');
      for (const r of refused) expect(r.keyBuff).toBe(stuckAt);
      const gaps = refused.slice(1).map((r, i) => r.at - refused[i]!.at);
      expect(Math.min(...gaps)).toBeGreaterThanOrEqual(FAST.parkRetryMs * 0.5);
      expect(capture.lines.filter((l) => l.level >= 50)).toHaveLength(1);

      sim.renewToken('p1');
      sim.clearFaults('p1');
      await vi.waitFor(() => {
        expect(firstOccurrences(parked.pages)).toEqual(expectedIds(sim, 'p1'));
        expect(parkedSource.stats.parked).toBe(false);
      }, WAIT);
      await Promise.all([parked.stop(), healthy.stop()]);
    });

    it('stops promptly when aborted during a request or while idle, and finishes an emit under way', async () => {
      // During a slow request: abandoned, nothing emitted.
      const sim = await simulator(account('s1', { faults: { latencyMs: 4000 } }), account('s2'), account('s3'));
      const slow = startRun(await build(sim, 's1'));
      await vi.waitFor(() => {
        expect(sim.lastReceived('s1')).toBeDefined();
      }, WAIT);
      expect(await slow.stop()).toBeLessThan(1000);
      expect(slow.pages).toEqual([]);

      // While idle after catching up, with a long poll interval.
      const idle = startRun(await build(sim, 's2', { pollIntervalMs: 10_000 }));
      await vi.waitFor(() => {
        expect(caughtUp(sim, 's2')).toBe(true);
      }, WAIT);
      const requests = sim.received('s2').length;
      expect(await idle.stop()).toBeLessThan(1000);
      expect(sim.received('s2')).toHaveLength(requests);

      // During an emit: the emit finishes, then run returns without another request.
      let emitFinished = false;
      let requestsAtAbort = -1;
      const busy = startRun(await build(sim, 's3'), {
        onEmit: async (_page, r) => {
          if (r.pages.length !== 1) return;
          requestsAtAbort = sim.received('s3').length;
          void r.stop();
          await new Promise((resolve) => setTimeout(resolve, 200));
          emitFinished = true;
        },
      });
      await busy.done;
      expect(emitFinished).toBe(true);
      expect(busy.pages).toHaveLength(1);
      expect(sim.received('s3')).toHaveLength(requestsAtAbort);
      // The page whose emit was under way is kept: the stored cursor is after it.
      expect([...busy.cursors.values()]).toEqual([busy.pages[0]?.cursorAfter]);
    });
  });
}
