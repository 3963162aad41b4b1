/**
 * Throughput of the sink writer on embedded chDB (not a test: prints numbers).
 *
 *   node --import tsx bench/writer.ts [rows=200000] [unitSize=100]
 *
 * Feeds `rows` realistic messages through a SinkWriter in units of `unitSize` (one unit per
 * provider page, each with a cursor), with the default batch bounds, then re-feeds the first
 * 20 000 (a replay after a crash: all duplicates) and reports rows/s, flush and lookup times and
 * peak RSS. Move to bench/ once the bench harness exists.
 */
import { performance } from 'node:perf_hooks';

import type { MessageRow } from '../src/core/types.ts';
import { SinkWriter } from '../src/sink/writer.ts';
import { openTempStore, realisticMessages, silent } from '../test/unit/sink/helpers.ts';

const total = Number(process.argv[2] ?? 200_000);
const unitSize = Number(process.argv[3] ?? 100);
const maxBytes = Number(process.argv[4] ?? 16 * 1024 * 1024);

let peakRss = 0;
let peakHeap = 0;
const sampler = setInterval(() => {
  const m = process.memoryUsage();
  peakRss = Math.max(peakRss, m.rss);
  peakHeap = Math.max(peakHeap, m.heapUsed + m.external);
}, 20);

const temp = await openTempStore();
try {
  // Generated page by page, as a pipeline would receive them, so RSS reflects the writer.
  const page = (i: number): MessageRow[] =>
    realisticMessages(Math.min(unitSize, total - i), {
      seed: i + 1,
      start: Date.UTC(2024, 10, 1) + i * 1000,
      firstId: 3_876_235_366_388_000_000n + BigInt(i),
    });
  const sample = realisticMessages(1000, { seed: 7 });
  const json = sample.reduce((n, r) => n + Buffer.byteLength(JSON.stringify(r)), 0);
  console.log(`rows ${total}, avg JSONEachRow ${Math.round(json / 1000)} B per message`);

  const baseRss = process.memoryUsage().rss;
  const writer = new SinkWriter(temp.store, silent, { maxBytes });
  const flushTimes: number[] = [];
  const lookupTimes: number[] = [];
  let lastFlushes = 0;
  const t0 = performance.now();
  for (let i = 0; i < total; i += unitSize) {
    await writer.add({
      output: { messages: page(i), events: [], deadLetters: [], recalls: [] },
      cursor: { source: 'bench', stream: 'main', cursor: `page-${i / unitSize}` },
    });
    if (writer.stats.flushes !== lastFlushes) {
      lastFlushes = writer.stats.flushes;
      flushTimes.push(writer.stats.lastFlushMs);
      lookupTimes.push(writer.stats.lastLookupMs);
    }
  }
  await writer.flush();
  flushTimes.push(writer.stats.lastFlushMs);
  lookupTimes.push(writer.stats.lastLookupMs);
  const elapsed = performance.now() - t0;
  const avg = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  console.log(
    `insert: ${total} rows in ${(elapsed / 1000).toFixed(2)} s = ${Math.round(total / (elapsed / 1000))} rows/s; ` +
      `${writer.stats.flushes} flushes, flush avg ${avg(flushTimes).toFixed(0)} ms (max ${Math.max(...flushTimes).toFixed(0)}), ` +
      `dedup lookup avg ${avg(lookupTimes).toFixed(0)} ms (max ${Math.max(...lookupTimes).toFixed(0)})`,
  );

  // Replay after a crash: the same first 20 000 rows again, all already stored.
  const replay = new SinkWriter(temp.store, silent);
  const t1 = performance.now();
  for (let i = 0; i < 20_000; i += unitSize) {
    await replay.add({
      output: { messages: page(i), events: [], deadLetters: [], recalls: [] },
      cursor: { source: 'bench', stream: 'main', cursor: `page-${i / unitSize}` },
    });
  }
  await replay.close();
  const replayMs = performance.now() - t1;
  console.log(
    `replay: 20000 duplicate rows in ${replayMs.toFixed(0)} ms, lookup ${replay.stats.lastLookupMs.toFixed(0)} ms, ` +
      `duplicates dropped ${replay.stats.duplicates.messages}, written ${replay.stats.written.messages}`,
  );
  const [count] = await temp.store.query<{ c: string }>('SELECT count() AS c FROM messages');
  console.log(
    `stored rows: ${count?.c}; RSS after open+migrate ${(baseRss / 1e6).toFixed(0)} MB, peak RSS ${(peakRss / 1e6).toFixed(0)} MB, ` +
      `peak JS heap+external ${(peakHeap / 1e6).toFixed(0)} MB`,
  );
  await writer.close();
} finally {
  clearInterval(sampler);
  await temp.dispose();
}
