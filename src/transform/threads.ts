/**
 * Transform worker threads for the embedded pipeline (`transform.workers`, ADR 0016).
 *
 * The main thread fetches pages, runs the sink's lookups and inserts and talks to the engine;
 * the transform and the encoding of insert lines are most of its work besides. Here they run in
 * worker threads, so the pipeline's JavaScript uses two cores: a page goes to the thread with the
 * fewest pages waiting (its records cloned), and comes back encoded as the sink holds it
 * ({@link EncodedUnit}), its lines in one transferred buffer.
 *
 * Order: the pipeline awaits each page before a source emits its next one, so the pages of a
 * stream reach the sink in order whichever thread transformed them. Failures: bad records are
 * dead letters as in the main thread. A transform that throws (a bug) rejects its page; a thread
 * that crashes, exits or sends an unreadable answer rejects the pages in it and every later one.
 * Either stops the pipeline without saving that page's cursor.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type ResourceLimits, Worker } from 'node:worker_threads';

import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import { type CursorUpdate, failureSignal, type PageTransformer, type TransformCounts, type TransformedPage } from '../core/pipeline.ts';
import type { SourcePage } from '../ingest/source.ts';
import { EncodedUnit, type EncodedUnitWire } from '../sink/writer.ts';

/** A page for a thread to transform. */
export interface PageRequest {
  readonly id: number;
  readonly page: SourcePage;
  readonly cursor: CursorUpdate;
  readonly now: number;
}

/** A thread's answer: the encoded unit, or the error its transform threw. */
export type PageReply =
  | { readonly id: number; readonly ok: true; readonly wire: EncodedUnitWire; readonly counts: TransformCounts; readonly ms: number }
  | { readonly id: number; readonly ok: false; readonly message: string; readonly stack: string };

interface Waiter {
  resolve(page: TransformedPage<EncodedUnit>): void;
  reject(err: Error): void;
}

interface Slot {
  readonly worker: Worker;
  readonly waiting: Map<number, Waiter>;
}

/**
 * The thread's module: thread.js beside this file once compiled (dist/). From the TypeScript
 * sources (tests, tools run through tsx), thread.ts through tsx's require hook: on Node 20 a
 * worker gets no module loader hooks (`--import tsx` does not reach its imports).
 */
function threadEntry(): { script: URL | string; eval: boolean } {
  if (!import.meta.url.endsWith('.ts')) return { script: new URL('./thread.js', import.meta.url), eval: false };
  const tsx = createRequire(import.meta.url).resolve('tsx/cjs');
  const entry = fileURLToPath(new URL('./thread.ts', import.meta.url));
  return { script: `require(${JSON.stringify(tsx)}); require(${JSON.stringify(entry)});`, eval: true };
}

/**
 * The default of `transform.workers`: one thread when the machine has a core for it beside the
 * main thread and the engine, none on two cores or fewer (docs/benchmarks.md, session 7).
 */
export function defaultTransformWorkers(cores: number = availableCores()): number {
  return cores > 2 ? 1 : 0;
}

/**
 * CPUs this process may use: those it may run on, and no more than a cgroup v2 CPU quota
 * (`/sys/fs/cgroup/cpu.max`, as a container limit sets it) allows.
 */
export function availableCores(cpuMax: string | undefined = readCpuMax()): number {
  const cpus = availableParallelism();
  const [quota, period] = (cpuMax ?? '').trim().split(/\s+/);
  const q = Number(quota);
  const p = Number(period);
  if (quota === 'max' || !Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return cpus;
  return Math.max(1, Math.min(cpus, Math.floor(q / p)));
}

function readCpuMax(): string | undefined {
  try {
    return readFileSync('/sys/fs/cgroup/cpu.max', 'utf8');
  } catch {
    return undefined;
  }
}

function threadError(message: string, cause?: unknown): MsgpipeError {
  return new MsgpipeError('MSGPIPE_ERR_TRANSFORM_THREAD', message, cause === undefined ? {} : { cause });
}

export interface TransformThreadsOptions {
  /** Heap limits of each thread (node's worker `resourceLimits`); a thread over them dies. */
  readonly resourceLimits?: ResourceLimits;
}

/** Worker threads that transform and encode pages. Implements the pipeline's {@link PageTransformer}. */
export class TransformThreads implements PageTransformer<EncodedUnit> {
  private readonly slots: Slot[] = [];
  private readonly log: Logger;
  private nextId = 1;
  private failure: MsgpipeError | undefined;
  private readonly failureSignal = failureSignal();
  /** Rejects when a thread fails (see {@link PageTransformer.failed}). */
  readonly failed: Promise<never> = this.failureSignal.failed;
  private closing = false;

  /**
   * Starts `count` threads.
   *
   * @throws RangeError when `count` is not a positive integer
   */
  constructor(count: number, log: Logger, options: TransformThreadsOptions = {}) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`Transform threads: count must be a positive integer, got ${String(count)}.`);
    this.log = log;
    const entry = threadEntry();
    for (let i = 0; i < count; i++) {
      const worker = new Worker(entry.script, {
        eval: entry.eval,
        ...(options.resourceLimits === undefined ? {} : { resourceLimits: options.resourceLimits }),
        name: `msgpipe-transform-${String(i)}`,
      });
      const slot: Slot = { worker, waiting: new Map() };
      worker.on('message', (reply: PageReply) => { this.answer(slot, reply); });
      worker.on('error', (err) => { this.fail(slot, threadError(`Transform thread ${String(i)} crashed: ${err.message}`, err)); });
      // An answer that cannot be read would leave its page waiting forever: fail the thread.
      worker.on('messageerror', (err) => {
        this.fail(slot, threadError(`An answer of transform thread ${String(i)} could not be read: ${err.message}`, err));
        void worker.terminate();
      });
      worker.on('exit', (code) => {
        this.fail(slot, this.closing ? threadError('Transform threads closed.') : threadError(`Transform thread ${String(i)} exited (code ${String(code)}).`));
      });
      this.slots.push(slot);
    }
  }

  /** Pages sent to a thread and not answered yet. */
  get waiting(): number {
    let n = 0;
    for (const slot of this.slots) n += slot.waiting.size;
    return n;
  }

  transform(page: SourcePage, cursor: CursorUpdate, now: number): Promise<TransformedPage<EncodedUnit>> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(threadError('Transform threads closed.'));
    let slot = this.slots[0];
    for (const s of this.slots) if (slot === undefined || s.waiting.size < slot.waiting.size) slot = s;
    if (slot === undefined) return Promise.reject(threadError('No transform thread.'));
    const id = this.nextId++;
    const target = slot;
    return new Promise((resolve, reject) => {
      target.waiting.set(id, { resolve, reject });
      try {
        const request: PageRequest = { id, page, cursor, now };
        target.worker.postMessage(request);
      } catch (err) {
        target.waiting.delete(id);
        reject(threadError(`A page could not be sent to a transform thread: ${err instanceof Error ? err.message : String(err)}`, err));
      }
    });
  }

  /** Stops the threads; a page still in one is rejected. Safe to call twice. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.slots.map(async (slot) => slot.worker.terminate()));
  }

  private answer(slot: Slot, reply: PageReply): void {
    const waiter = slot.waiting.get(reply.id);
    if (waiter === undefined) return;
    slot.waiting.delete(reply.id);
    if (!reply.ok) {
      const cause = Object.assign(new Error(reply.message), { stack: reply.stack });
      waiter.reject(threadError(`The transform threw in a worker thread: ${reply.message}`, cause));
      return;
    }
    try {
      waiter.resolve({ unit: EncodedUnit.fromWire(reply.wire), counts: reply.counts, ms: reply.ms });
    } catch (err) {
      waiter.reject(err instanceof Error ? err : threadError(String(err)));
    }
  }

  /** A thread is gone: its pages fail, and so does every later call. */
  private fail(slot: Slot, err: MsgpipeError): void {
    if (!this.closing && this.failure === undefined) {
      this.failure = err;
      this.log.error({ err }, 'A transform thread failed; the pipeline stops.');
      this.failureSignal.report(err);
    }
    for (const waiter of slot.waiting.values()) waiter.reject(err);
    slot.waiting.clear();
  }
}
