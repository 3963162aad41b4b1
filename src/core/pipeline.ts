/**
 * The embedded pipeline: sources → transform → sink joined by in-process hand-offs.
 *
 * Each page a source emits is transformed record by record (pure functions, in this thread or in
 * worker threads: a {@link PageTransformer}) and handed to the sink as one unit together with the
 * cursor that follows the page. The sink stores units in order and saves a unit's cursor only
 * after its rows, so the stored cursor never runs ahead of the stored data (DESIGN §1). The Kafka
 * mode keeps these stages and replaces the hand-offs with topics.
 */
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';

import type { Logger } from 'pino';

import type { Source, SourceContext, SourcePage } from '../ingest/source.ts';
import type { DeadLetterRow, EditMark, EventRow, MessageEditRow, MessageRow, RawRecord, RecallMark, TransformOutput } from './types.ts';

/** The cursor a unit covers: saved once the unit's rows are stored. */
export interface CursorUpdate {
  readonly source: string;
  readonly stream: string;
  readonly cursor: string;
}

/** One page's worth of rows for the sink. */
export interface SinkUnit {
  readonly output: TransformOutput;
  readonly cursor?: CursorUpdate;
}

/**
 * The sink contract as the pipeline uses it (docs/component-spec.md §Sink). `U` is the unit form
 * it takes: {@link SinkUnit}, or what a {@link PageTransformer} in worker threads hands over.
 */
export interface UnitSink<U = SinkUnit> {
  /** Buffers a unit; resolves once accepted (may wait for a flush: backpressure). Rejects on a permanent failure. */
  add(unit: U): Promise<void>;
  /** Stores everything buffered, then the covered cursors. */
  close(): Promise<void>;
  /**
   * Rejects when the sink fails on its own (a flush its age timer started), before any later
   * `add` would tell: the pipeline stops then, not at the next page, which may be hours away.
   */
  readonly failed?: Promise<never>;
}

/** A promise that rejects with the first failure reported (see {@link UnitSink.failed}); unobserved, it is no unhandled rejection. */
export function failureSignal(): { readonly failed: Promise<never>; readonly report: (err: Error) => void } {
  let report: (err: Error) => void = () => undefined;
  const failed = new Promise<never>((_resolve, reject) => {
    report = reject;
  });
  failed.catch(() => undefined);
  return { failed, report };
}

/** A batch the sink has stored, cursors saved, as reported to a {@link SinkObserver}. */
export interface StoredBatch {
  /** Rows of the batch as added (messages, events, dead letters, recalls). */
  readonly rows: number;
  /** Time to store it: lookups, inserts and cursor save, retries included. */
  readonly durationMs: number;
  /** Its dead letters (any stage); a batch replayed after a crash reports them again. */
  readonly deadLetters: readonly DeadLetterRow[];
  /** The cursors saved with it. */
  readonly cursors: readonly CursorUpdate[];
}

/** Optional hooks a sink calls for metrics (src/ops/metrics.ts). Called synchronously; must not throw. */
export interface SinkObserver {
  stored?(batch: StoredBatch): void;
}

/** Optional hooks the pipeline calls for metrics (src/ops/metrics.ts). Called synchronously; must not throw. */
export interface PipelineObserver {
  /**
   * A page was transformed and is about to go to the sink. `ms` is the transform's own time; in
   * a worker thread, without the hand-off to and from it.
   */
  transformed?(source: Source, page: SourcePage, counts: TransformCounts, ms: number): void;
}

/** How many rows of each table a transformed page gave. */
export interface TransformCounts {
  readonly messages: number;
  readonly events: number;
  /** Every dead letter of the unit: the page's own (stage `ingest`) and the transform's. */
  readonly deadLetters: number;
}

/** A page made ready for the sink, with its counts and the time its transform took. */
export interface TransformedPage<U> {
  readonly unit: U;
  readonly counts: TransformCounts;
  readonly ms: number;
}

/**
 * Turns fetched pages into sink units: in this thread ({@link inThreadTransformer}) or in worker
 * threads (src/transform/threads.ts). Never rejects for bad records (they become dead letters);
 * a rejection is a failure of the transformer itself and stops the pipeline.
 */
export interface PageTransformer<U> {
  transform(page: SourcePage, cursor: CursorUpdate, now: number): Promise<TransformedPage<U>>;
  /** Releases its threads; called once every source has stopped. */
  close(): Promise<void>;
  /** Rejects when a thread fails while no page is in it (see {@link UnitSink.failed}). */
  readonly failed?: Promise<never>;
}

/** Where sources read their resume position. */
export interface CursorReader {
  load(source: string, stream: string): Promise<string | undefined>;
}

/** The transform contract: pure, never throws for bad input (dead letters instead). */
export type RecordTransform = (record: RawRecord, now: number) => TransformOutput;

/** One source's share of its tenant's wake-ups. */
interface Sleeper {
  /** A wake-up came while the source was not waiting (it was polling). */
  pending: boolean;
  /** Ends the wait in progress, if any. */
  wake: (() => void) | undefined;
}

/**
 * The stop of a run's sources: aborts with `outer` (its reason kept), or by itself on the run's
 * first fatal error; `release` unhooks it from `outer`. No cap on its listeners: every source
 * listens to it in its waits and requests, and Node warns of a leak past 10.
 */
export function sourcesStop(outer: AbortSignal): { stop: AbortController; release: () => void } {
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  const onAbort = (): void => { stop.abort(outer.reason); };
  outer.addEventListener('abort', onAbort, { once: true });
  if (outer.aborted) stop.abort(outer.reason);
  return { stop, release: () => { outer.removeEventListener('abort', onAbort); } };
}

/** Wakes the sources of a tenant (`POST /chat-msg/sync`). */
export class Wakeups {
  private readonly sleepers = new Map<string, Set<Sleeper>>();

  /**
   * The wait of one source of `tenant`, to call between its polls: it resolves on the next
   * {@link Wakeups.trigger} of the tenant, or at once when one came since the last wait ended.
   * A sync asked for while the source was polling must not wait out the source's backoff: the
   * poll in flight may have been answered before the new messages arrived. Never rejects;
   * settles when `signal` aborts.
   */
  waiter(tenant: string): (signal: AbortSignal) => Promise<void> {
    const sleeper: Sleeper = { pending: false, wake: undefined };
    const set = this.sleepers.get(tenant) ?? new Set<Sleeper>();
    this.sleepers.set(tenant, set);
    set.add(sleeper);
    return (signal) =>
      new Promise((resolve) => {
        if (sleeper.pending || signal.aborted) {
          sleeper.pending = false;
          resolve();
          return;
        }
        const done = (): void => {
          sleeper.wake = undefined;
          signal.removeEventListener('abort', done);
          resolve();
        };
        sleeper.wake = done;
        signal.addEventListener('abort', done, { once: true });
      });
  }

  /**
   * Wakes every source of `tenant`: a waiting one at once, a polling one when it next waits.
   * Returns how many were waiting.
   */
  trigger(tenant: string): number {
    let waiting = 0;
    for (const sleeper of this.sleepers.get(tenant) ?? []) {
      if (sleeper.wake === undefined) {
        sleeper.pending = true;
      } else {
        waiting += 1;
        sleeper.wake();
      }
    }
    return waiting;
  }
}

/** Transforms every record of a page and merges the outputs with the page's own dead letters. */
export function transformPage(page: SourcePage, transform: RecordTransform, now: number): TransformOutput {
  const messages: MessageRow[] = [];
  const events: EventRow[] = [];
  const deadLetters: DeadLetterRow[] = [...page.deadLetters];
  const recalls: RecallMark[] = [];
  const edits: EditMark[] = [];
  const editHistory: MessageEditRow[] = [];
  for (const record of page.records) {
    const out = transform(record, now);
    for (const m of out.messages) messages.push(m);
    for (const e of out.events) events.push(e);
    for (const d of out.deadLetters) deadLetters.push(d);
    for (const r of out.recalls) recalls.push(r);
    if (out.edits) for (const e of out.edits) edits.push(e);
    if (out.editHistory) for (const h of out.editHistory) editHistory.push(h);
  }
  return { messages, events, deadLetters, recalls, ...(edits.length > 0 ? { edits } : {}), ...(editHistory.length > 0 ? { editHistory } : {}) };
}

/** The counts of a transform output. */
export function countsOf(output: TransformOutput): TransformCounts {
  return { messages: output.messages.length, events: output.events.length, deadLetters: output.deadLetters.length };
}

/** Transforms pages in this thread with the record transform of their source type. */
export function inThreadTransformer(transformFor: (page: SourcePage) => RecordTransform): PageTransformer<SinkUnit> {
  return {
    transform: (page, cursor, now) => {
      const started = performance.now();
      const output = transformPage(page, transformFor(page), now);
      return Promise.resolve({ unit: { output, cursor }, counts: countsOf(output), ms: performance.now() - started });
    },
    close: () => Promise.resolve(),
  };
}

export interface EmbeddedPipelineOptions<U> {
  readonly sources: readonly Source[];
  readonly transformer: PageTransformer<U>;
  readonly sink: UnitSink<U>;
  readonly cursors: CursorReader;
  readonly signal: AbortSignal;
  readonly log: Logger;
  readonly wakeups?: Wakeups;
  readonly clock?: () => number;
  readonly observer?: PipelineObserver;
}

/**
 * Whether a source's error is the stop itself: a source stopped while it waited (loading its
 * cursor, a backoff) ends with the stop's reason or an AbortError, which is not a failure.
 */
export function isStop(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (err === signal.reason || (err instanceof Error && err.name === 'AbortError'));
}

/**
 * Runs the sources until `signal` aborts (or one fails), then drains: every page already
 * fetched is transformed and stored, and its cursor saved, before this resolves. With no
 * sources it waits for `signal` all the same.
 *
 * @throws the first fatal error of a source or of the sink, after draining what it can.
 */
export async function runEmbeddedPipeline<U>(options: EmbeddedPipelineOptions<U>): Promise<void> {
  const { sink, log } = options;
  const clock = options.clock ?? Date.now;
  const wakeups = options.wakeups ?? new Wakeups();
  // Stops the sources on the outer signal or on the first fatal error.
  const { stop, release } = sourcesStop(options.signal);

  let fatal: unknown;
  /** Keeps the first fatal error, logs each error once, and stops every source. */
  const failWith = (err: unknown, source: Source, message: string): void => {
    if (err !== fatal) log.error({ err, source: source.name }, message);
    fatal ??= err;
    stop.abort(err);
  };
  const { transformer } = options;
  // A stage that fails between pages stops the sources now (it logged why itself).
  const failedStage = (err: unknown): void => {
    fatal ??= err;
    stop.abort(err);
  };
  sink.failed?.catch(failedStage);
  transformer.failed?.catch(failedStage);
  const runs = options.sources.map(async (source) => {
    const ctx: SourceContext = {
      signal: stop.signal,
      log,
      loadCursor: (stream) => options.cursors.load(source.name, stream),
      wakeup: wakeups.waiter(source.origin.tenant),
      emit: async (page) => {
        try {
          const cursor = { source: source.name, stream: page.stream, cursor: page.cursorAfter };
          const { unit, counts, ms } = await transformer.transform(page, cursor, clock());
          options.observer?.transformed?.(source, page, counts, ms);
          await sink.add(unit);
        } catch (err) {
          // The next stages failed, not the source: stop every source, even one that would
          // catch this and poll again (a failed transformer or sink refuses every later page).
          failWith(err, source, 'Transform or sink failed; stopping the pipeline.');
          throw err;
        }
      },
    };
    try {
      await source.run(ctx);
    } catch (err) {
      if (!isStop(err, options.signal)) failWith(err, source, 'Source failed; stopping the pipeline.');
    }
  });
  // Without sources (a store served by the query API alone) there is nothing to end the run but the stop.
  if (runs.length === 0 && !stop.signal.aborted) {
    await new Promise<void>((resolve) => { stop.signal.addEventListener('abort', () => { resolve(); }, { once: true }); });
  }
  await Promise.all(runs);
  release();
  try {
    await sink.close();
  } catch (err) {
    fatal ??= err;
  }
  try {
    await transformer.close();
  } catch (err) {
    fatal ??= err;
  }
  if (fatal !== undefined) throw fatal instanceof Error ? fatal : new Error('Pipeline failed.', { cause: fatal });
}
