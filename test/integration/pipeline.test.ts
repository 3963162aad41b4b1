/**
 * Simulator → `msgpipe run` (a real child process) → embedded chDB, checked with `msgpipe sql`.
 */
import { describe, expect, it } from 'vitest';

import type { SimulatorAccountInput } from '../../src/simulate/index.ts';
import { startSimulator, type SimulatorHandle } from '../../src/simulate/index.ts';
import { expectExactContents } from '../helpers/contents.ts';
import { type MsgpipeProcess, sql, startMsgpipe, waitFor, withTempDir, writeConfig } from '../helpers/msgpipe.ts';

const TENANT = 'corp1';

function accounts(messages: number, extra: Partial<SimulatorAccountInput> = {}): SimulatorAccountInput[] {
  const common = { messages, sessions: 40, pageSize: 50, duplicateRate: 0.05, ...extra };
  return [
    { provider: 'gewe', id: 'g1', token: 'tok-g', appId: 'wx_app_g1', seed: 'g1', ...common },
    { provider: 'videosapi', id: 'v1', token: 'tok-v', appId: 'wx_app_v1', seed: 'v1', ...common },
    { provider: 'syncfinder', id: 's1', token: 'tok-s', wId: 'w-s1', seed: 's1', ...common },
  ] as SimulatorAccountInput[];
}

/** `workers`: transform threads (`transform.workers`); the tests name it so both ways run on any machine. */
function pipelineConfig(dir: string, baseUrl: string, workers: number): unknown {
  return {
    tenants: [{ id: TENANT, secret: 'test-secret' }],
    sources: [
      { type: 'gewe', name: 'g1', tenant: TENANT, baseUrl, token: 'tok-g', appId: 'wx_app_g1', pollIntervalMs: 100 },
      { type: 'videosapi', name: 'v1', tenant: TENANT, baseUrl, token: 'tok-v', appId: 'wx_app_v1', pollIntervalMs: 100 },
      { type: 'syncfinder', name: 's1', tenant: TENANT, baseUrl, token: 'tok-s', wId: 'w-s1', pollIntervalMs: 100 },
    ],
    clickhouse: { path: `${dir}/ch`, database: 'msgpipe' },
    sink: { maxAgeMs: 200 },
    transform: { workers },
    // `run` starts the query API too; any free port, so parallel runs never collide.
    query: { port: 0 },
    log: { level: 'info' },
  };
}

const IDS = ['g1', 'v1', 's1'] as const;

/** True once every account's latest request (after the first `since[id]` ones) was answered "caught up". */
function caughtUp(sim: SimulatorHandle, since: Readonly<Record<string, number>> = {}): boolean {
  return IDS.every((id) => {
    const received = sim.received(id);
    return received.length > (since[id] ?? 0) && received.at(-1)?.outcome === 'caught_up';
  });
}

function requestCounts(sim: SimulatorHandle): Record<string, number> {
  return Object.fromEntries(IDS.map((id) => [id, sim.received(id).length]));
}

async function stopGracefully(proc: MsgpipeProcess): Promise<void> {
  proc.child.kill('SIGTERM');
  const code = await proc.exited;
  if (code !== 0) throw new Error(`msgpipe exited with ${String(code)}\n${proc.stderr().slice(-4000)}`);
}

describe('embedded pipeline', () => {
  it('stores every kind exactly once and resumes from the stored keyBuff', async () => {
    await withTempDir('pipeline', async (dir) => {
      const sim = await startSimulator({ accounts: accounts(400) });
      try {
        const configFile = await writeConfig(dir, pipelineConfig(dir, sim.url, 0));
        const first = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => caughtUp(sim), 60_000, 'the pipeline to catch up');
        await stopGracefully(first);

        await expectExactContents(configFile, sim, IDS);
        // Every kind of the formats reference arrived, under its DESIGN name.
        const kinds = await sql<{ msg_type: string }>(configFile, 'SELECT DISTINCT msg_type FROM messages');
        const expectedKinds = new Set(IDS.flatMap((id) => sim.expected(id).flatMap((m) => (m.designType ? [m.designType] : []))));
        expect(new Set(kinds.map((k) => k.msg_type))).toEqual(expectedKinds);
        expect(expectedKinds.size).toBeGreaterThanOrEqual(18);
        // Provider duplicates reached the pipeline and were stored once.
        expect(IDS.some((id) => sim.received(id).some((r) => r.duplicates > 0))).toBe(true);

        // The stored cursor is the last keyBuff the provider handed out.
        const cursors = await sql<{ source: string; cursor: string }>(configFile, 'SELECT source, argMax(cursor, updated_at) AS cursor FROM cursors GROUP BY source');
        for (const id of IDS) {
          const lastPage = sim.received(id).filter((r) => r.outcome === 'page').at(-1)!;
          expect(cursors.find((c) => c.source === id)?.cursor).toBe(lastPage.returnedKeyBuff);
        }

        // A restart asks each provider for exactly the stored keyBuff, not "".
        const before = requestCounts(sim);
        const second = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => IDS.every((id) => sim.received(id).length > before[id]!), 30_000, 'the restarted pipeline to poll');
        await stopGracefully(second);
        for (const id of IDS) {
          const resumed = sim.received(id)[before[id]!]!;
          expect(resumed.keyBuff).toBe(cursors.find((c) => c.source === id)?.cursor);
        }
        await expectExactContents(configFile, sim, IDS);
      } finally {
        await sim.close();
      }
    });
  });

  it('loses nothing with 20% 5xx and 5% malformed pages', async () => {
    await withTempDir('faults', async (dir) => {
      const sim = await startSimulator({ accounts: accounts(300), faults: { errorRate: 0.2, malformedRate: 0.05 } });
      try {
        const configFile = await writeConfig(dir, pipelineConfig(dir, sim.url, 0));
        const proc = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => caughtUp(sim), 120_000, 'the pipeline to catch up through faults');
        await stopGracefully(proc);
        expect(IDS.some((id) => sim.received(id).some((r) => r.outcome === 'error'))).toBe(true);
        await expectExactContents(configFile, sim, IDS);
        const malformed = IDS.reduce((n, id) => n + sim.received(id).filter((r) => r.outcome === 'malformed').length, 0);
        const [pageLetters] = await sql<{ n: string }>(configFile, "SELECT count() AS n FROM dead_letters WHERE stage = 'ingest'");
        expect(malformed).toBeGreaterThan(0);
        expect(Number(pageLetters!.n)).toBeGreaterThan(0);
        expect(Number(pageLetters!.n)).toBeLessThanOrEqual(malformed);
      } finally {
        await sim.close();
      }
    });
  });

  it('survives kill -9 at random moments while 50k messages flow, storing exactly the upstream messages (transform in a worker thread)', async () => {
    await withTempDir('crash', async (dir) => {
      const sim = await startSimulator({ accounts: accounts(16_700, { pageSize: 50, sessions: 200, faults: { latencyMs: 40 } }) });
      try {
        const configFile = await writeConfig(dir, pipelineConfig(dir, sim.url, 1));
        let kills = 0;
        for (let i = 0; i < 20 && kills < 10; i++) {
          const started = requestCounts(sim);
          const proc = startMsgpipe(['run', '--config', configFile], { MSGPIPE_LOG_LEVEL: 'warn' });
          // Once it is fetching pages, let it work for a random while, then kill it hard.
          await waitFor(() => IDS.some((id) => sim.received(id).length > started[id]! + 1), 30_000, 'the pipeline to poll');
          await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 800)));
          proc.child.kill('SIGKILL');
          await proc.exited;
          if (!caughtUp(sim)) kills++;
        }
        expect(kills).toBeGreaterThanOrEqual(10);
        const since = requestCounts(sim);
        const last = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => caughtUp(sim, since), 180_000, 'the last run to catch up');
        await stopGracefully(last);
        const [totals] = await sql<{ n: string; distinct: string }>(
          configFile,
          'SELECT count() AS n, uniqExact(source, msgid) AS distinct FROM messages',
        );
        const upstream = IDS.reduce((n, id) => n + sim.expected(id).filter((m) => m.destination === 'messages').length, 0);
        expect(upstream).toBeGreaterThan(45_000);
        expect(Number(totals!.n)).toBe(upstream);
        expect(Number(totals!.distinct)).toBe(upstream);
        // A kill between the messages part of an insert and the view's part is repaired by the
        // journal at the next start: sessions count every message once.
        expect(await sql(configFile, 'SELECT sum(msg_count) AS n FROM sessions')).toEqual([{ n: String(upstream) }]);
        await expectExactContents(configFile, sim, IDS);
      } finally {
        await sim.close();
      }
    });
  });
  it('drains on a repeated SIGTERM: everything fetched is stored and its cursor saved (transform in a worker thread)', async () => {
    await withTempDir('drain', async (dir) => {
      const sim = await startSimulator({ accounts: accounts(5000, { pageSize: 100, faults: { latencyMs: 30 } }) });
      try {
        const configFile = await writeConfig(dir, pipelineConfig(dir, sim.url, 1));
        const proc = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => IDS.every((id) => sim.received(id).filter((r) => r.outcome === 'page').length >= 3), 30_000, 'pages to flow');
        // Ctrl-C signals the group and npx forwards it again: three signals must not cut the drain short.
        const stopAt = Date.now();
        proc.child.kill('SIGTERM');
        proc.child.kill('SIGINT');
        proc.child.kill('SIGTERM');
        expect(await proc.exited).toBe(0);
        expect(Date.now() - stopAt).toBeLessThan(30_000);
        expect(proc.stderr()).toContain('Already stopping');
        expect(caughtUp(sim)).toBe(false);
        const cursors = await sql<{ source: string; cursor: string }>(
          configFile,
          'SELECT source, argMax(cursor, updated_at) AS cursor FROM cursors GROUP BY source',
        );
        const stored = await sql<{ source: string; msgid: string }>(configFile, 'SELECT source, msgid FROM messages');
        for (const id of IDS) {
          const pages = sim.received(id).filter((r) => r.outcome === 'page');
          // The saved cursor is that of the last page the pipeline received: the provider's last
          // answer, or the one before it when the last answer was still in flight at the stop
          // (an abandoned request was never fetched, so its cursor must not be saved).
          const saved = cursors.find((c) => c.source === id)?.cursor;
          expect([pages.at(-1)!.returnedKeyBuff, pages.at(-2)!.returnedKeyBuff]).toContain(saved);
          const ids = new Set(stored.filter((r) => r.source === id).map((r) => r.msgid));
          expect(ids.size).toBeGreaterThan(0);
        }
        // Everything behind the saved cursors was stored: a run from them reads only what
        // follows, and the store ends up with exactly the upstream messages, none missing.
        const since = requestCounts(sim);
        const again = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => caughtUp(sim, since), 120_000, 'the next run to catch up');
        await stopGracefully(again);
        await expectExactContents(configFile, sim, IDS);
      } finally {
        await sim.close();
      }
    });
  });

  it('drains when its log reader is gone (a stop also ends `| tee`: stderr writes fail with EPIPE)', async () => {
    await withTempDir('drain-epipe', async (dir) => {
      const sim = await startSimulator({ accounts: accounts(5000, { pageSize: 100, faults: { latencyMs: 30 } }) });
      try {
        const configFile = await writeConfig(dir, pipelineConfig(dir, sim.url, 0));
        const proc = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => IDS.every((id) => sim.received(id).filter((r) => r.outcome === 'page').length >= 3), 30_000, 'pages to flow');
        // The reader of the process's stderr goes away, then the stop arrives: its "Stopping"
        // line and every later one fail to write.
        proc.child.stderr?.destroy();
        await new Promise((resolve) => setTimeout(resolve, 100));
        proc.child.kill('SIGTERM');
        expect(await proc.exited).toBe(0);
        const cursors = await sql<{ source: string; cursor: string }>(configFile, 'SELECT source, argMax(cursor, updated_at) AS cursor FROM cursors GROUP BY source');
        for (const id of IDS) {
          const pages = sim.received(id).filter((r) => r.outcome === 'page');
          expect([pages.at(-1)!.returnedKeyBuff, pages.at(-2)!.returnedKeyBuff]).toContain(cursors.find((c) => c.source === id)?.cursor);
        }
      } finally {
        await sim.close();
      }
    });
  });
});
