/**
 * Simulator → `msgpipe run` (a real child process) with its operations listener: the series
 * scraped over HTTP move with the data, and the health endpoints follow the process's life.
 */
import { describe, expect, it } from 'vitest';

import { startSimulator, type SimulatorAccountInput, type SimulatorHandle } from '../../src/simulate/index.ts';
import { listenerUrl, sql, startMsgpipe, waitFor, withTempDir, writeConfig } from '../helpers/msgpipe.ts';
import { parseMetrics, type Sample, sampleValue, sumSamples } from '../helpers/metrics.ts';

const TENANT = 'corp1';
const IDS = ['g1', 'v1', 's1'] as const;

function accounts(messages: number): SimulatorAccountInput[] {
  const common = { messages, sessions: 20, pageSize: 50, duplicateRate: 0.05 };
  return [
    // Malformed pages on one account only: its dead letters must show up, the others' not.
    { provider: 'gewe', id: 'g1', token: 'tok-g', appId: 'wx_app_g1', seed: 'g1', ...common, faults: { malformedRate: 0.2 } },
    { provider: 'videosapi', id: 'v1', token: 'tok-v', appId: 'wx_app_v1', seed: 'v1', ...common },
    { provider: 'syncfinder', id: 's1', token: 'tok-s', wId: 'w-s1', seed: 's1', ...common },
  ] as SimulatorAccountInput[];
}

function config(dir: string, baseUrl: string): unknown {
  return {
    tenants: [{ id: TENANT, secret: 'test-secret' }],
    sources: [
      { type: 'gewe', name: 'g1', tenant: TENANT, baseUrl, token: 'tok-g', appId: 'wx_app_g1', pollIntervalMs: 100 },
      { type: 'videosapi', name: 'v1', tenant: TENANT, baseUrl, token: 'tok-v', appId: 'wx_app_v1', pollIntervalMs: 100 },
      { type: 'syncfinder', name: 's1', tenant: TENANT, baseUrl, token: 'tok-s', wId: 'w-s1', pollIntervalMs: 100 },
    ],
    clickhouse: { path: `${dir}/ch`, database: 'msgpipe' },
    sink: { maxAgeMs: 200 },
    // Port 0: other test runs share the machine; the bound address is read from the log.
    metrics: { host: '127.0.0.1', port: 0 },
    query: { port: 0 },
  };
}

async function scrape(url: string): Promise<Sample[]> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain');
  return parseMetrics(await res.text());
}

function served(sim: SimulatorHandle, id: string): number {
  return sim.received(id).reduce((n, r) => n + (r.outcome === 'page' ? r.items : 0), 0);
}

function caughtUp(sim: SimulatorHandle): boolean {
  return IDS.every((id) => sim.received(id).at(-1)?.outcome === 'caught_up');
}

describe('operations listener of msgpipe run', () => {
  it('serves series that move with the data, and health that follows start and drain', async () => {
    await withTempDir('ops', async (dir) => {
      const sim = await startSimulator({ accounts: accounts(300) });
      try {
        const configFile = await writeConfig(dir, config(dir, sim.url));
        const proc = startMsgpipe(['run', '--config', configFile]);
        try {
          await waitFor(() => listenerUrl(proc) !== undefined, 60_000, 'the operations listener');
          const url = listenerUrl(proc)!;
          expect((await fetch(`${url}/healthz`)).status).toBe(200);
          await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, 60_000, '/readyz to say ready');
          expect(await (await fetch(`${url}/readyz`)).json()).toEqual({ status: 'ready', waiting: [] });

          await waitFor(() => caughtUp(sim), 120_000, 'the pipeline to catch up');
          // The sources keep polling after they caught up, and a malformed answer would add a dead
          // letter after the scrape below: heal g1 and wait for a clean answer after the heal.
          sim.clearFaults('g1');
          const healedAfter = sim.received('g1').at(-1)?.sequence ?? -1;
          await waitFor(
            () => sim.received('g1').some((r) => r.sequence > healedAfter && r.outcome === 'caught_up'),
            60_000,
            'a clean poll of g1 after the heal',
          );
          // Everything served is read; wait until the sink has stored it all (queue empty, no cursor pending).
          let samples: Sample[] = [];
          // Polls go on while the test looks: the simulator logs a request once answered, the
          // counter counts it before it is sent, so bracket the scrape with the simulator's log.
          const answeredBefore = new Map<string, number>();
          const answeredAfter = new Map<string, number>();
          await waitFor(
            async () => {
              for (const id of IDS) answeredBefore.set(id, sim.received(id).length);
              samples = await scrape(url);
              for (const id of IDS) answeredAfter.set(id, sim.received(id).length);
              return (
                sampleValue(samples, 'msgpipe_sink_queue_rows') === 0 &&
                IDS.every((id) => sampleValue(samples, 'msgpipe_source_records_total', { source: id }) === served(sim, id))
              );
            },
            60_000,
            'the source record counters to reach what the simulator served',
          );
          for (const id of IDS) {
            expect(served(sim, id)).toBeGreaterThan(0);
            expect(sampleValue(samples, 'msgpipe_source_records_total', { source: id })).toBe(served(sim, id));
            // Every request answered before the scrape was counted; at most one more (in flight).
            const polls = sampleValue(samples, 'msgpipe_source_polls_total', { source: id });
            expect(polls).toBeGreaterThanOrEqual(answeredBefore.get(id)!);
            expect(polls).toBeLessThanOrEqual(answeredAfter.get(id)! + 1);
            expect(sampleValue(samples, 'msgpipe_source_parked', { source: id })).toBe(0);
            expect(sampleValue(samples, 'msgpipe_source_cursor_age_seconds', { source: id })).toBeGreaterThanOrEqual(0);
            expect(sampleValue(samples, 'msgpipe_source_records_total', { source: id, source_type: sim.accounts().find((a) => a.id === id)!.provider })).toBe(served(sim, id));
          }
          // The transform saw every record the sources read.
          for (const id of IDS) {
            expect(sampleValue(samples, 'msgpipe_transform_records_total', { source: id })).toBe(served(sim, id));
          }
          expect(sampleValue(samples, 'msgpipe_sink_insert_duration_seconds_count')).toBeGreaterThan(0);
          expect(sampleValue(samples, 'msgpipe_sink_batch_rows_count')).toBe(sampleValue(samples, 'msgpipe_sink_batches_total'));
          // Malformed pages of g1 became ingest dead letters and were counted; errors too.
          const malformed = sim.received('g1').filter((r) => r.outcome === 'malformed').length;
          expect(malformed).toBeGreaterThan(0);
          const ingestLetters = sumSamples(samples, 'msgpipe_dead_letters_total', { stage: 'ingest' });
          expect(ingestLetters).toBeGreaterThan(0);
          expect(ingestLetters).toBeLessThanOrEqual(malformed);
          expect(sampleValue(samples, 'msgpipe_source_errors_total', { source: 'g1' })).toBeGreaterThanOrEqual(malformed);
          expect(sampleValue(samples, 'msgpipe_source_errors_total', { source: 'v1' })).toBe(0);
          // Node.js process series are there too.
          expect(sampleValue(samples, 'process_resident_memory_bytes')).toBeGreaterThan(0);

          // Drain: once the process took the signal, /readyz never says ready again, until the
          // listener is gone. (A drain this small may finish before any probe lands; the
          // in-process test in test/unit/ops pins the 503 during a drain.)
          proc.child.kill('SIGTERM');
          await waitFor(() => proc.stderr().includes('Stopping: draining in-flight work.'), 30_000, 'the stop signal to be taken');
          const statuses: number[] = [];
          for (;;) {
            try {
              statuses.push((await fetch(`${url}/readyz`)).status);
            } catch {
              break; // the listener closed after the drain
            }
          }
          expect(statuses.filter((s) => s !== 503)).toEqual([]);
          expect(await proc.exited).toBe(0);

          // What the counters said was stored is what the store holds.
          const [counts] = await sql<{ messages: string; events: string; dead_letters: string }>(
            configFile,
            'SELECT (SELECT count() FROM messages) AS messages, (SELECT count() FROM events) AS events, (SELECT count() FROM dead_letters) AS dead_letters',
          );
          expect(sampleValue(samples, 'msgpipe_sink_rows_total', { table: 'messages' })).toBe(Number(counts!.messages));
          expect(sampleValue(samples, 'msgpipe_sink_rows_total', { table: 'events' })).toBe(Number(counts!.events));
          expect(sampleValue(samples, 'msgpipe_sink_rows_total', { table: 'dead_letters' })).toBe(Number(counts!.dead_letters));
        } finally {
          if (proc.child.exitCode === null && proc.child.signalCode === null) proc.child.kill('SIGKILL');
          await proc.exited;
        }
      } finally {
        await sim.close();
      }
    });
  });
});
