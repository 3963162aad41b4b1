/**
 * End-to-end benchmark of the distributed mode: simulator pages → ingest process → Kafka →
 * transform process → sink process (embedded chDB), on the broker of `KAFKA_BROKERS`
 * (e.g. `scripts/kafka.sh start` on this machine). Reports messages/s from the first request to
 * every consumer group committed, and the peak RSS of each process.
 *
 * The run fails (throws, no rate reported) when a role's process exits before the groups have
 * committed everything (the others are killed at once), when one does not exit 0 after SIGTERM,
 * or when the store holds other counts of messages and events than the simulator released.
 */
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { pino } from 'pino';
import { stringify } from 'yaml';

import { createKafka } from '../src/kafka/client.ts';
import { fetchLag } from '../src/kafka/metrics.ts';
import { topicNames } from '../src/kafka/topics.ts';
import { transformedTypes } from '../src/kafka/transform.ts';
import { simulatorSources, startSimulator, type SimulatorAccountInput } from '../src/simulate/index.ts';
import { describeExit, failIfAny, killAll, stopAll, untilDone, watch, type Watched } from './children.ts';
import { cpuSeconds, expectedCounts, prerender, childNodeArgs } from './e2e.ts';

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const BIN = join(ROOT, 'bin', 'msgpipe.js');

export interface KafkaBenchResult {
  readonly messages: number;
  readonly seconds: number;
  readonly messagesPerSec: number;
  /** Rows in `messages` after the run; the run fails unless equal to the simulator's count. */
  readonly storedMessages: number;
  readonly storedEvents: number;
  readonly peakRssMb: Readonly<Record<'ingest' | 'transform' | 'sink', number>>;
  /** CPU seconds (user + system, all threads) of each role's process until the clock stopped. */
  readonly cpuSeconds: Readonly<Record<'ingest' | 'transform' | 'sink', number>>;
}

function accounts(perAccount: number): SimulatorAccountInput[] {
  const common = { messages: perAccount, sessions: 2000, pageSize: 500, pageSizeVariation: 0, duplicateRate: 0.01 };
  return [
    { provider: 'gewe', id: 'g1', token: 'tg', appId: 'wx_g1', seed: 'bench-g1', ...common },
    { provider: 'videosapi', id: 'v1', token: 'tv', appId: 'wx_v1', seed: 'bench-v1', ...common },
    { provider: 'syncfinder', id: 's1', token: 'ts', wId: 'w-s1', seed: 'bench-s1', ...common },
  ] as SimulatorAccountInput[];
}

async function peakRssMb(pid: number | undefined): Promise<number> {
  const status = await readFile(`/proc/${String(pid)}/status`, 'utf8').catch(() => '');
  const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
  return hwm ? Number(hwm[1]) / 1024 : 0;
}

/** Runs the distributed benchmark with `total` messages over three accounts. */
export async function runKafkaBench(total = 1_000_000): Promise<KafkaBenchResult> {
  const brokers = (process.env['KAFKA_BROKERS'] ?? '').split(',').filter((b) => b !== '');
  if (brokers.length === 0) throw new Error('set KAFKA_BROKERS (e.g. after scripts/kafka.sh start: KAFKA_BROKERS=127.0.0.1:9092)');
  const dir = await mkdtemp(join(tmpdir(), 'msgpipe-bench-kafka-'));
  const list = accounts(Math.ceil(total / 3));
  const sim = await startSimulator({ accounts: list });
  prerender(sim, list);
  const prefix = `bench-${randomUUID().slice(0, 8)}`;
  const kafka = createKafka({ brokers, clientId: 'msgpipe-bench', logger: pino({ level: 'silent' }) });
  const admin = kafka.admin();
  const children: Watched[] = [];
  try {
    const configFile = join(dir, 'msgpipe.yaml');
    await writeFile(
      configFile,
      stringify({
        tenants: [{ id: 'bench', secret: 'bench-secret' }],
        sources: simulatorSources(list, sim.url).map((source) => ({ ...source, tenant: 'bench', pollIntervalMs: 50 })),
        clickhouse: { path: join(dir, 'ch') },
        kafka: { brokers, topicPrefix: prefix, partitions: Number(process.env['MSGPIPE_BENCH_PARTITIONS'] ?? 6) },
        metrics: { enabled: false },
        log: { level: 'warn' },
      }),
    );
    await execFileAsync(process.execPath, [BIN, 'migrate', '--config', configFile], { cwd: ROOT });
    await admin.connect();
    const topics = topicNames(prefix);
    const groups = [
      { groupId: `${prefix}.transform`, topics: transformedTypes().map((t) => topics.raw(t)) },
      { groupId: `${prefix}.sink`, topics: [topics.messages, topics.events, topics.dlq] },
    ];
    const roles = ['sink', 'transform', 'ingest'] as const;
    const started = performance.now();
    for (const role of roles) {
      children.push(
        watch(
          `the ${role} process (msgpipe run --role ${role})`,
          spawn(process.execPath, [...childNodeArgs(), BIN, 'run', '--config', configFile, '--role', role], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'] }),
        ),
      );
    }
    const peak = { sink: 0, transform: 0, ingest: 0 };
    const cpu = { sink: 0, transform: 0, ingest: 0 };
    const sample = async (): Promise<void> => {
      for (const [i, role] of roles.entries()) {
        const pid = children[i]?.child.pid ?? 0;
        peak[role] = Math.max(peak[role], await peakRssMb(pid));
        cpu[role] = Math.max(cpu[role], await cpuSeconds(pid));
      }
    };
    const ids = list.map((a) => a.id ?? '');
    let lastLagCheck = 0;
    const drained = async (): Promise<boolean> => {
      if (!ids.every((id) => sim.received(id).at(-1)?.outcome === 'caught_up')) return false;
      if (performance.now() - lastLagCheck < 500) return false;
      lastLagCheck = performance.now();
      let lag = 0;
      for (const g of groups) for (const p of await fetchLag(admin, g).catch(() => [{ lag: 1 }])) lag += p.lag;
      return lag === 0;
    };
    await untilDone(drained, children, 'the consumer groups had committed everything', sample);
    const seconds = (performance.now() - started) / 1000;
    await sample();
    const exits = await stopAll(children);
    const problems = exits.flatMap((exit, i) =>
      exit.code === 0 && exit.killedAfterMs === undefined ? [] : [`after SIGTERM, ${describeExit(children[i]!.name, exit)}`],
    );
    const count = async (table: string): Promise<number> => {
      const { stdout } = await execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, '--format', 'jsonl', `SELECT count() AS n FROM ${table}`], {
        cwd: ROOT,
        env: { ...process.env, MSGPIPE_LOG_LEVEL: 'warn' },
      });
      return Number((JSON.parse(stdout) as { n: string }).n);
    };
    const storedMessages = await count('messages');
    const storedEvents = await count('events');
    const expected = expectedCounts(sim, ids);
    if (storedMessages !== expected.messages) {
      problems.push(`messages holds ${String(storedMessages)} rows, the simulator released ${String(expected.messages)} (${String(expected.messages - storedMessages)} missing)`);
    }
    if (storedEvents !== expected.events) {
      problems.push(`events holds ${String(storedEvents)} rows, ${String(expected.events)} expected (${String(expected.events - storedEvents)} missing)`);
    }
    failIfAny('kafka', problems);
    return {
      messages: expected.released,
      seconds,
      messagesPerSec: expected.released / seconds,
      storedMessages,
      storedEvents,
      peakRssMb: peak,
      cpuSeconds: cpu,
    };
  } finally {
    // An early exit of one role (or a failure here) leaves no process running on the store.
    await killAll(children);
    // The run's topics hold about 0.7 GB per 300k messages in the broker's log directory: drop them.
    const own = (await admin.listTopics().catch(() => [] as string[])).filter((t) => t.startsWith(`${prefix}.`));
    if (own.length > 0) await admin.deleteTopics({ topics: own }).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  }
}
