/**
 * `msgpipe demo`: the simulators, the pipeline, an embedded store and the query API in one
 * process, printing what arrives and signed example requests (curl) that work against it. It writes the configuration it used to `<data>/msgpipe.yaml`, so the history
 * can be queried afterwards with `msgpipe sql --config <data>/msgpipe.yaml "…"`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import type { Logger } from 'pino';
import { stringify } from 'yaml';

import { parseConfig } from '../core/config.ts';
import { installLifecycle } from '../core/lifecycle.ts';
import { limitNativeHeap } from '../core/native-heap.ts';
import { type Ops, startOps } from '../ops/server.ts';
import { API_PREFIX, sign, signUrl } from '../query/index.ts';
import { defaultSimulatorAccounts, simulatorSources, startSimulator } from '../simulate/index.ts';
import { defaultYunhuAccount, startYunhuBeside, startYunhuTraffic, yunhuSimulatorSource } from '../simulate/yunhu-demo.ts';
import type { Store } from '../sink/clickhouse.ts';
import { openConfiguredStore, startEmbedded } from './run.ts';
import { formatRows } from './sql.ts';

export interface DemoOptions {
  readonly data: string;
  readonly port: number;
  readonly messages: number;
  readonly duration?: number;
  /** Port of the query API (0 = any free port). */
  readonly queryPort: number;
  readonly log: Logger;
  readonly out: NodeJS.WritableStream;
}

const PROGRESS_MS = 5000;
const TENANT = 'demo';
const SECRET = 'demo-secret-change-me';

/** A two-character word of a stored text, for the search example (`现货` from `还有现货吗`). */
function keywordOf(text: string): string {
  return /[\u4e00-\u9fff]{2}/.exec(text)?.[0] ?? (Array.from(text.trim()).slice(0, 2).join('') || '你好');
}

/**
 * Signed curl commands for the four endpoints, built from a conversation the demo stored;
 * undefined while nothing is stored yet.
 */
export async function demoExamples(store: Store, baseUrl: string): Promise<string | undefined> {
  const [session] = await store.query<{ staff_id: string; peer_id: string; session_type: string }>(
    `SELECT staff_id, peer_id, session_type FROM sessions WHERE tenant = {tenant:String} AND msg_count >= 5
     ORDER BY msg_count DESC, session_id LIMIT 1`,
    { tenant: TENANT },
  );
  if (session === undefined) return undefined;
  const [text] = await store.query<{ content_text: string }>(
    `SELECT content_text FROM messages WHERE tenant = {tenant:String} AND staff_id = {staff:String} AND peer_id = {peer:String}
     AND msg_type = 'text' AND match(content_text, '[\\x{4e00}-\\x{9fff}]{2}') ORDER BY msg_time DESC LIMIT 1`,
    { tenant: TENANT, staff: session.staff_id, peer: session.peer_id },
  );
  const keyword = keywordOf(text?.content_text ?? '');
  const q = (path: string, params: Record<string, string>): string =>
    `  curl '${baseUrl}${signUrl(`${API_PREFIX}${path}?${new URLSearchParams(params).toString()}`, SECRET, { tenant: TENANT })}'\n`;
  const syncBody = JSON.stringify({ ext_corp_id: TENANT, signature: sign({ ext_corp_id: TENANT }, SECRET) });
  return (
    `Query API at ${baseUrl} (tenant ${TENANT}, secret ${SECRET}); signed examples:\n` +
    q('/sessions', { ext_staff_id: session.staff_id, session_type: session.session_type, page: '1', page_size: '20' }) +
    q('/session-msgs', { ext_staff_id: session.staff_id, receiver_id: session.peer_id, page: '1', page_size: '20' }) +
    q('/search', { keyword, ext_staff_id: session.staff_id, ext_peer_id: session.peer_id }) +
    `  curl -X POST -H 'content-type: application/json' -d '${syncBody}' '${baseUrl}${API_PREFIX}/sync'\n` +
    `Sign your own: npx msgpipe sign --tenant ${TENANT} --secret ${SECRET} '${API_PREFIX}/sessions?ext_staff_id=${session.staff_id}&session_type=group'\n` +
    `The API is described at ${baseUrl}/openapi.json.\n`
  );
}

async function summary(store: Store): Promise<string> {
  const [names, ...rows] = await store.query<unknown[]>(
    `SELECT msg_type, count() AS messages, countIf(recalled = 1) AS recalled, max(msg_time) AS latest
     FROM messages GROUP BY msg_type ORDER BY messages DESC`,
    undefined,
    { format: 'JSONCompactEachRowWithNames' },
  );
  const [other] = await store.query<{ events: string; dead_letters: string }>(
    'SELECT (SELECT count() FROM events) AS events, (SELECT count() FROM dead_letters) AS dead_letters',
  );
  return `${formatRows((names ?? []).map(String), rows, 'table')}events: ${other?.events ?? '0'}, dead letters: ${other?.dead_letters ?? '0'}\n`;
}

/** Runs the demo until Ctrl-C (or `duration` seconds); returns the exit code. */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { out, log } = options;
  const dataDir = resolve(options.data);
  await mkdir(dataDir, { recursive: true });
  const accounts = defaultSimulatorAccounts({ messages: options.messages });
  const sim = await startSimulator({ port: options.port, accounts, logger: log.child({ component: 'simulate' }) });
  const yunhu = await startYunhuBeside(sim, { accounts: [defaultYunhuAccount(Math.min(options.messages, 600))], logger: log });
  const stopTraffic = startYunhuTraffic(yunhu, 1000, log);
  limitNativeHeap(log);
  const lifecycle = installLifecycle({ log });
  let ops: Ops | undefined;
  let code = 1;
  try {
    const raw = {
      tenants: [{ id: TENANT, secret: SECRET }],
      sources: [...simulatorSources(accounts, sim.url), yunhuSimulatorSource(yunhu.url)].map((s) => ({ ...s, tenant: TENANT, pollIntervalMs: 500 })),
      clickhouse: { path: join(dataDir, 'clickhouse'), database: 'msgpipe' },
      sink: { maxAgeMs: 500 },
      query: { port: options.queryPort },
    };
    const configFile = join(dataDir, 'msgpipe.yaml');
    await writeFile(configFile, stringify(raw));
    const config = parseConfig(raw);
    ops = await startOps(config.metrics, log);
    const opsLine = ops.server.url === undefined ? '' : `metrics at ${ops.server.url}/metrics, `;
    out.write(
      `msgpipe demo: simulators at ${sim.url} (gewe, videosapi, syncfinder) and ${yunhu.url} (yunhu, with live edits and recalls), ` +
        `${opsLine}store in ${dataDir}\nPress Ctrl-C to stop; everything fetched is stored first.\n\n`,
    );
    const { readiness } = ops;
    lifecycle.signal.addEventListener('abort', () => { readiness.drain(); }, { once: true });
    if (lifecycle.signal.aborted) readiness.drain();
    const run = await startEmbedded(config, log, lifecycle.signal, ops, { query: true });
    let examplesShown = false;
    if (options.duration !== undefined) {
      setTimeout(() => { lifecycle.stop('--duration'); }, options.duration * 1000).unref();
    }
    const progress = setInterval(() => {
      summary(run.store).then(
        (text) => { out.write(`${new Date().toISOString()}\n${text}\n`); },
        (err: unknown) => { log.warn({ err }, 'Progress query failed.'); },
      );
    }, PROGRESS_MS);
    // The examples name a stored conversation: print them once the first ones are in.
    const examples = setInterval(() => {
      if (examplesShown || run.query === undefined) return;
      demoExamples(run.store, run.query.url).then(
        (text) => {
          if (text === undefined || examplesShown) return;
          examplesShown = true;
          out.write(`${text}\n`);
        },
        (err: unknown) => { log.warn({ err }, 'Example query failed.'); },
      );
    }, 1000);
    try {
      await run.done;
    } finally {
      clearInterval(progress);
      clearInterval(examples);
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
        `  npx msgpipe sql --config ${configFile} "SELECT msgid, content_text FROM messages WHERE content_text LIKE '%现货%' LIMIT 5"\n`,
    );
    code = 0;
    return code;
  } finally {
    await ops?.server.close();
    stopTraffic();
    await Promise.all([sim.close(), yunhu.close()]);
    // Last, so a signal repeated while the simulators close is still only logged.
    lifecycle.finish(code);
  }
}
