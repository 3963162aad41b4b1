/**
 * The distributed mode survives kill -9 of any role process at random moments and a broker
 * restart while 50k messages flow: at the end nothing is missing and nothing is doubled.
 *
 * The test runs a broker of its own (scripts/kafka.sh on a free port, fresh state) so it can
 * restart it; the shared development broker is never touched.
 */
import { execFile } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { Kafka } from '../../../src/kafka/client.ts';
import { startSimulator, type SimulatorHandle } from '../../../src/simulate/index.ts';
import { testKafka, uniqueTopic } from '../../helpers/kafka.ts';
import { type MsgpipeProcess, ROOT, sql, waitFor, withTempDir, writeConfig } from '../../helpers/msgpipe.ts';
import { accounts, caughtUp, expectExactContents, IDS, kafkaConfig, pipelineLag, startRole, stopGracefully } from './support.ts';

const execFileAsync = promisify(execFile);
const SCRIPT = join(ROOT, 'scripts', 'kafka.sh');
const PER_ACCOUNT = 16_700;

/** A port where it and the next one (the controller) are free. */
async function freePortPair(): Promise<number> {
  const free = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const server = createServer();
      server.once('error', () => { resolve(false); });
      server.listen(port, '127.0.0.1', () => server.close(() => { resolve(true); }));
    });
  for (let port = 29_200 + 2 * Math.floor(Math.random() * 300); port < 29_900; port += 2) {
    if ((await free(port)) && (await free(port + 1))) return port;
  }
  throw new Error('no free port pair for the test broker');
}

let port = 0;
let env: NodeJS.ProcessEnv = {};
let stateDir = '';

async function broker(command: 'start' | 'stop'): Promise<void> {
  await execFileAsync('bash', [SCRIPT, command], { env, cwd: ROOT, timeout: 180_000 });
}

beforeAll(async () => {
  port = await freePortPair();
  env = { ...process.env, KAFKA_PORT: String(port), KAFKA_HEAP: '320m' };
  stateDir = join(process.env['KAFKA_CACHE_DIR'] ?? join(ROOT, '.cache', 'kafka'), `broker-${port}`);
  await rm(stateDir, { recursive: true, force: true });
  await broker('start');
}, 240_000);

afterAll(async () => {
  await broker('stop').catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
}, 120_000);

function released(sim: SimulatorHandle): boolean {
  return IDS.every((id) => sim.expected(id).length >= PER_ACCOUNT);
}

describe('distributed pipeline under failures', () => {
  it('survives kill -9 of ingest, transform and sink processes and a broker restart with exact contents', async () => {
    await withTempDir('kafka-crash', async (dir) => {
      const brokers = [`127.0.0.1:${port}`];
      const kafka: Kafka = testKafka(brokers);
      const prefix = uniqueTopic('crash');
      // Messages are released over ~45 s so the kills land while they flow.
      const sim = await startSimulator({ accounts: accounts(PER_ACCOUNT, { sessions: 200, ratePerSec: 360, backlog: 500 }) });
      try {
        const configFile = await writeConfig(dir, kafkaConfig(dir, sim.url, brokers, prefix, { sessionTimeoutMs: 6000, consumers: 1 }));
        const roles = ['ingest', 'transform', 'transform', 'sink'] as const;
        const procs: MsgpipeProcess[] = roles.map((role) => startRole(configFile, role));
        const started = Date.now();
        let kills = 0;
        let brokerRestarted = false;
        const killed: Record<string, number> = { ingest: 0, transform: 0, sink: 0 };
        try {
          while (kills < 10 || !brokerRestarted) {
            await new Promise((r) => setTimeout(r, 1000 + Math.floor(Math.random() * 1500)));
            if (kills === 3 && !brokerRestarted) {
              const b0 = Date.now();
              await broker('stop');
              await new Promise((r) => setTimeout(r, 1000));
              await broker('start');
              brokerRestarted = true;
              if (process.env['MSGPIPE_TEST_TIMING'] === '1') console.log({ brokerRestartMs: Date.now() - b0, at: Date.now() - started });
              continue;
            }
            // Every kill must land while messages still flow.
            expect(released(sim)).toBe(false);
            const i = Math.floor(Math.random() * procs.length);
            const victim = procs[i]!;
            victim.child.kill('SIGKILL');
            await victim.exited;
            killed[roles[i]!]! += 1;
            kills++;
            procs[i] = startRole(configFile, roles[i]!);
          }
          const t0 = Date.now();
          await waitFor(() => released(sim) && caughtUp(sim), 240_000, 'the sources to catch up');
          const t1 = Date.now();
          await waitFor(async () => (await pipelineLag(kafka, prefix)) === 0, 180_000, 'the consumer groups to commit everything');
          if (process.env['MSGPIPE_TEST_TIMING'] === '1') console.log({ killPhaseEndToCaughtUp: t1 - t0, caughtUpToLagZero: Date.now() - t1, sinceStart: Date.now() - started });
        } catch (err) {
          for (const p of procs) p.child.kill('SIGKILL');
          throw new Error(`${String(err)}\n${procs.map((p, i) => `${roles[i]!} exit=${String(p.child.exitCode)}\n${p.stderr().slice(-3000)}`).join('\n---\n')}`, { cause: err });
        }
        for (const p of procs) await stopGracefully(p);

        expect(kills).toBeGreaterThanOrEqual(10);
        expect(Object.values(killed).filter((n) => n > 0).length).toBeGreaterThanOrEqual(2);
        const [totals] = await sql<{ n: string; distinct: string }>(configFile, 'SELECT count() AS n, uniqExact(source, msgid) AS distinct FROM messages');
        const upstream = IDS.reduce((n, id) => n + sim.expected(id).filter((m) => m.destination === 'messages').length, 0);
        expect(upstream).toBeGreaterThan(45_000);
        expect(Number(totals!.n)).toBe(upstream);
        expect(Number(totals!.distinct)).toBe(upstream);
        await expectExactContents(configFile, sim);
      } finally {
        await sim.close();
      }
    });
    // On a loaded 2-core machine the catch-up after the kills takes minutes (MSGPIPE_TEST_TIMING=1 prints the phases).
  }, 480_000);
});
