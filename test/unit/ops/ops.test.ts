/**
 * The operations layer: readiness, the listener over real HTTP, series fed by the stage
 * observers, and the readiness flip of an embedded pipeline (real simulator, real chDB).
 */
import { connect, createServer } from 'node:net';

import { describe, expect, it } from 'vitest';

import { startEmbedded } from '../../../src/bin/run.ts';
import { parseConfig } from '../../../src/core/config.ts';
import type { DeadLetterRow } from '../../../src/core/types.ts';
import { Readiness } from '../../../src/ops/health.ts';
import { Metrics } from '../../../src/ops/metrics.ts';
import { newSinkStats } from '../../../src/sink/writer.ts';
import { startOps, startOpsServer } from '../../../src/ops/server.ts';
import { startSimulator } from '../../../src/simulate/index.ts';
import { parseMetrics, sampleValue, sumSamples } from '../../helpers/metrics.ts';
import { withTempDir } from '../../helpers/msgpipe.ts';
import { silent } from '../sink/helpers.ts';

const LOCAL = { enabled: true, host: '127.0.0.1', port: 0 };

function letter(stage: DeadLetterRow['stage'], code: string): DeadLetterRow {
  return {
    tenant: 't',
    source: 'g1',
    source_type: 'gewe',
    stage,
    error_code: code,
    error_message: 'bad',
    original_base64: '',
    origin_key: 'g1:x#0',
    occurred_at: 0,
  };
}

describe('Readiness', () => {
  it('is ready only when every declared condition is met, and never again once draining', () => {
    const r = new Readiness();
    expect(r.state()).toEqual({ ready: false, draining: false, waiting: [] });
    r.require('store', 'sources');
    r.met('store');
    expect(r.state()).toEqual({ ready: false, draining: false, waiting: ['sources'] });
    r.met('sources');
    expect(r.state().ready).toBe(true);
    r.drain();
    expect(r.state()).toEqual({ ready: false, draining: true, waiting: [] });
    r.met('kafka');
    expect(r.state().ready).toBe(false);
  });
});

describe('operations listener', () => {
  it('answers /healthz, /readyz and /metrics over HTTP', async () => {
    const metrics = new Metrics();
    const readiness = new Readiness().require('store');
    const server = await startOpsServer(LOCAL, { metrics, readiness }, silent);
    try {
      const url = server.url!;
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const health = await fetch(`${url}/healthz`);
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual({ status: 'ok' });

      const starting = await fetch(`${url}/readyz`);
      expect(starting.status).toBe(503);
      expect(await starting.json()).toEqual({ status: 'starting', waiting: ['store'] });
      readiness.met('store');
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      readiness.drain();
      const draining = await fetch(`${url}/readyz`);
      expect(draining.status).toBe(503);
      expect(await draining.json()).toEqual({ status: 'draining', waiting: [] });

      const res = await fetch(`${url}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
      const samples = parseMetrics(await res.text());
      expect(sampleValue(samples, 'msgpipe_sink_queue_rows')).toBe(0);
      expect(sampleValue(samples, 'nodejs_heap_size_used_bytes')).toBeGreaterThan(0);
    } finally {
      await server.close();
    }
  });

  it('closes within about a second when a client sent half a request and went silent', async () => {
    const server = await startOpsServer(LOCAL, { metrics: new Metrics({ defaultMetrics: false }), readiness: new Readiness() }, silent);
    const socket = connect(Number(new URL(server.url!).port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    socket.on('error', () => undefined);
    socket.write('GET /metrics HTTP/1.1\r\nHost: x\r\n');
    await new Promise((resolve) => setTimeout(resolve, 100));
    const started = performance.now();
    await server.close();
    // The query API's 10 s grace (CLOSE_GRACE_MS of core/close-server.ts) would follow the drain's.
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
    expect(performance.now() - started).toBeLessThan(5000);
    socket.destroy();
  }, 15_000);

  it('lets the pipeline run without a listener when the port is taken or it is disabled', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const address = blocker.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      const busy = await startOpsServer({ ...LOCAL, port }, { metrics: new Metrics(), readiness: new Readiness() }, silent);
      expect(busy.url).toBeUndefined();
      await busy.close();
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
    const off = await startOps({ ...LOCAL, enabled: false }, silent);
    expect(off.server.url).toBeUndefined();
    await off.server.close();
  });

  it('lets other modules add series to the same registry', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const lag = metrics.gauge({ name: 'msgpipe_test_consumer_lag', help: 'test', labelNames: ['topic'] });
    lag.set({ topic: 'msgpipe.messages' }, 42);
    const samples = parseMetrics(await metrics.text());
    expect(sampleValue(samples, 'msgpipe_test_consumer_lag', { topic: 'msgpipe.messages' })).toBe(42);
    expect(samples.some((s) => s.name.startsWith('nodejs_'))).toBe(false);
  });
});

describe('Metrics observers', () => {
  it('sums the sink writers\' rows per table, edits and queue depth included', async () => {
    const metrics = new Metrics({ defaultMetrics: false });
    const a = newSinkStats();
    const b = newSinkStats();
    Object.assign(a.written, { messages: 5, recalls: 1, edits: 2, message_edits: 3 });
    Object.assign(b.written, { messages: 1, message_edits: 4 });
    b.bufferedRows = 7;
    metrics.watchSink(a);
    metrics.watchSink(b);
    const samples = parseMetrics(await metrics.text());
    const rows = (table: string): number | undefined => sampleValue(samples, 'msgpipe_sink_rows_total', { table });
    expect([rows('messages'), rows('recalls'), rows('edits'), rows('message_edits')]).toEqual([6, 1, 2, 7]);
    expect(sampleValue(samples, 'msgpipe_sink_queue_rows')).toBe(7);
  });

  it('counts dead letters by stage and code, batch sizes, latency and cursor age', async () => {
    let now = 1_000_000;
    const metrics = new Metrics({ defaultMetrics: false, clock: () => now });
    const source = {
      name: 'g1',
      origin: { source: 'g1', sourceType: 'gewe', tenant: 't', staffId: 's' },
      stats: { polls: 7, pages: 3, records: 120, errors: 1, emptyPolls: 2, parked: true, lastSuccessAt: 999_000 },
      run: () => Promise.resolve(),
    } as const;
    metrics.watchSources([source]);

    now += 5000;
    let samples = parseMetrics(await metrics.text());
    const labels = { source: 'g1', source_type: 'gewe' };
    expect(sampleValue(samples, 'msgpipe_source_polls_total', labels)).toBe(7);
    expect(sampleValue(samples, 'msgpipe_source_records_total', labels)).toBe(120);
    expect(sampleValue(samples, 'msgpipe_source_empty_polls_total', labels)).toBe(2);
    expect(sampleValue(samples, 'msgpipe_source_parked', labels)).toBe(1);
    expect(sampleValue(samples, 'msgpipe_source_last_success_timestamp_seconds', labels)).toBe(999);
    // No cursor stored yet: the age counts from the start.
    expect(sampleValue(samples, 'msgpipe_source_cursor_age_seconds', labels)).toBe(5);

    metrics.sinkObserver.stored?.({
      rows: 300,
      durationMs: 40,
      deadLetters: [letter('ingest', 'MSGPIPE_ERR_MALFORMED_PAGE'), letter('transform', 'MSGPIPE_ERR_XML'), letter('transform', 'MSGPIPE_ERR_XML')],
      cursors: [{ source: 'g1', stream: 'wx', cursor: 'k1' }],
    });
    now += 2000;
    samples = parseMetrics(await metrics.text());
    expect(sampleValue(samples, 'msgpipe_dead_letters_total', { stage: 'transform', code: 'MSGPIPE_ERR_XML' })).toBe(2);
    expect(sampleValue(samples, 'msgpipe_dead_letters_total', { stage: 'ingest' })).toBe(1);
    expect(sampleValue(samples, 'msgpipe_sink_batch_rows_count')).toBe(1);
    expect(sampleValue(samples, 'msgpipe_sink_batch_rows_sum')).toBe(300);
    expect(sampleValue(samples, 'msgpipe_sink_batch_rows_bucket', { le: '500' })).toBe(1);
    expect(sampleValue(samples, 'msgpipe_sink_batch_rows_bucket', { le: '100' })).toBe(0);
    expect(sampleValue(samples, 'msgpipe_sink_insert_duration_seconds_sum')).toBeCloseTo(0.04);
    expect(sampleValue(samples, 'msgpipe_source_cursor_age_seconds', labels)).toBe(2);
    expect(sumSamples(samples, 'msgpipe_dead_letters_total')).toBe(3);
  });
});

describe('embedded pipeline readiness', () => {
  it('is ready after start, not ready from the stop signal on while it drains', async () => {
    await withTempDir('ops-unit', async (dir) => {
      const sim = await startSimulator({
        accounts: [{ provider: 'gewe', id: 'g1', token: 'tok-g', appId: 'wx_app_g1', seed: 'g1', messages: 200, pageSize: 50 }],
      });
      try {
        const config = parseConfig({
          tenants: [{ id: 't', secret: 's' }],
          sources: [{ type: 'gewe', name: 'g1', tenant: 't', baseUrl: sim.url, token: 'tok-g', appId: 'wx_app_g1', pollIntervalMs: 100 }],
          clickhouse: { path: `${dir}/ch` },
          sink: { maxAgeMs: 100 },
          metrics: LOCAL,
        });
        const ops = await startOps(config.metrics, silent);
        const stop = new AbortController();
        stop.signal.addEventListener('abort', () => { ops.readiness.drain(); }, { once: true });
        try {
          const url = ops.server.url!;
          const run = await startEmbedded(config, silent, stop.signal, ops);
          expect((await fetch(`${url}/readyz`)).status).toBe(200);
          await new Promise<void>((resolve) => {
            const check = (): void => {
              if (sim.received('g1').at(-1)?.outcome === 'caught_up') resolve();
              else setTimeout(check, 50);
            };
            check();
          });
          stop.abort(new Error('test stop'));
          // The drain is under way (run.done not awaited yet): the listener says not ready.
          const res = await fetch(`${url}/readyz`);
          expect(res.status).toBe(503);
          expect(await res.json()).toEqual({ status: 'draining', waiting: [] });
          await run.done;
          const samples = parseMetrics(await ops.metrics.text());
          const served = sim.received('g1').reduce((n, r) => n + (r.outcome === 'page' ? r.items : 0), 0);
          expect(sampleValue(samples, 'msgpipe_source_records_total', { source: 'g1' })).toBe(served);
          expect(sampleValue(samples, 'msgpipe_sink_queue_rows')).toBe(0);
          expect(sampleValue(samples, 'msgpipe_sink_rows_total', { table: 'messages' })).toBeGreaterThan(0);
        } finally {
          stop.abort();
          await ops.server.close();
        }
      } finally {
        await sim.close();
      }
    });
  }, 90_000); // opens chDB and runs a pipeline: slow when the unit files share two cores
});
