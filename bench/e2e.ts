/**
 * End-to-end benchmark on the embedded store: simulator pages → `msgpipe run` (a child process)
 * → rows queryable in chDB. Reports messages/s and the pipeline process's peak RSS, and beside
 * it, in the same run, the ClickHouse-only baseline: the same raw items as JSON lines loaded
 * into msgpipe's own migrated `messages` table in chDB (its indexes and `sessions_mv` included),
 * the columns extracted by ClickHouse's functions alone (bench/baseline-child.ts). Both rates
 * count the same messages: the distinct ones the simulator released, re-sent duplicates not.
 *
 * The run fails (throws {@link BenchFailure}, no rate reported) when the pipeline process exits
 * before every account is caught up, does not exit 0 after SIGTERM (70: the drain deadline cut
 * work off), or stored other counts of messages and events than the simulator released.
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { stringify } from 'yaml';

import { itemSpans } from '../src/core/json.ts';
import { FINDER_PROVIDERS } from '../src/ingest/registry.ts';
import { simulatorSources, startSimulator, type SimulatorAccountInput, type SimulatorHandle } from '../src/simulate/index.ts';
import type { BaselineAccount } from './baseline-child.ts';
import { BenchFailure, describeExit, failIfAny, killAll, stopAll, untilDone, watch, type ChildExit, type Watched } from './children.ts';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'msgpipe.js');

export interface E2eResult {
  readonly messages: number;
  readonly seconds: number;
  readonly messagesPerSec: number;
  readonly peakRssMb: number;
  /** CPU seconds (user + system) of the pipeline process, all its threads. */
  readonly pipelineCpuSeconds: number;
  /** CPU seconds of this process during the run: the simulator serving pages. */
  readonly simulatorCpuSeconds: number;
  /** Rows in `messages` and `events` after the run; the run fails unless equal to expectedRows. */
  readonly storedRows: number;
  /** Messages and events msgpipe should have stored of what the simulator released ({@link expectedCounts}). */
  readonly expectedRows: number;
  /** Raw items the baseline loaded (the messages, events, dropped items and re-sent duplicates). */
  readonly baselineItems: number;
  readonly baselineSeconds: number;
  /** `messages` (the same count as messagesPerSec) / baselineSeconds. */
  readonly baselineMessagesPerSec: number;
  readonly ratioToBaseline: number;
}

function accounts(perAccount: number): SimulatorAccountInput[] {
  const common = { messages: perAccount, sessions: 2000, pageSize: 500, pageSizeVariation: 0, duplicateRate: 0.01 };
  return [
    { provider: 'gewe', id: 'g1', token: 'tg', appId: 'wx_g1', seed: 'bench-g1', ...common },
    { provider: 'videosapi', id: 'v1', token: 'tv', appId: 'wx_v1', seed: 'bench-v1', ...common },
    { provider: 'syncfinder', id: 's1', token: 'ts', wId: 'w-s1', seed: 'bench-s1', ...common },
  ] as SimulatorAccountInput[];
}

async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  return hwm ? Number(hwm[1]) / 1024 : 0;
}

/** utime + stime of a process in seconds (its threads included), from /proc/<pid>/stat. */
export async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields 14 and 15 of stat(5); the slice starts at field 3. Clock ticks are 100 per second on Linux.
  return (Number(fields[11] ?? 0) + Number(fields[12] ?? 0)) / 100;
}

async function msgpipeSql(configFile: string, query: string): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, '--format', 'jsonl', query], {
    cwd: ROOT,
    env: { ...process.env, MSGPIPE_LOG_LEVEL: 'warn' },
  });
  return stdout;
}

/**
 * Node flags for a benchmarked child: `MSGPIPE_BENCH_PROFILE=<dir>` writes its V8 CPU profile
 * there, and `MSGPIPE_BENCH_NODE_ARGS` adds flags of its own, space separated (also the V8 flags
 * that `NODE_OPTIONS` refuses, such as `--heap-growing-percent=100`).
 */
export function childNodeArgs(): string[] {
  const dir = process.env['MSGPIPE_BENCH_PROFILE'];
  const extra = (process.env['MSGPIPE_BENCH_NODE_ARGS'] ?? '').split(' ').filter((arg) => arg !== '');
  return [...(dir ? ['--cpu-prof', '--cpu-prof-dir', dir] : []), ...extra];
}

/**
 * Serializes the simulated traffic before the clock starts (`MSGPIPE_BENCH_PRERENDER=0` keeps
 * the old way, generating each page as it is asked for). A real provider makes its pages on its
 * own machine; here the simulator shares the two cores with the pipeline, and making the
 * messages cost about an eighth of the machine's CPU during the run.
 */
export function prerender(sim: SimulatorHandle, list: readonly SimulatorAccountInput[]): void {
  if (process.env['MSGPIPE_BENCH_PRERENDER'] === '0') return;
  for (const account of list) sim.prerender(account.id ?? '');
}

/**
 * Pulls every page of every account once and writes each account's raw items as JSON lines,
 * one file per account (the baseline gives each its source columns). Returns the item count.
 */
async function dumpItems(sim: SimulatorHandle, dir: string, manifest: string): Promise<number> {
  const newline = Buffer.from('\n');
  const accounts: BaselineAccount[] = [];
  let items = 0;
  for (const account of sim.accounts()) {
    const provider = FINDER_PROVIDERS[account.provider];
    const lines: Buffer[] = [];
    let keyBuff = '';
    for (;;) {
      const res = await fetch(account.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', [provider.authHeader]: account.token },
        body: JSON.stringify({ [provider.accountField]: account.login, keyBuff }),
      });
      const body = Buffer.from(await res.arrayBuffer());
      const spans = itemSpans(body, ['data', 'list']) ?? [];
      if (spans.length === 0) break;
      for (const s of spans) lines.push(body.subarray(s.start, s.end), newline);
      keyBuff = (JSON.parse(body.toString()) as { data: { keyBuff: string } }).data.keyBuff;
    }
    const file = join(dir, `items-${account.id}.jsonl`);
    await writeFile(file, Buffer.concat(lines));
    items += lines.length / 2;
    // The pipeline's columns of this source: its name, provider and staff id (appId / wId).
    accounts.push({ file, tenant: 'bench', source: account.id, sourceType: account.provider, staffId: account.login });
  }
  await writeFile(manifest, JSON.stringify(accounts));
  return items;
}

/** The ClickHouse-only baseline, in a fresh process holding its own chDB directory. */
async function baseline(dir: string, manifest: string): Promise<{ seconds: number; rows: number }> {
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'baseline-child.ts'), join(dir, 'baseline-ch'), manifest],
    { cwd: ROOT, maxBuffer: 1024 * 1024 },
  );
  return JSON.parse(stdout) as { seconds: number; rows: number };
}

/** Σ over the accounts of what msgpipe should store: the simulator's byDestination counts. */
export function expectedCounts(sim: SimulatorHandle, ids: readonly string[]): { released: number; messages: number; events: number } {
  const out = { released: 0, messages: 0, events: 0 };
  for (const id of ids) {
    const summary = sim.summary(id);
    out.released += summary.released;
    out.messages += summary.byDestination.messages;
    out.events += summary.byDestination.events;
  }
  return out;
}

/** Runs the end-to-end benchmark with `total` messages split over three accounts. */
export async function runE2eBench(total = 1_000_000): Promise<E2eResult> {
  const dir = await mkdtemp(join(tmpdir(), 'msgpipe-bench-'));
  const list = accounts(Math.ceil(total / 3));
  const sim = await startSimulator({ accounts: list });
  prerender(sim, list);
  const children: Watched[] = [];
  try {
    const configFile = join(dir, 'msgpipe.yaml');
    await writeFile(
      configFile,
      stringify({
        tenants: [{ id: 'bench', secret: 'bench-secret' }],
        sources: simulatorSources(list, sim.url).map((source) => ({ ...source, tenant: 'bench', pollIntervalMs: 50 })),
        clickhouse: { path: join(dir, 'ch') },
        // MSGPIPE_BENCH_SINK_MAX_BYTES tries other batch sizes.
        sink: { maxBytes: Number(process.env['MSGPIPE_BENCH_SINK_MAX_BYTES'] ?? 8 * 1024 * 1024) },
        // MSGPIPE_BENCH_TRANSFORM_WORKERS=0 transforms in the main thread, for comparison.
        ...(process.env['MSGPIPE_BENCH_TRANSFORM_WORKERS'] === undefined
          ? {}
          : { transform: { workers: Number(process.env['MSGPIPE_BENCH_TRANSFORM_WORKERS']) } }),
        log: { level: 'warn' },
        query: { port: 0 },
        metrics: { port: 0 },
      }),
    );
    // Migrate first so the timed run measures the pipeline, not table creation.
    await execFileAsync(process.execPath, [BIN, 'migrate', '--config', configFile], { cwd: ROOT });
    const ids = list.map((a) => a.id ?? '');
    const started = performance.now();
    const simulatorCpuStart = process.cpuUsage();
    const pipeline = watch(
      'the pipeline process (msgpipe run)',
      spawn(process.execPath, [...childNodeArgs(), BIN, 'run', '--config', configFile], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] }),
    );
    children.push(pipeline);
    const pid = pipeline.child.pid ?? 0;
    let peak = 0;
    // Sampled until the child exits (its /proc entry goes with it): off by at most one interval.
    let pipelineCpu = 0;
    const cpuWatch = setInterval(() => {
      void cpuSeconds(pid).then((s) => { pipelineCpu = Math.max(pipelineCpu, s); });
    }, 50);
    let simulatorCpu: NodeJS.CpuUsage;
    let exit: ChildExit | undefined;
    try {
      await untilDone(
        () => ids.every((id) => sim.received(id).at(-1)?.outcome === 'caught_up'),
        children,
        'every account was caught up',
        async () => { peak = Math.max(peak, await peakRssMb(pid)); },
      );
      simulatorCpu = process.cpuUsage(simulatorCpuStart);
      peak = Math.max(peak, await peakRssMb(pid));
      [exit] = await stopAll(children);
    } finally {
      clearInterval(cpuWatch);
    }
    const seconds = (performance.now() - started) / 1000;
    const problems: string[] = [];
    if (exit !== undefined && (exit.code !== 0 || exit.killedAfterMs !== undefined)) problems.push(`after SIGTERM, ${describeExit(pipeline.name, exit)}`);
    const stored = Number((JSON.parse(await msgpipeSql(configFile, 'SELECT count() AS n FROM messages')) as { n: string }).n);
    const events = Number((JSON.parse(await msgpipeSql(configFile, 'SELECT count() AS n FROM events')) as { n: string }).n);
    const expected = expectedCounts(sim, ids);
    if (stored !== expected.messages) problems.push(`messages holds ${String(stored)} rows, the simulator released ${String(expected.messages)} (${String(expected.messages - stored)} missing)`);
    if (events !== expected.events) problems.push(`events holds ${String(events)} rows, ${String(expected.events)} expected (${String(expected.events - events)} missing)`);
    failIfAny('e2e', problems);
    const messages = expected.released;
    // MSGPIPE_BENCH_BASELINE=0 skips the baseline (quicker iterations; its fields are then 0).
    let items = 0;
    let baselineSeconds = 0;
    if (process.env['MSGPIPE_BENCH_BASELINE'] !== '0') {
      const manifest = join(dir, 'baseline-accounts.json');
      items = await dumpItems(sim, dir, manifest);
      const run = await baseline(dir, manifest);
      baselineSeconds = run.seconds;
      // Optimize-on-insert folds the re-sent duplicates of each insert into one row.
      if (run.rows < expected.messages) {
        throw new BenchFailure(`e2e bench failed: the baseline stored ${String(run.rows)} rows of ${String(items)} items (${String(expected.messages)} messages expected at least)`);
      }
    }
    return {
      messages,
      seconds,
      messagesPerSec: messages / seconds,
      peakRssMb: peak,
      pipelineCpuSeconds: pipelineCpu,
      simulatorCpuSeconds: (simulatorCpu.user + simulatorCpu.system) / 1e6,
      storedRows: stored + events,
      expectedRows: expected.messages + expected.events,
      baselineItems: items,
      baselineSeconds,
      baselineMessagesPerSec: baselineSeconds === 0 ? 0 : messages / baselineSeconds,
      ratioToBaseline: baselineSeconds === 0 ? 0 : messages / seconds / (messages / baselineSeconds),
    };
  } finally {
    // An early exit of the pipeline (or a failure here) leaves nothing running or on disk.
    await killAll(children);
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  }
}
