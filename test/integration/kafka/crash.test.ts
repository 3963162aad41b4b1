/**
 * The distributed mode survives kill -9 of any role process at random moments, graceful stops
 * by a repeated SIGTERM, and two broker restarts (a controlled shutdown, then a SIGKILL) while
 * 50k messages flow: at the end nothing is missing and nothing is doubled.
 *
 * The test runs a broker of its own (scripts/kafka.sh on a free port, fresh state) so it can
 * restart it; the shared development broker is never touched.
 *
 * Every wait is on a condition with a bounded deadline, and a failure says where the pipeline
 * stood: which processes were alive, what each consumer group still had to commit, how far the
 * sources had got, and the last log lines of every process. `MSGPIPE_TEST_TIMING=1` prints the
 * phases of a passing run.
 */
import { describe, expect, it } from 'vitest';

import type { Kafka } from '../../../src/kafka/client.ts';
import { topicNames } from '../../../src/kafka/topics.ts';
import { startSimulator, type SimulatorHandle } from '../../../src/simulate/index.ts';
import { groupLag, testKafka, uniqueTopic, useOwnBroker } from '../../helpers/kafka.ts';
import { type MsgpipeProcess, sql, withTempDir, writeConfig } from '../../helpers/msgpipe.ts';
import { expectExactContents } from '../../helpers/contents.ts';
import { accounts, caughtUp, IDS, kafkaConfig, pipelineLag, requestCounts, startRole } from './support.ts';

const PER_ACCOUNT = 16_700;
const KILLS = 10;
/** Messages of each account held back until the kills and stops are done. */
const HOLD_BACK = 2000;
/** Graceful stops (a repeated SIGTERM) while messages flow, besides the kills. */
const STOPS = 3;
/** How long a stopped role may take: its drain deadline is 30 s (src/core/lifecycle.ts). */
const STOP_DEADLINE_MS = 35_000;
/**
 * A graceful stop goes to a process running for at least this long, so that it has fetched work
 * to drain (one signalled while loading stops at once: test/integration/early-signal.test.ts).
 */
const STOP_AFTER_RUNNING_MS = 5000;
/**
 * The broker restarts after this many kills: first a controlled shutdown (`kafka.sh stop`), then
 * a SIGKILL, after which the broker no longer knows the group members.
 */
const BROKER_RESTARTS: readonly { readonly afterKills: number; readonly how: 'stop' | 'kill' }[] = [
  { afterKills: 3, how: 'stop' },
  { afterKills: 6, how: 'kill' },
];

const own = useOwnBroker();

const timing = process.env['MSGPIPE_TEST_TIMING'] === '1';

function released(sim: SimulatorHandle): boolean {
  return IDS.every((id) => sim.expected(id).length >= PER_ACCOUNT);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

type Role = 'ingest' | 'transform' | 'sink';

/** One slot of the pipeline: the role and the process now running it. */
interface Slot {
  readonly role: Role;
  proc: MsgpipeProcess;
  /** When `proc` started (Date.now()). */
  startedAt: number;
  /** Log lines of the processes this slot ran before (killed ones), last ones only. */
  history: string;
}

/** Where the pipeline stands, for a failure message. */
async function diagnose(kafka: Kafka, prefix: string, sim: SimulatorHandle, slots: readonly Slot[]): Promise<string> {
  const t = topicNames(prefix);
  const lag = async (group: string, topics: string[]): Promise<string> =>
    String(await groupLag(kafka, group, topics).catch((err: unknown) => `unknown (${String(err)})`));
  const lines = [
    `transform group lag: ${await lag(`${prefix}.transform`, [t.raw('gewe'), t.raw('videosapi'), t.raw('syncfinder')])}`,
    `sink group lag: ${await lag(`${prefix}.sink`, [t.messages, t.events, t.dlq])}`,
    `sources: ${IDS.map((id) => {
      const received = sim.received(id);
      return `${id} released ${sim.expected(id).length}/${PER_ACCOUNT}, ${received.length} requests, last ${received.at(-1)?.outcome ?? 'none'}`;
    }).join('; ')}`,
    ...slots.map((s) => `${s.role} pid ${String(s.proc.child.pid)}: ${alive(s.proc) ? 'alive' : `exited ${String(s.proc.child.exitCode ?? s.proc.child.signalCode)}`}`),
  ];
  for (const s of slots) {
    if (s.history !== '') lines.push(`--- ${s.role}, the last process killed in this slot (last lines):\n${s.history}`);
    lines.push(`--- ${s.role} pid ${String(s.proc.child.pid)} log (last lines):\n${s.proc.stderr().slice(-2500)}`);
  }
  return lines.join('\n');
}

function alive(proc: MsgpipeProcess): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

/**
 * Polls `check` until it holds; throws with where the pipeline stands past `timeoutMs`, or at
 * once when a role process exited by itself (only the test kills them, and it restarts them).
 */
async function until(what: string, timeoutMs: number, slots: readonly Slot[], check: () => boolean | Promise<boolean>, explain: () => Promise<string>): Promise<number> {
  const started = Date.now();
  while (!(await check())) {
    const dead = slots.find((s) => !alive(s.proc));
    if (dead !== undefined) throw new Error(`The ${dead.role} process exited by itself while waiting for ${what}.\n${await explain()}`);
    if (Date.now() - started > timeoutMs) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}.\n${await explain()}`);
    await sleep(250);
  }
  return Date.now() - started;
}

/**
 * SIGTERM, then the exit code; a process still running after `timeoutMs` is killed and reported.
 * `repeated`: a SIGINT and another SIGTERM follow at once, as when a terminal, systemd or docker
 * signals the whole process group and npx forwards the signal once more; the drain must go on.
 */
async function stopWithin(slot: Slot, timeoutMs: number, repeated = false): Promise<void> {
  const { proc } = slot;
  if (!alive(proc)) {
    throw new Error(`The ${slot.role} process had already exited (${String(proc.child.exitCode ?? proc.child.signalCode)}) before the stop.\n${proc.stderr().slice(-4000)}`);
  }
  proc.child.kill('SIGTERM');
  if (repeated) {
    // Back to back, as a process group receives them. Sent later, a signal can reach a process
    // whose drain was instant and which is already tearing down, when Node no longer handles
    // signals: it would die of it, with nothing left undone (seen in CI after a broker restart).
    proc.child.kill('SIGINT');
    proc.child.kill('SIGTERM');
  }
  const code = await Promise.race([proc.exited, sleep(timeoutMs).then(() => 'still running' as const)]);
  if (code === 'still running') {
    proc.child.kill('SIGKILL');
    throw new Error(`The ${slot.role} process (pid ${String(proc.child.pid)}) did not exit within ${timeoutMs} ms of SIGTERM.\n${proc.stderr().slice(-4000)}`);
  }
  if (code !== 0) throw new Error(`The ${slot.role} process exited with ${String(code)} on SIGTERM.\n${proc.stderr().slice(-4000)}`);
}

describe('distributed pipeline under failures', () => {
  it('survives kill -9 of ingest, transform and sink processes, graceful stops and broker restarts (stopped, then killed) with exact contents', async () => {
    await withTempDir('kafka-crash', async (dir) => {
      const brokers = own.brokers;
      const kafka: Kafka = testKafka(brokers);
      const prefix = uniqueTopic('crash');
      // The test releases the messages itself, 200 per second per account, and holds the last
      // HOLD_BACK of each account until the kill phase ends: every kill and stop lands while
      // messages flow, however long the phase takes on a slow machine (~35 s quiet, ~50 s
      // loaded). The simulator's own clock releases next to nothing (one message per 1000 s).
      const sim = await startSimulator({ accounts: accounts(PER_ACCOUNT, { sessions: 200, ratePerSec: 0.001, backlog: 500 }) });
      let fed = 500;
      const feeder = setInterval(() => {
        const step = Math.min(20, PER_ACCOUNT - HOLD_BACK - fed);
        if (step <= 0) return;
        for (const id of IDS) sim.releaseMessages(id, step);
        fed += step;
      }, 100);
      const slots: Slot[] = [];
      try {
        const configFile = await writeConfig(dir, kafkaConfig(dir, sim.url, brokers, prefix, { sessionTimeoutMs: 6000, consumers: 1 }));
        for (const role of ['ingest', 'transform', 'transform', 'sink'] as const) slots.push({ role, proc: startRole(configFile, role), startedAt: Date.now(), history: '' });
        const explain = (): Promise<string> => diagnose(kafka, prefix, sim, slots);
        const started = Date.now();
        const phases: Record<string, number> = {};
        const killed: Record<Role, number> = { ingest: 0, transform: 0, sink: 0 };
        const stopped: Record<Role, number> = { ingest: 0, transform: 0, sink: 0 };
        let kills = 0;
        const turns: typeof slots = [];
        let stops = 0;
        let brokerRestarts = 0;
        try {
          while (kills < KILLS || stops < STOPS || brokerRestarts < BROKER_RESTARTS.length) {
            await sleep(1000 + Math.floor(Math.random() * 1500));
            const restart = BROKER_RESTARTS[brokerRestarts];
            if (restart !== undefined && kills >= restart.afterKills) {
              const b0 = Date.now();
              await (restart.how === 'stop' ? own.stop() : own.kill());
              await sleep(1000);
              await own.start();
              brokerRestarts += 1;
              phases[`broker${restart.how === 'stop' ? 'Stop' : 'Kill'}RestartMs`] = Date.now() - b0;
              continue;
            }
            const dead = slots.find((s) => !alive(s.proc));
            if (dead !== undefined) throw new Error(`The ${dead.role} process exited by itself during the kills.\n${await explain()}`);
            // Every kill must land while messages still flow.
            expect(released(sim), 'the simulator released every message before the last kill').toBe(false);
            // After the 2nd, 5th and 8th kill, a graceful stop instead: the role drains what it
            // fetched (offsets committed, cursor saved) and exits 0 within its deadline.
            const settled = slots.filter((s) => Date.now() - s.startedAt >= STOP_AFTER_RUNNING_MS);
            if (stops < STOPS && kills % 3 === 2 && kills > 3 * stops && settled.length > 0) {
              const slot = settled[Math.floor(Math.random() * settled.length)]!;
              const t0 = Date.now();
              await stopWithin(slot, STOP_DEADLINE_MS, true);
              phases['longestStopMs'] = Math.max(phases['longestStopMs'] ?? 0, Date.now() - t0);
              slot.history = slot.proc.stderr().slice(-1000);
              stopped[slot.role] += 1;
              stops++;
              slot.proc = startRole(configFile, slot.role);
              slot.startedAt = Date.now();
              continue;
            }
            // Every process in turn, each round in a random order: each role is killed at least
            // twice in 10 kills, at random moments.
            if (turns.length === 0) turns.push(...[...slots].sort(() => Math.random() - 0.5));
            const slot = turns.shift()!;
            slot.proc.child.kill('SIGKILL');
            await slot.proc.exited;
            slot.history = slot.proc.stderr().slice(-1000);
            killed[slot.role] += 1;
            kills++;
            slot.proc = startRole(configFile, slot.role);
            slot.startedAt = Date.now();
          }
          phases['killPhaseMs'] = Date.now() - started;
          clearInterval(feeder);
          for (const id of IDS) sim.releaseMessages(id, PER_ACCOUNT);
          // Caught up means a request answered after this release found nothing new: an answer
          // from before it says nothing about the messages released now.
          const afterRelease = requestCounts(sim);
          // Deadlines far above a run on a loaded 2-core machine, so only a pipeline that stops
          // moving fails here; the failure message says where it stood.
          phases['toCaughtUpMs'] = await until('the sources to release everything and ingest to catch up', 300_000, slots, () => released(sim) && caughtUp(sim, afterRelease), explain);
          phases['toLagZeroMs'] = await until('the consumer groups to commit everything', 300_000, slots, async () => (await pipelineLag(kafka, prefix).catch(() => -1)) === 0, explain);
        } catch (err) {
          for (const s of slots) s.proc.child.kill('SIGKILL');
          throw err;
        }
        const s0 = Date.now();
        // SIGTERM drains within the 30 s drain deadline of the process (src/core/lifecycle.ts).
        await Promise.all(slots.map((s) => stopWithin(s, 60_000)));
        phases['stopMs'] = Date.now() - s0;

        expect(kills).toBeGreaterThanOrEqual(KILLS);
        expect(Math.min(...Object.values(killed))).toBeGreaterThanOrEqual(2);
        const [totals] = await sql<{ n: string; distinct: string }>(configFile, 'SELECT count() AS n, uniqExact(source, msgid) AS distinct FROM messages');
        const upstream = IDS.reduce((n, id) => n + sim.expected(id).filter((m) => m.destination === 'messages').length, 0);
        expect(upstream).toBeGreaterThan(45_000);
        expect(Number(totals!.n)).toBe(upstream);
        expect(Number(totals!.distinct)).toBe(upstream);
        // A sink killed between an insert's messages part and its view part: the journal sends the
        // insert again at the next start, so sessions count every message once.
        expect(await sql(configFile, 'SELECT sum(msg_count) AS n FROM sessions')).toEqual([{ n: String(upstream) }]);
        await expectExactContents(configFile, sim, IDS);
        phases['totalMs'] = Date.now() - started;
        if (timing) console.log({ ...phases, killed, stopped });
      } finally {
        clearInterval(feeder);
        for (const s of slots) if (alive(s.proc)) s.proc.child.kill('SIGKILL');
        await sim.close();
      }
    });
  }, 900_000);
});
