/**
 * Prometheus metrics (DESIGN §8): one prom-client registry per process, the only module that
 * imports prom-client.
 *
 * Components do not count twice: sources keep {@link SourceStats} and the sink writer keeps
 * {@link SinkStats}; the series here read those objects at scrape time (collect callbacks).
 * What plain counters cannot give (histograms, dead letters by stage and code, when cursors
 * were saved) arrives through small observer objects the pipeline and the writer call
 * ({@link PipelineObserver}, {@link SinkObserver}). Every msgpipe series starts with
 * `msgpipe_`; labels are low-cardinality (source names, stages, tables, error codes — never
 * message ids or sessions). docs/operations.md lists the series and how to add one.
 */
import {
  collectDefaultMetrics,
  Counter,
  type CounterConfiguration,
  Gauge,
  type GaugeConfiguration,
  Histogram,
  type HistogramConfiguration,
  Registry,
} from 'prom-client';

import type { CursorUpdate, PipelineObserver, SinkObserver, StoredBatch } from '../core/pipeline.ts';
import type { Source } from '../ingest/source.ts';
import type { SinkStats } from '../sink/writer.ts';

export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Prefix of every msgpipe series. */
export const METRIC_PREFIX = 'msgpipe_';

/** Seconds buckets for stage latencies: 1 ms … about 1 minute. */
export const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Row-count buckets for batch sizes: 1 … 100 000. */
export const BATCH_BUCKETS = [1, 10, 50, 100, 500, 1000, 2500, 5000, 10_000, 20_000, 50_000, 100_000];

type SourceLabel = 'source' | 'source_type';

/** Records of one source transformed together, what they gave, and how long it took. */
export interface TransformedRecords {
  readonly source: string;
  readonly sourceType: string;
  readonly records: number;
  readonly messages: number;
  readonly events: number;
  /** The transform's own dead letters. */
  readonly deadLetters: number;
  readonly ms: number;
}

export interface MetricsOptions {
  /** Node.js process series (CPU, memory, event loop lag, GC). Default true. */
  readonly defaultMetrics?: boolean;
  /** Unix ms; tests replace it. */
  readonly clock?: () => number;
}

/**
 * The process's metrics. Create one per process, hand its observers to the stages, watch the
 * sources and sink stats, and serve {@link Metrics.registry} (src/ops/server.ts does).
 *
 * Adding a series elsewhere (e.g. Kafka consumer lag): call {@link Metrics.gauge},
 * {@link Metrics.counter} or {@link Metrics.histogram} with a `msgpipe_` name; they register on
 * this registry and return the prom-client object.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly clock: () => number;
  private readonly startedAt: number;
  private readonly sources: Source[] = [];
  private readonly sinks: SinkStats[] = [];
  /** source name → unix ms of the last cursor saved for it. */
  private readonly cursorSavedAt = new Map<string, number>();

  private readonly deadLetters: Counter<'stage' | 'code'>;
  private readonly batchRows: Histogram;
  private readonly insertSeconds: Histogram;
  private readonly transformRecords: Counter<SourceLabel>;
  private readonly transformRows: Counter<SourceLabel | 'table'>;
  private readonly transformSeconds: Histogram<SourceLabel>;

  /** Called by the embedded pipeline after each page is transformed. */
  readonly pipelineObserver: PipelineObserver;
  /** Called by the sink writer after each stored batch. */
  readonly sinkObserver: SinkObserver;

  constructor(options: MetricsOptions = {}) {
    this.clock = options.clock ?? Date.now;
    this.startedAt = this.clock();
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.defineSourceSeries();
    this.defineSinkSeries();

    this.deadLetters = this.counter({
      name: 'msgpipe_dead_letters_total',
      help: 'Dead letters in stored batches, by the stage that made them and the error code (a batch stored again after a crash counts again).',
      labelNames: ['stage', 'code'],
    });
    this.batchRows = this.histogram({
      name: 'msgpipe_sink_batch_rows',
      help: 'Rows per stored sink batch (messages, events, dead letters and recalls).',
      buckets: BATCH_BUCKETS,
    });
    this.insertSeconds = this.histogram({
      name: 'msgpipe_sink_insert_duration_seconds',
      help: 'Time to store one sink batch: lookups, inserts and cursor save, retries included.',
      buckets: LATENCY_BUCKETS,
    });
    this.transformRecords = this.counter({
      name: 'msgpipe_transform_records_total',
      help: 'Raw records transformed.',
      labelNames: ['source', 'source_type'],
    });
    this.transformRows = this.counter({
      name: 'msgpipe_transform_rows_total',
      help: 'Rows the transform produced, by table (messages, events, dead_letters).',
      labelNames: ['source', 'source_type', 'table'],
    });
    this.transformSeconds = this.histogram({
      name: 'msgpipe_transform_page_duration_seconds',
      help: 'Time to transform one fetched page (Kafka transform role: the records of one source in one consumed batch).',
      labelNames: ['source', 'source_type'],
      buckets: LATENCY_BUCKETS,
    });

    this.pipelineObserver = {
      transformed: (source, page, counts, ms) => {
        // Page-level (ingest) dead letters ride in the output too; count only the transform's.
        const own = Math.max(0, counts.deadLetters - page.deadLetters.length);
        this.transformed({ source: source.name, sourceType: source.origin.sourceType, records: page.records.length, ...counts, deadLetters: own, ms });
      },
    };
    this.sinkObserver = {
      stored: (batch) => { this.recordStoredBatch(batch); },
    };
  }
  /**
   * Counts records of one source transformed together (an embedded page, or a Kafka transform
   * batch's records of that source), the rows they gave, and the time it took.
   */
  transformed(t: TransformedRecords): void {
    const labels = { source: t.source, source_type: t.sourceType };
    this.transformRecords.inc(labels, t.records);
    this.transformRows.inc({ ...labels, table: 'messages' }, t.messages);
    this.transformRows.inc({ ...labels, table: 'events' }, t.events);
    this.transformRows.inc({ ...labels, table: 'dead_letters' }, t.deadLetters);
    this.transformSeconds.observe(labels, t.ms / 1000);
  }


  /** Registers a counter on this registry. */
  counter<T extends string = string>(config: Omit<CounterConfiguration<T>, 'registers'>): Counter<T> {
    return new Counter<T>({ ...config, registers: [this.registry] });
  }

  /** Registers a gauge on this registry. */
  gauge<T extends string = string>(config: Omit<GaugeConfiguration<T>, 'registers'>): Gauge<T> {
    return new Gauge<T>({ ...config, registers: [this.registry] });
  }

  /** Registers a histogram on this registry. */
  histogram<T extends string = string>(config: Omit<HistogramConfiguration<T>, 'registers'>): Histogram<T> {
    return new Histogram<T>({ ...config, registers: [this.registry] });
  }

  /** Exposes the stats of these sources (read at scrape time). */
  watchSources(sources: readonly Source[]): void {
    this.sources.push(...sources);
  }

  /** Exposes the stats of a sink writer (read at scrape time; several writers are summed). */
  watchSink(stats: SinkStats): void {
    this.sinks.push(stats);
  }

  /**
   * Notes that these cursors were saved now (the embedded sink reports this itself through
   * {@link Metrics.sinkObserver}; a Kafka ingest role calls it after its cursor write).
   */
  cursorsSaved(cursors: readonly CursorUpdate[], at: number = this.clock()): void {
    for (const c of cursors) this.cursorSavedAt.set(c.source, at);
  }

  /** The exposition text, as `GET /metrics` serves it. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  private recordStoredBatch(batch: StoredBatch): void {
    this.batchRows.observe(batch.rows);
    this.insertSeconds.observe(batch.durationMs / 1000);
    for (const d of batch.deadLetters) this.deadLetters.inc({ stage: d.stage, code: d.error_code });
    this.cursorsSaved(batch.cursors);
  }

  private defineSourceSeries(): void {
    const sources = this.sources;
    const labelsOf = (s: Source): Record<SourceLabel, string> => ({ source: s.name, source_type: s.origin.sourceType });
    const fromStats = (name: string, help: string, read: (s: Source) => number): void => {
      this.counter({
        name,
        help,
        labelNames: ['source', 'source_type'],
        collect() {
          this.reset();
          for (const s of sources) this.inc(labelsOf(s), read(s));
        },
      });
    };
    fromStats('msgpipe_source_polls_total', 'Requests sent to the provider.', (s) => s.stats.polls);
    fromStats('msgpipe_source_pages_total', 'Pages accepted from the provider.', (s) => s.stats.pages);
    fromStats('msgpipe_source_records_total', 'Upstream items read (duplicates included).', (s) => s.stats.records);
    fromStats('msgpipe_source_errors_total', 'Failed polls (transient, auth, malformed).', (s) => s.stats.errors);
    fromStats('msgpipe_source_empty_polls_total', 'Polls that returned no items.', (s) => s.stats.emptyPolls);

    this.gauge({
      name: 'msgpipe_source_parked',
      help: '1 while the account is parked because the provider refused its token.',
      labelNames: ['source', 'source_type'],
      collect() {
        this.reset();
        for (const s of sources) this.set(labelsOf(s), s.stats.parked ? 1 : 0);
      },
    });
    this.gauge({
      name: 'msgpipe_source_last_success_timestamp_seconds',
      help: 'Unix time of the last page the provider answered successfully.',
      labelNames: ['source', 'source_type'],
      collect() {
        this.reset();
        for (const s of sources) if (s.stats.lastSuccessAt !== undefined) this.set(labelsOf(s), s.stats.lastSuccessAt / 1000);
      },
    });
    const clock = this.clock;
    const startedAt = this.startedAt;
    const savedAt = this.cursorSavedAt;
    this.gauge({
      name: 'msgpipe_source_cursor_age_seconds',
      help: 'Seconds since a cursor of the source was last stored (since process start before the first).',
      labelNames: ['source', 'source_type'],
      collect() {
        this.reset();
        const now = clock();
        for (const s of sources) this.set(labelsOf(s), Math.max(0, now - (savedAt.get(s.name) ?? startedAt)) / 1000);
      },
    });
  }

  private defineSinkSeries(): void {
    const sinks = this.sinks;
    const sum = (read: (s: SinkStats) => number): number => sinks.reduce((acc, s) => acc + read(s), 0);
    const tables = ['messages', 'events', 'dead_letters'] as const;
    this.counter({
      name: 'msgpipe_sink_rows_total',
      help: 'Rows stored, by table (recalls and edits are updates of stored messages; message_edits are earlier versions of edited messages; cursors are saved positions).',
      labelNames: ['table'],
      collect() {
        this.reset();
        for (const t of tables) this.inc({ table: t }, sum((s) => s.written[t]));
        this.inc({ table: 'recalls' }, sum((s) => s.written.recalls));
        this.inc({ table: 'edits' }, sum((s) => s.written.edits));
        this.inc({ table: 'message_edits' }, sum((s) => s.written.message_edits));
        this.inc({ table: 'cursors' }, sum((s) => s.written.cursors));
      },
    });
    this.counter({
      name: 'msgpipe_sink_duplicates_total',
      help: 'Rows dropped because the same identity was in the batch or already stored.',
      labelNames: ['table'],
      collect() {
        this.reset();
        for (const t of tables) this.inc({ table: t }, sum((s) => s.duplicates[t]));
      },
    });
    this.counter({
      name: 'msgpipe_sink_batches_total',
      help: 'Sink batches stored (their cursors saved).',
      collect() {
        this.reset();
        this.inc(sum((s) => s.flushes));
      },
    });
    this.counter({
      name: 'msgpipe_sink_retries_total',
      help: 'Sink batch attempts that failed with a transient error and were retried.',
      collect() {
        this.reset();
        this.inc(sum((s) => s.retries));
      },
    });
    this.counter({
      name: 'msgpipe_sink_invalid_rows_total',
      help: 'Rows ClickHouse would refuse, stored as sink dead letters instead.',
      collect() {
        this.reset();
        this.inc(sum((s) => s.invalid));
      },
    });
    this.gauge({
      name: 'msgpipe_sink_queue_rows',
      help: 'Rows accepted by the sink and not yet stored (its queue depth).',
      collect() {
        this.set(sum((s) => s.bufferedRows));
      },
    });
  }
}
