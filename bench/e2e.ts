/**
 * End-to-end benchmark on the embedded store: simulator pages → `msgpipe run` (a child process)
 * → rows queryable in chDB. Reports messages/s and the pipeline process's peak RSS, and beside
 * it, in the same run, the ClickHouse-only baseline: the same raw items as JSON lines loaded
 * into chDB with the same columns extracted by ClickHouse's JSON functions alone.
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
  readonly storedRows: number;
  readonly baselineSeconds: number;
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

/** Pulls every page of every account once and writes the raw items as JSON lines. */
async function dumpItems(sim: SimulatorHandle, file: string): Promise<number> {
  const lines: Buffer[] = [];
  const newline = Buffer.from('\n');
  for (const account of sim.accounts()) {
    const provider = FINDER_PROVIDERS[account.provider];
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
  }
  await writeFile(file, Buffer.concat(lines));
  return lines.length / 2;
}

/** The ClickHouse-only baseline, in a fresh process holding its own chDB directory. */
async function baseline(dir: string, file: string): Promise<number> {
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'baseline-child.ts'), join(dir, 'baseline-ch'), file],
    { cwd: ROOT, maxBuffer: 1024 * 1024 },
  );
  return (JSON.parse(stdout) as { seconds: number }).seconds;
}

/** Runs the end-to-end benchmark with `total` messages split over three accounts. */
export async function runE2eBench(total = 1_000_000): Promise<E2eResult> {
  const dir = await mkdtemp(join(tmpdir(), 'msgpipe-bench-'));
  const list = accounts(Math.ceil(total / 3));
  const sim = await startSimulator({ accounts: list });
  prerender(sim, list);
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
    const child = spawn(process.execPath, [...childNodeArgs(), BIN, 'run', '--config', configFile], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
    const exited = new Promise<void>((resolve) => child.on('exit', () => { resolve(); }));
    let peak = 0;
    // Sampled until the child exits (its /proc entry goes with it): off by at most one interval.
    let pipelineCpu = 0;
    const cpuWatch = setInterval(() => {
      void cpuSeconds(child.pid ?? 0).then((s) => { pipelineCpu = Math.max(pipelineCpu, s); });
    }, 50);
    while (!ids.every((id) => sim.received(id).at(-1)?.outcome === 'caught_up')) {
      await new Promise((r) => setTimeout(r, 100));
      peak = Math.max(peak, await peakRssMb(child.pid ?? 0));
    }
    const simulatorCpu = process.cpuUsage(simulatorCpuStart);
    child.kill('SIGTERM');
    peak = Math.max(peak, await peakRssMb(child.pid ?? 0));
    await exited;
    clearInterval(cpuWatch);
    const seconds = (performance.now() - started) / 1000;
    const stored = Number((JSON.parse(await msgpipeSql(configFile, 'SELECT count() AS n FROM messages')) as { n: string }).n);
    const events = Number((JSON.parse(await msgpipeSql(configFile, 'SELECT count() AS n FROM events')) as { n: string }).n);
    const messages = ids.reduce((n, id) => n + sim.summary(id).released, 0);
    // MSGPIPE_BENCH_BASELINE=0 skips the baseline (quicker iterations; its fields are then 0).
    let items = 0;
    let baselineSeconds = 0;
    if (process.env['MSGPIPE_BENCH_BASELINE'] !== '0') {
      const itemsFile = join(dir, 'items.jsonl');
      items = await dumpItems(sim, itemsFile);
      baselineSeconds = await baseline(dir, itemsFile);
    }
    return {
      messages,
      seconds,
      messagesPerSec: messages / seconds,
      peakRssMb: peak,
      pipelineCpuSeconds: pipelineCpu,
      simulatorCpuSeconds: (simulatorCpu.user + simulatorCpu.system) / 1e6,
      storedRows: stored + events,
      baselineSeconds,
      baselineMessagesPerSec: baselineSeconds === 0 ? 0 : items / baselineSeconds,
      ratioToBaseline: baselineSeconds === 0 ? 0 : messages / seconds / (items / baselineSeconds),
    };
  } finally {
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  }
}
