/**
 * `msgpipe demo`: the simulators, the pipeline and an embedded store in one process, printing
 * what arrives. It writes the configuration it used to `<data>/msgpipe.yaml`, so the history
 * can be queried afterwards with `msgpipe sql --config <data>/msgpipe.yaml "…"`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import type { Logger } from 'pino';
import { stringify } from 'yaml';

import { parseConfig } from '../core/config.ts';
import { installLifecycle } from '../core/lifecycle.ts';
import { defaultSimulatorAccounts, simulatorSources, startSimulator } from '../simulate/index.ts';
import type { Store } from '../sink/clickhouse.ts';
import { openConfiguredStore, startEmbedded } from './run.ts';
import { formatRows } from './sql.ts';

export interface DemoOptions {
  readonly data: string;
  readonly port: number;
  readonly messages: number;
  readonly duration?: number;
  readonly log: Logger;
  readonly out: NodeJS.WritableStream;
}

const PROGRESS_MS = 5000;

async function summary(store: Store): Promise<string> {
  const rows = await store.query<Record<string, unknown>>(
    `SELECT msg_type, count() AS messages, countIf(recalled = 1) AS recalled, max(msg_time) AS latest
     FROM messages GROUP BY msg_type ORDER BY messages DESC`,
  );
  const [other] = await store.query<{ events: string; dead_letters: string }>(
    'SELECT (SELECT count() FROM events) AS events, (SELECT count() FROM dead_letters) AS dead_letters',
  );
  return `${formatRows(rows, 'table')}events: ${other?.events ?? '0'}, dead letters: ${other?.dead_letters ?? '0'}\n`;
}

/** Runs the demo until Ctrl-C (or `duration` seconds); returns the exit code. */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { out, log } = options;
  const dataDir = resolve(options.data);
  await mkdir(dataDir, { recursive: true });
  const accounts = defaultSimulatorAccounts({ messages: options.messages });
  const sim = await startSimulator({ port: options.port, accounts, logger: log.child({ component: 'simulate' }) });
  const lifecycle = installLifecycle({ log });
  try {
    const raw = {
      tenants: [{ id: 'demo', secret: 'demo-secret-change-me' }],
      sources: simulatorSources(accounts, sim.url).map((s) => ({ ...s, tenant: 'demo', pollIntervalMs: 500 })),
      clickhouse: { path: join(dataDir, 'clickhouse'), database: 'msgpipe' },
      sink: { maxAgeMs: 500 },
    };
    const configFile = join(dataDir, 'msgpipe.yaml');
    await writeFile(configFile, stringify(raw));
    const config = parseConfig(raw);
    out.write(
      `msgpipe demo: simulators at ${sim.url}, ${accounts.length} accounts (gewe, videosapi, syncfinder), ` +
        `store in ${dataDir}\nPress Ctrl-C to stop; everything fetched is stored first.\n\n`,
    );
    const run = await startEmbedded(config, log, lifecycle.signal);
    if (options.duration !== undefined) {
      setTimeout(() => { lifecycle.stop('--duration'); }, options.duration * 1000).unref();
    }
    const progress = setInterval(() => {
      summary(run.store).then(
        (text) => { out.write(`${new Date().toISOString()}\n${text}\n`); },
        (err: unknown) => { log.warn({ err }, 'Progress query failed.'); },
      );
    }, PROGRESS_MS);
    try {
      await run.done;
    } finally {
      clearInterval(progress);
    }
    // The pipeline closed its store after draining; read the final state afresh.
    const store = await openConfiguredStore(config, log, { migrate: false });
    let final: string;
    try {
      final = await summary(store);
    } finally {
      await store.close();
    }
    out.write(
      `\nStored so far:\n${final}\nQuery the history:\n  npx msgpipe sql --config ${configFile} ` +
        `"SELECT msg_type, count() FROM messages GROUP BY msg_type ORDER BY 2 DESC"\n` +
        `  npx msgpipe sql --config ${configFile} "SELECT msgid, content_text FROM messages WHERE hasAllTokens(content_text, '现货') LIMIT 5"\n`,
    );
    return 0;
  } finally {
    lifecycle.dispose();
    await sim.close();
  }
}
