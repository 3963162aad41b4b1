/**
 * The source contract (docs/component-spec.md §Source): what every poller implements and what
 * the pipeline gives it.
 *
 * A source reads pages from one upstream account and hands each page to `emit`, in order. It
 * never stores a cursor itself: each page carries the cursor that follows it, and the pipeline
 * saves that cursor only after everything the page holds is stored by the next hop. On restart
 * the source starts from `loadCursor`, so a crash at any instant re-reads at most the pages
 * whose rows were not yet stored.
 */
import type { Logger } from 'pino';

import { delay } from '../core/retry.ts';
import type { DeadLetterRow, Origin, RawRecord } from '../core/types.ts';

/** One fetched page, ready for the next stage. */
export interface SourcePage {
  readonly origin: Origin;
  /** The cursor stream the page belongs to (the account for finder sources, a chat for Yunhu). */
  readonly stream: string;
  /** The cursor the page was requested with. */
  readonly cursorBefore: string;
  /** The cursor to resume after this page; saved once the page is stored. */
  readonly cursorAfter: string;
  readonly records: readonly RawRecord[];
  /** Page-level failures kept with their original bytes (stage `ingest`). */
  readonly deadLetters: readonly DeadLetterRow[];
}

/** Counters a source reports; the metrics module turns them into Prometheus series. */
export interface SourceStats {
  polls: number;
  pages: number;
  records: number;
  errors: number;
  emptyPolls: number;
  parked: boolean;
  lastSuccessAt: number | undefined;
}

/** What the pipeline gives a running source. */
export interface SourceContext {
  /** Aborts when the source must stop; `run` then resolves after the in-flight emit. */
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** The stored cursor of a stream, `undefined` before the first page was stored. */
  loadCursor(stream: string): Promise<string | undefined>;
  /**
   * Hands a page to the next stage. Resolves when the page is accepted (queued), which applies
   * backpressure; it does not wait for storage. Pages of one stream must be emitted in order.
   */
  emit(page: SourcePage): Promise<void>;
  /** Resolves early when someone asks for an immediate poll (`POST /chat-msg/sync`). */
  wakeup(signal: AbortSignal): Promise<void>;
}

/** A configured, runnable source. */
export interface Source {
  readonly name: string;
  readonly origin: Origin;
  readonly stats: SourceStats;
  /** Polls until `ctx.signal` aborts. Throws only for errors that must stop the program. */
  run(ctx: SourceContext): Promise<void>;
}

/** Fresh zeroed stats. */
export function newSourceStats(): SourceStats {
  return { polls: 0, pages: 0, records: 0, errors: 0, emptyPolls: 0, parked: false, lastSuccessAt: undefined };
}

/**
 * Waits `ms` between polls, or less: until the source is stopped or woken up (`POST /sync`).
 * Never throws; the caller's loop checks `ctx.signal` afterwards.
 */
export async function waitBetweenPolls(ctx: SourceContext, ms: number): Promise<void> {
  await wait(ctx, ms, true);
}

/**
 * Waits `ms` before asking a provider that failed again (a parked account, a permanent status, a
 * malformed page): only a stop ends it early, not `POST /sync`, which would otherwise send a
 * refused token as often as clients ask. Never throws.
 */
export async function waitBeforeRetry(ctx: SourceContext, ms: number): Promise<void> {
  await wait(ctx, ms, false);
}

async function wait(ctx: SourceContext, ms: number, wakeable: boolean): Promise<void> {
  if (ctx.signal.aborted) return;
  const done = new AbortController();
  const onAbort = (): void => { done.abort(); };
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await (wakeable ? Promise.race([delay(ms, done.signal), ctx.wakeup(done.signal)]) : delay(ms, done.signal));
  } catch {
    // aborted: fall through to the loop's check
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    done.abort();
  }
}
