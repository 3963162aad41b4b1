/**
 * Query API benchmark on the embedded store: 10M messages in 100k sessions (100 staff × 1000
 * sessions × 100 messages), generated inside chDB with `INSERT … SELECT FROM numbers()` (the
 * `sessions_agg` materialized view fills as it would from the sink), the query service running
 * in this process over that store as `msgpipe run` runs it, and autocannon in a child process
 * driving 50 concurrent connections per endpoint with signed URLs over random conversations.
 *
 * Sizes: MSGPIPE_BENCH_QUERY_MESSAGES (10M), MSGPIPE_BENCH_QUERY_SECONDS per endpoint (20),
 * MSGPIPE_BENCH_QUERY_CONNECTIONS (50).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { pino } from 'pino';

import { parseConfig } from '../src/core/config.ts';
import { signUrl, startQueryService } from '../src/query/index.ts';
import { openStore, type Store } from '../src/sink/clickhouse.ts';
import { migrate } from '../src/sink/migrate.ts';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));

const STAFF = 100;
const PER_SESSION = 100;
const SECRET = 'bench-secret';
const PHRASES = [
  '您好，请问这款产品还有货吗？',
  '这是我们最新的产品介绍，请您查看',
  '好的，谢谢',
  '今天天气很好，我们下午发货',
  '请把地址发给我一下',
  '价格可以再优惠一点吗',
  '收到，马上处理',
  '视频号直播什么时候开始？',
  'iPhone15手机壳还有现货吗',
  '好的👍收到',
  '明天上午十点发货',
  'VIP客户打九折',
];
const KEYWORDS = ['产品介绍', '发货', '现货', '优惠', '直播', '地址', 'iPhone15', '九折', '收到'];

export interface LoadResult {
  readonly endpoint: string;
  readonly requests: number;
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p95Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly errors: number;
}

export interface QueryBenchResult {
  readonly messages: number;
  readonly sessions: number;
  readonly generateSeconds: number;
  readonly mergeSeconds: number;
  readonly parts: number;
  readonly connections: number;
  readonly seconds: number;
  /** The engine's floor: what `SELECT 1` costs alone and when `connections` of them arrive at once. */
  readonly floor: EngineFloor;
  readonly results: readonly LoadResult[];
}

export interface EngineFloor {
  /** Median of 200 `SELECT 1` one after another, ms. */
  readonly select1Ms: number;
  /** p95 latency of `connections` `SELECT 1` sent at once (chDB runs them one after another), ms. */
  readonly select1ConcurrentP95Ms: number;
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}

/** Measures the per-query floor of `store` (see {@link EngineFloor}). */
async function engineFloor(store: Store, connections: number): Promise<EngineFloor> {
  const serial: number[] = [];
  for (let i = 0; i < 200; i++) {
    const t = performance.now();
    await store.query('SELECT 1 AS one');
    serial.push(performance.now() - t);
  }
  const concurrent: number[] = [];
  for (let round = 0; round < 5; round++) {
    const t = performance.now();
    await Promise.all(Array.from({ length: connections }, () => store.query('SELECT 1 AS one').then(() => { concurrent.push(performance.now() - t); })));
  }
  serial.sort((a, b) => a - b);
  concurrent.sort((a, b) => a - b);
  return { select1Ms: percentile(serial, 50), select1ConcurrentP95Ms: percentile(concurrent, 95) };
}

function pick<T>(items: readonly T[]): T {
  return items[Math.floor(Math.random() * items.length)]!;
}

/** Signed paths for one endpoint over random conversations. */
function paths(endpoint: string, sessions: number, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const s = Math.floor(Math.random() * sessions);
    const staff = `staff-${s % STAFF}`;
    const peer = `peer-${s}`;
    let query: Record<string, string>;
    if (endpoint === 'sessions') {
      query = { ext_staff_id: staff, session_type: 'external', page: String(1 + Math.floor(Math.random() * 5)), page_size: '20' };
    } else if (endpoint === 'session-msgs') {
      query = { ext_staff_id: staff, receiver_id: peer, page: '1', page_size: '20' };
      // Half of the reads page back from a message in the middle of the conversation (keyset).
      if (i % 2 === 1) query['min_id'] = String(4_000_000_000_000_000_000n + BigInt(s * PER_SESSION + 50));
    } else {
      query = { keyword: pick(KEYWORDS), ext_staff_id: staff, ext_peer_id: peer, page: '1', page_size: '20' };
    }
    out.push(signUrl(`/api/v1/chat-msg/${endpoint}?${new URLSearchParams(query).toString()}`, SECRET, { tenant: 'bench' }));
  }
  return out;
}

export async function runQueryBench(): Promise<QueryBenchResult> {
  const total = Number(process.env['MSGPIPE_BENCH_QUERY_MESSAGES'] ?? 10_000_000);
  const seconds = Number(process.env['MSGPIPE_BENCH_QUERY_SECONDS'] ?? 20);
  const connections = Number(process.env['MSGPIPE_BENCH_QUERY_CONNECTIONS'] ?? 50);
  const sessions = Math.floor(total / PER_SESSION);
  const dir = await mkdtemp(join(tmpdir(), 'msgpipe-bench-query-'));
  const log = pino({ level: 'warn' });
  const store = await openStore({ path: join(dir, 'ch'), database: 'msgpipe' }, log);
  try {
    await migrate(store, log);
    const started = Date.now();
    const chunk = 1_000_000;
    const phrases = `[${PHRASES.map((p) => `'${p}'`).join(', ')}]`;
    for (let offset = 0; offset < total; offset += chunk) {
      const count = Math.min(chunk, total - offset);
      // s = session, i = message within it; 100 hours of traffic, sessions interleaved in time.
      await store.command(`
        INSERT INTO messages (tenant, source, source_type, staff_id, msgid, session_id, session_type, action, from_id, tolist,
          peer_id, is_sender, msg_time, seq, msg_type, wx_msg_type, content_text, content, peer_name, peer_avatar, ingested_at)
        SELECT 'bench', 'bench-gewe', 'gewe', staff, toString(4000000000000000000 + number), concat('sess-', toString(s)), 'external',
          'send', if(number % 2 = 0, peer, staff), [if(number % 2 = 0, staff, peer)], peer, toUInt8(number % 2),
          toDateTime64('2024-06-01 00:00:00', 3, 'UTC') + toIntervalSecond(i * 3600 + s % 3600), 100000 + number, 'text', 1,
          text, concat('{"content":"', text, '"}'), concat('客户', toString(s)), '', now64(3)
        FROM (
          SELECT number, intDiv(number, ${PER_SESSION}) AS s, number % ${PER_SESSION} AS i,
            concat('staff-', toString(s % ${STAFF})) AS staff, concat('peer-', toString(s)) AS peer,
            concat(arrayElement(${phrases}, (cityHash64(number) % ${PHRASES.length}) + 1), ' ', toString(number % 997)) AS text
          FROM numbers(${offset}, ${count})
        )`);
      process.stderr.write(`query bench: ${offset + count} messages stored\n`);
    }
    const generateSeconds = (Date.now() - started) / 1000;
    // Measure the steady state, not the background merges that follow a bulk load.
    const merging = Date.now();
    await store.command('OPTIMIZE TABLE messages FINAL');
    await store.command('OPTIMIZE TABLE sessions_agg FINAL');
    const mergeSeconds = (Date.now() - merging) / 1000;
    const [parts] = await store.query<{ parts: string }>("SELECT count() AS parts FROM system.parts WHERE active AND table = 'messages'");

    const floor = await engineFloor(store, connections);
    process.stderr.write(`query bench: engine floor ${JSON.stringify(floor)}\n`);

    const config = parseConfig({ tenants: [{ id: 'bench', secret: SECRET }], query: { port: 0, rateLimit: 1_000_000 } });
    const service = await startQueryService({ store, config, log, sync: { trigger: () => 0 } });
    const results: LoadResult[] = [];
    try {
      for (const endpoint of ['sessions', 'session-msgs', 'search']) {
        const file = join(dir, `${endpoint}.json`);
        await writeFile(file, JSON.stringify(paths(endpoint, sessions, 5000)));
        const { stdout } = await execFileAsync(
          process.execPath,
          ['--import', 'tsx', join(ROOT, 'bench', 'query-load.ts'), service.url, file, String(connections), String(seconds)],
          { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
        );
        results.push({ endpoint, ...(JSON.parse(stdout) as Omit<LoadResult, 'endpoint'>) });
        process.stderr.write(`query bench: ${JSON.stringify(results.at(-1))}\n`);
      }
    } finally {
      await service.close();
    }
    return { messages: total, sessions, generateSeconds, mergeSeconds, parts: Number(parts?.parts ?? 0), connections, seconds, floor, results };
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}
