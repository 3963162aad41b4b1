/**
 * The embedded pipeline's failure path: a failing transformer or sink stops every source, also
 * one that catches the error of `emit` and polls again (as the Yunhu source does with errors of
 * a polling round), and the pipeline rejects with that error after closing the sink.
 */
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { failureSignal, inThreadTransformer, type PageTransformer, runEmbeddedPipeline, type SinkUnit, type UnitSink, Wakeups } from '../../../src/core/pipeline.ts';
import type { Origin } from '../../../src/core/types.ts';
import { parseConfig } from '../../../src/core/config.ts';
import { createSource } from '../../../src/ingest/registry.ts';
import { newSourceStats, type Source, type SourcePage, waitBetweenPolls } from '../../../src/ingest/source.ts';
import { transformFinderItem } from '../../../src/transform/finder.ts';

const log = pino({ level: 'silent' });
const ORIGIN: Origin = { source: 'y1', sourceType: 'gewe', tenant: 'corp1', staffId: 's1' };

function page(n: number): SourcePage {
  return { origin: ORIGIN, stream: 'chat-1', cursorBefore: String(n), cursorAfter: String(n + 1), records: [], deadLetters: [] };
}

/** Polls page after page; an error of `emit` is logged and the round tried again, until stopped. */
function persistentSource(): Source & { emitted: number; failures: number } {
  const source = {
    name: 'y1',
    origin: ORIGIN,
    stats: newSourceStats(),
    emitted: 0,
    failures: 0,
    async run(ctx: Parameters<Source['run']>[0]): Promise<void> {
      let n = 0;
      while (!ctx.signal.aborted) {
        try {
          await ctx.emit(page(n));
          source.emitted += 1;
          n += 1;
        } catch {
          source.failures += 1;
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
  };
  return source;
}

class RecordingSink implements UnitSink {
  readonly units: SinkUnit[] = [];
  closed = false;
  private readonly failAt: number;
  constructor(failAt = Infinity) {
    this.failAt = failAt;
  }
  add(unit: SinkUnit): Promise<void> {
    if (this.units.length >= this.failAt) return Promise.reject(new Error('sink refused: writer stopped'));
    this.units.push(unit);
    return Promise.resolve();
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
}

async function run(transformer: PageTransformer<SinkUnit>, sink: RecordingSink, source: Source): Promise<unknown> {
  const never = new AbortController();
  const outcome = runEmbeddedPipeline({
    sources: [source],
    transformer,
    sink,
    cursors: { load: () => Promise.resolve(undefined) },
    signal: never.signal,
    log,
  }).then(
    () => 'resolved',
    (err: unknown) => err,
  );
  // Without the stop the persistent source would poll forever; give up after 5 s.
  const timeout = new Promise((resolve) => setTimeout(() => { resolve('still running'); }, 5000));
  const result = await Promise.race([outcome, timeout]);
  never.abort();
  await outcome;
  return result;
}

describe('runEmbeddedPipeline', () => {
  it('stops every source when the transformer fails, and rejects with its error', async () => {
    let pages = 0;
    const broken = inThreadTransformer(() => {
      pages += 1;
      if (pages === 3) throw new TypeError('transform bug');
      return transformFinderItem;
    });
    const sink = new RecordingSink();
    const source = persistentSource();
    const result = await run(broken, sink, source);
    expect(result).toBeInstanceOf(TypeError);
    expect((result as Error).message).toBe('transform bug');
    expect(sink.units.map((u) => u.cursor?.cursor)).toEqual(['1', '2']);
    expect(sink.closed).toBe(true);
    expect(source.failures).toBe(1);
  });

  it('stops every source when the sink refuses a unit, and rejects with its error', async () => {
    const sink = new RecordingSink(2);
    const source = persistentSource();
    const result = await run(inThreadTransformer(() => transformFinderItem), sink, source);
    expect((result as Error).message).toBe('sink refused: writer stopped');
    expect(sink.units).toHaveLength(2);
    expect(sink.closed).toBe(true);
    expect(source.failures).toBe(1);
  });

  it('stops every source when the sink fails between pages, without waiting for the next page', async () => {
    const { failed, report } = failureSignal();
    const sink = Object.assign(new RecordingSink(), { failed });
    // One page, then nothing new for hours: only the stop ends its wait.
    let stoppedBy: unknown;
    const quiet: Source = {
      name: 'y1',
      origin: ORIGIN,
      stats: newSourceStats(),
      async run(ctx) {
        await ctx.emit(page(0));
        setTimeout(() => { report(new Error('flush failed: disk full')); }, 50);
        await new Promise<void>((resolve) => { ctx.signal.addEventListener('abort', () => { resolve(); }, { once: true }); });
        stoppedBy = ctx.signal.reason;
      },
    };
    const result = await run(inThreadTransformer(() => transformFinderItem), sink, quiet);
    expect((result as Error).message).toBe('flush failed: disk full');
    expect((stoppedBy as Error).message).toBe('flush failed: disk full');
    expect(sink.closed).toBe(true);
  });

  it('runs until stopped when there is no source, and then closes the sink', async () => {
    const stop = new AbortController();
    const sink = new RecordingSink();
    let settled = false;
    const outcome = runEmbeddedPipeline({
      sources: [],
      transformer: inThreadTransformer(() => transformFinderItem),
      sink,
      cursors: { load: () => Promise.resolve(undefined) },
      signal: stop.signal,
      log,
    }).finally(() => { settled = true; });
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(settled).toBe(false);
    expect(sink.closed).toBe(false);
    stop.abort(new Error('stopped by SIGTERM'));
    await expect(outcome).resolves.toBeUndefined();
    expect(sink.closed).toBe(true);
  });

  it('ends cleanly when stopped before a finder source has loaded its cursor', async () => {
    // The stop arrives before the sources start (during migrations, say): the cursor load is
    // refused with the stop's reason, which is the stop and not a source failure.
    const config = parseConfig({ tenants: [{ id: 'corp1', secret: 's' }], sources: [{ type: 'gewe', name: 'shop-a', tenant: 'corp1', baseUrl: 'http://127.0.0.1:9', token: 'x', appId: 'a' }] });
    const source = createSource(config.sources[0]!);
    const stop = new AbortController();
    stop.abort(new Error('stopped by SIGTERM'));
    const sink = new RecordingSink();
    let loads = 0;
    await expect(
      runEmbeddedPipeline({
        sources: [source],
        transformer: inThreadTransformer(() => transformFinderItem),
        sink,
        cursors: { load: () => { loads += 1; return Promise.resolve(undefined); } },
        signal: stop.signal,
        log,
      }),
    ).resolves.toBeUndefined();
    expect(loads).toBe(0);
    expect(sink.closed).toBe(true);
  });

  it('runs many sources waiting on the stop signal without a listener-leak warning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => { warnings.push(w.name); };
    process.on('warning', onWarning);
    const stop = new AbortController();
    // Each source waits between polls and has a request in flight: two listeners on the stop.
    const sources: Source[] = Array.from({ length: 12 }, (_v, i) => ({
      name: `s${String(i)}`,
      origin: { ...ORIGIN, source: `s${String(i)}` },
      stats: newSourceStats(),
      run: async (ctx) => {
        const request = new Promise((resolve) => { ctx.signal.addEventListener('abort', resolve, { once: true }); });
        await Promise.all([waitBetweenPolls(ctx, 60_000), request]);
      },
    }));
    try {
      const running = runEmbeddedPipeline({ sources, transformer: inThreadTransformer(() => transformFinderItem), sink: new RecordingSink(), cursors: { load: () => Promise.resolve(undefined) }, signal: stop.signal, log });
      await new Promise((resolve) => setTimeout(resolve, 50));
      stop.abort(new Error('stopped by SIGTERM'));
      await running;
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('still fails on a source error that is not the stop, even during a stop', async () => {
    const stop = new AbortController();
    const failing: Source = {
      name: 'y1',
      origin: ORIGIN,
      stats: newSourceStats(),
      run: () => {
        stop.abort(new Error('stopped by SIGTERM'));
        return Promise.reject(new Error('token rejected'));
      },
    };
    const sink = new RecordingSink();
    await expect(
      runEmbeddedPipeline({ sources: [failing], transformer: inThreadTransformer(() => transformFinderItem), sink, cursors: { load: () => Promise.resolve(undefined) }, signal: stop.signal, log }),
    ).rejects.toThrow('token rejected');
  });
});

describe('Wakeups', () => {
  const settled = async (p: Promise<void>): Promise<boolean> => Promise.race([p.then(() => true), new Promise<boolean>((r) => setTimeout(() => { r(false); }, 20))]);

  it('wakes a waiting source at once, and keeps a wake-up for a source that was not waiting', async () => {
    const wakeups = new Wakeups();
    const a = wakeups.waiter('corp1');
    const b = wakeups.waiter('corp1');
    const other = wakeups.waiter('corp2');
    const signal = new AbortController().signal;
    const aWaits = a(signal);
    // a waits, b is polling: one woken now, b's next wait ends at once, corp2 is left alone.
    expect(wakeups.trigger('corp1')).toBe(1);
    expect(await settled(aWaits)).toBe(true);
    expect(await settled(b(signal))).toBe(true);
    expect(await settled(other(signal))).toBe(false);
    // A kept wake-up is used once: the wait after it sleeps again.
    expect(await settled(b(signal))).toBe(false);
    // An abort ends a wait without a trigger.
    const stop = new AbortController();
    const stopped = a(stop.signal);
    stop.abort();
    expect(await settled(stopped)).toBe(true);
    expect(wakeups.trigger('nobody')).toBe(0);
  });
});
