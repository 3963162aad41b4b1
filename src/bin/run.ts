/**
 * `msgpipe run`: builds the pipeline from the configuration and runs it until a stop signal.
 */
import type { Logger } from 'pino';

import type { Config } from '../core/config.ts';
import { ConfigError } from '../core/errors.ts';
import { installLifecycle } from '../core/lifecycle.ts';
import { runEmbeddedPipeline, Wakeups } from '../core/pipeline.ts';
import { createSource } from '../ingest/registry.ts';
import { openStore, type Store } from '../sink/clickhouse.ts';
import { CursorStore } from '../sink/cursors.ts';
import { migrate } from '../sink/migrate.ts';
import { SinkWriter } from '../sink/writer.ts';
import { transformFinderItem } from '../transform/finder.ts';

/** Opens the configured ClickHouse (server or embedded chDB), applying migrations if asked. */
export async function openConfiguredStore(config: Config, log: Logger, options: { migrate: boolean }): Promise<Store> {
  const { clickhouse } = config;
  const store = await openStore(
    {
      database: clickhouse.database,
      ...(clickhouse.url === undefined ? { path: clickhouse.path } : { url: clickhouse.url }),
      ...(clickhouse.username === undefined ? {} : { username: clickhouse.username }),
      ...(clickhouse.password === undefined ? {} : { password: clickhouse.password }),
    },
    log.child({ component: 'sink.store' }),
  );
  if (options.migrate) {
    try {
      await migrate(store, log.child({ component: 'sink.migrate' }));
    } catch (err) {
      await store.close();
      throw err;
    }
  }
  return store;
}

/** A running embedded pipeline. */
export interface EmbeddedRun {
  readonly store: Store;
  readonly wakeups: Wakeups;
  /** Settles when the pipeline has drained and the store is closed. */
  readonly done: Promise<void>;
}

/** Opens the store, migrates it and starts every configured source; stops when `signal` aborts. */
export async function startEmbedded(config: Config, log: Logger, signal: AbortSignal): Promise<EmbeddedRun> {
  const store = await openConfiguredStore(config, log, { migrate: true });
  const wakeups = new Wakeups();
  const sink = new SinkWriter(store, log.child({ component: 'sink.writer' }), config.sink);
  const done = (async () => {
    try {
      await runEmbeddedPipeline({
        sources: config.sources.map((s) => createSource(s)),
        // Every source so far delivers WeChat Channels items.
        transformFor: () => transformFinderItem,
        sink,
        cursors: new CursorStore(store),
        signal,
        log,
        wakeups,
      });
    } finally {
      await store.close();
    }
  })();
  return { store, wakeups, done };
}

/** `msgpipe run`: the whole pipeline in this process until SIGTERM/SIGINT. */
export async function runPipelineCommand(config: Config, log: Logger, roles: readonly string[]): Promise<number> {
  if (config.kafka !== undefined) {
    throw new ConfigError(['kafka: the distributed mode is not available in this version; remove the kafka section to run embedded']);
  }
  if (roles.includes('query')) {
    throw new ConfigError(['--role: the query API is not available in this version; run ingest,transform,sink']);
  }
  const missing = ['ingest', 'transform', 'sink'].filter((r) => !roles.includes(r));
  if (missing.length > 0) {
    throw new ConfigError([`--role: without kafka.brokers every stage runs in one process; ${missing.join(', ')} cannot be left out`]);
  }
  if (config.sources.length === 0) log.warn('No sources configured: nothing to poll.');
  const lifecycle = installLifecycle({ log });
  try {
    log.info({ sources: config.sources.length, roles }, 'Pipeline starting.');
    const run = await startEmbedded(config, log, lifecycle.signal);
    await run.done;
    log.info('Pipeline stopped; everything fetched is stored.');
    return 0;
  } finally {
    lifecycle.dispose();
  }
}
