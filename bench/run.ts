/**
 * `npm run bench`: every benchmark of docs/benchmarks.md, printed as JSON lines. Numbers belong
 * in docs/benchmarks.md together with the machine they were measured on; no test times anything.
 *
 * `npm run bench -- transform`, `-- e2e`, `-- query` or `-- kafka` runs one; `MSGPIPE_BENCH_MESSAGES`
 * sets the e2e and kafka size, `MSGPIPE_BENCH_QUERY_MESSAGES` the query store's (bench/query.ts).
 * `-- kafka` needs `KAFKA_BROKERS` and runs the embedded e2e bench beside it for the ratio.
 *
 * A run that cannot be trusted (a pipeline process died or did not exit 0, rows went missing)
 * prints `bench failed: …` on stderr, no result line, and exits 1. The `bench` script builds
 * first: the e2e and kafka benches time `bin/msgpipe.js`, which runs dist/.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { BenchFailure } from './children.ts';
import { runE2eBench } from './e2e.ts';
import { runKafkaBench } from './kafka.ts';
import { runQueryBench } from './query.ts';
import { runTransformBench } from './transform.ts';

/**
 * Microseconds to create a small file where the benchmarks keep their stores (the OS temp
 * directory; `TMPDIR` moves it), after some files there were deleted, as ClickHouse deletes
 * merged parts. ClickHouse writes 10–25 files per inserted part, so this sets part of every
 * insert's cost: 15–25 µs on tmpfs, 90–450 µs on the ext4 without a journal we measured on,
 * whose inode allocator steps over recently deleted inodes (docs/benchmarks.md, session 6).
 */
async function fileCreateMicros(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'msgpipe-fs-'));
  try {
    let micros = 0;
    for (let round = 0; round < 2; round++) {
      const started = performance.now();
      for (let i = 0; i < 300; i++) writeFileSync(join(dir, `f${String(round)}-${String(i)}`), 'x');
      micros = ((performance.now() - started) * 1000) / 300;
      for (let i = 0; i < 300; i += 2) rmSync(join(dir, `f${String(round)}-${String(i)}`));
    }
    return Math.round(micros);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const only = process.argv[2];

async function main(): Promise<void> {
  const machine = {
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? '?',
    memGb: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    fileCreateMicros: await fileCreateMicros(),
  };
  process.stdout.write(`${JSON.stringify({ machine })}\n`);
  if (only === undefined || only === 'transform') {
    process.stdout.write(`${JSON.stringify({ transform: await runTransformBench({}) })}\n`);
  }
  if (only === undefined || only === 'e2e') {
    const total = Number(process.env['MSGPIPE_BENCH_MESSAGES'] ?? 1_000_000);
    process.stdout.write(`${JSON.stringify({ e2e: await runE2eBench(total) })}\n`);
  }
  if (only === undefined || only === 'query') {
    process.stdout.write(`${JSON.stringify({ query: await runQueryBench() })}\n`);
  }
  if (only === 'kafka') {
    const total = Number(process.env['MSGPIPE_BENCH_MESSAGES'] ?? 1_000_000);
    const kafka = await runKafkaBench(total);
    process.stdout.write(`${JSON.stringify({ kafka })}\n`);
    if (process.env['MSGPIPE_BENCH_EMBEDDED'] === '0') return;
    const embedded = await runE2eBench(total);
    process.stdout.write(`${JSON.stringify({ e2e: embedded, kafkaToEmbedded: kafka.messagesPerSec / embedded.messagesPerSec })}\n`);
  }
}

try {
  await main();
} catch (err) {
  // A failed run's numbers are not printed: nobody should record them.
  const message = err instanceof BenchFailure ? err.message : err instanceof Error ? (err.stack ?? err.message) : String(err);
  process.stderr.write(`bench failed: ${message}\n`);
  process.exit(1);
}
