/**
 * `npm run bench`: every benchmark of docs/benchmarks.md, printed as JSON lines. Numbers belong
 * in docs/benchmarks.md together with the machine they were measured on; no test times anything.
 *
 * `npm run bench -- transform`, `-- e2e`, `-- query` or `-- kafka` runs one; `MSGPIPE_BENCH_MESSAGES`
 * sets the e2e and kafka size, `MSGPIPE_BENCH_QUERY_MESSAGES` the query store's (bench/query.ts).
 * `-- kafka` needs `KAFKA_BROKERS` and runs the embedded e2e bench beside it for the ratio.
 */
import { cpus, totalmem } from 'node:os';

import { runE2eBench } from './e2e.ts';
import { runKafkaBench } from './kafka.ts';
import { runQueryBench } from './query.ts';
import { runTransformBench } from './transform.ts';

const only = process.argv[2];
const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? '?', memGb: Math.round(totalmem() / 2 ** 30), node: process.version };
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
  if (process.env['MSGPIPE_BENCH_EMBEDDED'] === '0') process.exit(0);
  const embedded = await runE2eBench(total);
  process.stdout.write(`${JSON.stringify({ e2e: embedded, kafkaToEmbedded: kafka.messagesPerSec / embedded.messagesPerSec })}\n`);
}
