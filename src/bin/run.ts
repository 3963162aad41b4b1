/**
 * `msgpipe run`: builds the pipeline from the configuration and runs it until a stop signal.
 */
import type { Logger } from 'pino';

import { releaseCodePages, startCodePageRelease } from '../core/code-pages.ts';
import { limitNativeHeap } from '../core/native-heap.ts';
import type { Config } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { installLifecycle } from '../core/lifecycle.ts';
import { inThreadTransformer, type PageTransformer, runEmbeddedPipeline, type SinkUnit, Wakeups } from '../core/pipeline.ts';
import { createSource } from '../ingest/registry.ts';
import { type Ops, type OpsDeps, startOps } from '../ops/server.ts';
import { type QueryService, startQueryService } from '../query/index.ts';
import { openStore, type Store } from '../sink/clickhouse.ts';
import { journalDir, journaledStore, legacyJournalFiles, replayJournal } from '../sink/journal.ts';
import { CursorStore } from '../sink/cursors.ts';
import { applyEmbeddedTableSettings } from '../sink/embedded-settings.ts';
import { migrate } from '../sink/migrate.ts';
import { type EncodedUnit, SinkWriter } from '../sink/writer.ts';
import { type DistributedRole, startDistributed } from '../kafka/roles.ts';
import { requireTransform, requireTransforms } from '../transform/registry.ts';
import { defaultTransformWorkers, TransformThreads } from '../transform/threads.ts';

/**
 * Opens the configured ClickHouse (server or embedded chDB), applying migrations if asked, and
 * with them the embedded engine's own table settings (src/sink/embedded-settings.ts). On the
 * embedded engine, migrating first recounts the sessions of the inserts a killed process left in
 * the insert journal (src/sink/journal.ts). Without migrations nothing is written to open it: the database
 * must exist (`sql` as a read-only user).
 */
export async function openConfiguredStore(config: Config, log: Logger, options: { migrate: boolean }): Promise<Store> {
  const { clickhouse } = config;
  const store = await openStore(
    {
      database: clickhouse.database,
      createDatabase: options.migrate,
      ...(clickhouse.url === undefined ? { path: clickhouse.path } : { url: clickhouse.url }),
      ...(clickhouse.username === undefined ? {} : { username: clickhouse.username }),
      ...(clickhouse.password === undefined ? {} : { password: clickhouse.password }),
    },
    log.child({ component: 'sink.store' }),
  );
  if (options.migrate) {
    try {
      // An insert a killed process left unfinished goes first: before a migration changes the
      // tables it was made for, and before any writer looks up what is stored (src/sink/journal.ts).
      if (clickhouse.url === undefined) {
        const journalLog = log.child({ component: 'sink.journal' });
        const legacy = await legacyJournalFiles(clickhouse.path);
        if (legacy.length > 0) {
          journalLog.warn(
            { files: legacy, into: journalDir(clickhouse.path, clickhouse.database) },
            'Insert journal files of an earlier build name no database and are left alone: move them into the directory of the database they were written for, and start again, to recount their sessions; or remove them and check sessions (docs/operations.md).',
          );
        }
        await replayJournal(store, journalDir(clickhouse.path, clickhouse.database), journalLog);
      }
      const migrateLog = log.child({ component: 'sink.migrate' });
      await migrate(store, migrateLog);
      await applyEmbeddedTableSettings(store, config.clickhouse.maxMergeBytes, migrateLog);
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  return store;
}

/**
 * Opens the store for a long-running process (`run`, `demo`): as {@link openConfiguredStore},
 * then, on the embedded engine, journals the inserts into `messages` (src/sink/journal.ts) and
 * releases the ~200 MB of its code that loading it left resident and that it will not run again
 * (ADR 0017). Short commands (`sql`, `migrate`) skip that.
 */
async function openRunningStore(config: Config, log: Logger): Promise<Store> {
  const opened = await openConfiguredStore(config, log, { migrate: true });
  const { path, database } = config.clickhouse;
  const store = config.clickhouse.url === undefined ? journaledStore(opened, journalDir(path, database)) : opened;
  if (config.clickhouse.url === undefined) {
    const released = releaseCodePages(log);
    if (released !== undefined) {
      log.info(
        { residentFileMb: [Math.round(released.residentBefore / 2 ** 20), Math.round(released.residentAfter / 2 ** 20)] },
        'Released the cold code pages of the embedded engine.',
      );
    }
  }
  return store;
}

/** A running embedded pipeline. */
export interface EmbeddedRun {
  readonly store: Store;
  readonly wakeups: Wakeups;
  /** The query API, when started (`query` option). */
  readonly query: QueryService | undefined;
  /** Settles when the pipeline has drained and the store is closed. */
  readonly done: Promise<void>;
}

/**
 * Opens the store, migrates it and starts every configured source (and with `query`, the query
 * API over the same store, its `POST /sync` waking the sources); stops when `signal` aborts.
 * The query API keeps answering while the pipeline drains and closes before the store.
 * With `ops`, the stages report to its metrics and its readiness learns `store` and `sources`.
 */
export async function startEmbedded(
  config: Config,
  log: Logger,
  signal: AbortSignal,
  ops?: OpsDeps,
  options: { query?: boolean } = {},
): Promise<EmbeddedRun> {
  ops?.readiness.require('store', 'sources');
  const store = await openRunningStore(config, log);
  ops?.readiness.met('store');
  const wakeups = new Wakeups();
  let query: QueryService | undefined;
  try {
    if (options.query === true) {
      query = await startQueryService({ store, config, log: log.child({ component: 'query' }), sync: wakeups, serialStore: config.clickhouse.url === undefined });
    }
  } catch (err) {
    await store.close();
    throw err;
  }
  const sink = new SinkWriter(store, log.child({ component: 'sink.writer' }), {
    ...config.sink,
    // A sink failure stops the pipeline, and the next start recounts the sessions of a kept insert.
    failureEndsProcess: true,
    ...(ops === undefined ? {} : { observer: ops.metrics.sinkObserver }),
  });
  const sources = config.sources.map((s) => createSource(s));
  ops?.metrics.watchSources(sources);
  ops?.metrics.watchSink(sink.stats);
  const done = (async () => {
    try {
      requireTransforms(sources.map((s) => s.origin.sourceType));
      const workers = config.transform.workers ?? defaultTransformWorkers();
      log.info({ transformWorkers: workers }, workers > 0 ? 'Transforming pages in worker threads.' : 'Transforming pages in the main thread.');
      const transformer: PageTransformer<SinkUnit | EncodedUnit> =
        workers > 0
          ? new TransformThreads(workers, log.child({ component: 'transform' }))
          : inThreadTransformer((page) => requireTransform(page.origin.sourceType));
      await runEmbeddedPipeline({
        sources,
        transformer,
        sink,
        cursors: new CursorStore(store),
        signal,
        log,
        wakeups,
        ...(ops === undefined ? {} : { observer: ops.metrics.pipelineObserver }),
      });
    } finally {
      try {
        await query?.close();
      } finally {
        await store.close();
      }
    }
  })();
  // runEmbeddedPipeline started every source before its first await.
  ops?.readiness.met('sources');
  return { store, wakeups, query, done };
}

/** `msgpipe run`: the whole pipeline in this process until SIGTERM/SIGINT. */
export async function runPipelineCommand(config: Config, log: Logger, roles: readonly string[]): Promise<number> {
  if (config.kafka !== undefined) return runDistributedCommand(config, log, roles as readonly DistributedRole[]);
  const missing = ['ingest', 'transform', 'sink'].filter((r) => !roles.includes(r));
  if (missing.length > 0) {
    throw new ConfigError([`--role: without kafka.brokers every stage runs in one process; ${missing.join(', ')} cannot be left out`]);
  }
  if (config.sources.length === 0) log.warn('No sources configured: nothing to poll; running until stopped.');
  return supervise(config, log, async (signal, ops) => {
    log.info({ sources: config.sources.length, roles }, 'Pipeline starting.');
    let query = roles.includes('query');
    if (query && config.tenants.length === 0) {
      log.warn('No tenants configured: the query API is not started.');
      query = false;
    }
    const run = await startEmbedded(config, log, signal, ops, { query });
    await run.done;
    log.info('Pipeline stopped; everything fetched is stored.');
  });
}

/**
 * Runs `work` under the stop signals with the operations listener, which says "not ready" from
 * the first signal on, and returns the exit code: 0 when `work` ends, else it rethrows for
 * main() (2 for a configuration problem found while starting, 1 otherwise). Either way the
 * listener closes and the lifecycle's `finish` ends the process even if a library left a handle
 * open (kafkajs can keep a broker connection after a broker restart).
 */
async function supervise(config: Config, log: Logger, work: (signal: AbortSignal, ops: Ops) => Promise<void>): Promise<number> {
  const lifecycle = installLifecycle({ log });
  let code = 1;
  limitNativeHeap(log);
  const stopRelease = startCodePageRelease(log.child({ component: 'memory' }));
  const ops = await startOps(config.metrics, log);
  lifecycle.signal.addEventListener('abort', () => { ops.readiness.drain(); }, { once: true });
  if (lifecycle.signal.aborted) ops.readiness.drain();
  // Holds the event loop while the work waits for the stop: with no source, API or listener
  // nothing else would, and Node would end the process mid-run (exit 13, the store not closed).
  const alive = setInterval(() => undefined, 2 ** 30);
  try {
    await work(lifecycle.signal, ops);
    code = 0;
    return code;
  } catch (err) {
    code = err instanceof ConfigError ? 2 : 1;
    throw err;
  } finally {
    clearInterval(alive);
    stopRelease();
    try {
      await ops.server.close();
    } finally {
      lifecycle.finish(code);
    }
  }
}

/**
 * `msgpipe run` with `kafka.brokers`: the given roles in this process, joined to the others
 * through the Kafka topics, until SIGTERM/SIGINT; each role drains before the process exits.
 */
async function runDistributedCommand(config: Config, log: Logger, allRoles: readonly DistributedRole[]): Promise<number> {
  let roles = allRoles;
  // A process whose every role would sit idle is a mistake in its configuration, not a service.
  const idle = (role: DistributedRole): boolean => (role === 'query' && config.tenants.length === 0) || (role === 'ingest' && config.sources.length === 0);
  if (roles.every(idle)) {
    const needs = roles.map((r) => (r === 'query' ? 'the query role needs a tenant' : 'the ingest role needs a source'));
    throw new ConfigError([`--role ${roles.join(',')}: nothing to run (${needs.join('; ')})`]);
  }
  if (roles.includes('query') && config.tenants.length === 0) {
    log.warn('No tenants configured: the query API is not started.');
    roles = roles.filter((r) => r !== 'query');
  }
  return supervise(config, log, async (signal, ops) => {
    log.info({ roles, brokers: config.kafka?.brokers, sources: config.sources.length }, 'Distributed pipeline starting.');
    const run = await startDistributed({
      config,
      roles,
      log,
      signal,
      openStore: () => openRunningStore(config, log),
      ops,
      // The query role: the API over the store, `POST /sync` publishing to the control topic.
      startQuery: (store, sync) => startQueryService({ store, config, log: log.child({ component: 'query' }), sync, serialStore: config.clickhouse.url === undefined }),
    });
    await run.done;
    log.info({ roles }, 'Stopped; every batch in flight was handed on and committed.');
  });
}
