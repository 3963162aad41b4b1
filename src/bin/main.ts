/**
 * The `msgpipe` command line (DESIGN §7): run, migrate, demo, simulate, sign, sql.
 *
 * Exit codes: 0 done; 1 failed at run time; 2 bad usage or configuration (every problem is
 * listed); 70 the drain deadline passed after a stop signal.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';

import { type Config, LOG_LEVELS, loadConfig, parseConfig, type ParseConfigOptions } from '../core/config.ts';
import { ConfigError, isProgrammerError, MsgpipeError } from '../core/errors.ts';
import { releaseStopSignalsToDefault } from '../core/early-signals.ts';
import { installLifecycle } from '../core/lifecycle.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { signUrl } from '../query/index.ts';
import { rebuildSessions } from '../sink/sessions-rebuild.ts';
import { runDemo } from './demo.ts';
import { openConfiguredStore, runPipelineCommand } from './run.ts';
import { runSimulateCommand } from './simulate.ts';
import { formatRows, readOnlyProblem, soleStatement, type OutputFormat, writeRows } from './sql.ts';

const ROLES = ['ingest', 'transform', 'sink', 'query'] as const;
export type Role = (typeof ROLES)[number];

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new InvalidArgumentError('expected a port 0–65535');
  return port;
}

function parsePositive(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive whole number');
  return n;
}

function parseRoles(value: string): Role[] {
  const roles = value.split(',').map((r) => r.trim());
  const unknown = roles.filter((r) => !(ROLES as readonly string[]).includes(r));
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown role ${unknown.join(', ')} (use ${ROLES.join(', ')})`);
  return [...new Set(roles)] as Role[];
}

/** What `sql` and `migrate` read of a configuration: tenants' secrets and tokens need not be set. */
const STORE_SECTIONS: ParseConfigOptions = { only: ['clickhouse', 'log'] };

/** Reads `--config`, else `MSGPIPE_CONFIG`, else (when allowed) the defaults. */
async function resolveConfig(file: string | undefined, required: boolean, options: ParseConfigOptions = {}): Promise<Config> {
  const path = file ?? process.env['MSGPIPE_CONFIG'];
  try {
    // `--config "$UNSET"`: not the defaults (`migrate` would make ./data/clickhouse).
    if (file === '') throw new ConfigError(['--config: the path is empty']);
    if (path === undefined || path === '') {
      if (required) throw new ConfigError(['no configuration: pass --config FILE or set MSGPIPE_CONFIG']);
      return parseConfig({});
    }
    return await loadConfig(path, process.env, options);
  } catch (err) {
    // Every problem at once: a bad MSGPIPE_LOG_LEVEL too, not only once the file is right.
    const level = logLevelProblem();
    if (err instanceof ConfigError && level !== undefined) throw new ConfigError([...err.problems, level]);
    throw err;
  }
}

function configOption(): Option {
  return new Option('-c, --config <file>', 'YAML configuration file (default: $MSGPIPE_CONFIG)');
}

/**
 * The log level: `MSGPIPE_LOG_LEVEL` when set, else `fallback`.
 *
 * @throws {ConfigError} when `MSGPIPE_LOG_LEVEL` is not a level.
 */
function logLevel(fallback: string): string {
  const problem = logLevelProblem();
  if (problem !== undefined) throw new ConfigError([problem]);
  const level = process.env['MSGPIPE_LOG_LEVEL'];
  return level === undefined || level === '' ? fallback : level;
}

/** What is wrong with `MSGPIPE_LOG_LEVEL`, or undefined when it is unset or a level. */
function logLevelProblem(): string | undefined {
  const level = process.env['MSGPIPE_LOG_LEVEL'];
  if (level === undefined || level === '' || (LOG_LEVELS as readonly string[]).includes(level)) return undefined;
  return `MSGPIPE_LOG_LEVEL: "${level}" is not a log level (use ${LOG_LEVELS.join(', ')})`;
}

/**
 * The one-line message of an error that is not a bug: a msgpipe error (with the engine's error
 * name, `(UNKNOWN_TABLE)`, when its text lacks it) or a system error such as EADDRINUSE. Undefined
 * for anything else, which is logged with its stack.
 */
export function operationalMessage(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  const system = err instanceof Error && typeof code === 'string' && /^E[A-Z]+$/.test(code);
  if (!(err instanceof MsgpipeError) && !system) return undefined;
  // The causes' messages too (what a retry gave up on), each once; a bug anywhere in the chain
  // is logged with its stack instead.
  const parts: string[] = [];
  const cores: string[] = [];
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (isProgrammerError(e)) return undefined;
    let text = (e instanceof Error ? e.message : typeof e === 'string' ? e : '').trim().replace(/[.:]$/, '');
    const type = e instanceof MsgpipeError ? e.details?.['clickhouseType'] : undefined;
    if (typeof type === 'string' && !text.includes(`(${type})`)) text = `${text} (${type})`;
    // The engine's text comes wrapped several times ("Code: 60. DB::Exception: …"): once is enough.
    const core = text.replace(/^Code: \d+\. DB::Exception: /, '').replace(/\s*\([A-Z][A-Z0-9_]*\)$/, '').replace(/[.\s]+$/, '');
    if (core === '' || cores.some((c) => c.includes(core))) continue;
    parts.push(text);
    cores.push(core);
  }
  return parts.join(': ');
}

/** Commands that install a lifecycle (src/core/lifecycle.ts) and drain on a stop signal. */
const OWN_LIFECYCLE = new Set(['run', 'demo', 'simulate']);

/** `msgpipe sql` options that take a value: the word after one of them is that value. */
const SQL_VALUE_OPTIONS = new Set(['-c', '--config', '-f', '--format']);

/**
 * Commander reads every word that starts with "-" as an option, so a query that starts with a
 * `--` comment would be an unknown option. An option name holds no white space: such a word of
 * `msgpipe sql` is moved behind a "--", where commander reads it as the query.
 */
export function sqlQueryOperand(argv: readonly string[]): readonly string[] {
  if (argv[0] !== 'sql' || argv.includes('--')) return argv;
  // `-- daily…`, `--\n…` or `--daily\n…`: two dashes, then white space, or a line ended before
  // any "=": no option (`--config=a b`) looks like that.
  const i = argv.findIndex((word, k) => k > 0 && /^--(\s|[^=\n]*\n)/.test(word) && !SQL_VALUE_OPTIONS.has(argv[k - 1] ?? ''));
  if (i === -1) return argv;
  return [...argv.slice(0, i), ...argv.slice(i + 1), '--', argv[i] ?? ''];
}

/** Runs the CLI with `argv` (without node and script) and returns the exit code. */
export async function main(argv: readonly string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  // A stop signal reaches the whole group, a log reader (`| pino-pretty`, `| tee`) included, and
  // a hung-up terminal takes stderr with it: a write that fails then (EPIPE, EIO) is dropped
  // instead of throwing out of the drain and ending the process unstored.
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.listenerCount('error') === 0) stream.on('error', () => undefined);
  }
  let exitCode = 0;
  let log: Logger | undefined;
  const logger = (config: Config): Logger => (log = createLogger(logLevel(config.log.level)));

  const program = new Command('msgpipe')
    .description('Chat-message ETL: WeChat Channels private letters (and more) into ClickHouse.')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.write(s), writeErr: (s) => process.stderr.write(s) })
    .showHelpAfterError();
  // Stop signals held while the command line loaded (bin/msgpipe.js) go to the lifecycle of a
  // long-running command; the others take them with the default action again, from here on.
  program.hook('preAction', async (_program, action) => {
    if (!OWN_LIFECYCLE.has(action.name())) await releaseStopSignalsToDefault();
  });

  program
    .command('run')
    .description('run the pipeline and the query API (all roles by default)')
    .addOption(configOption())
    .addOption(new Option('--role <roles>', `comma list of ${ROLES.join(', ')}`).argParser(parseRoles))
    .action(async (opts: { config?: string; role?: Role[] }) => {
      const config = await resolveConfig(opts.config, true);
      exitCode = await runPipelineCommand(config, logger(config), opts.role ?? [...ROLES]);
    });

  program
    .command('migrate')
    .description('apply the ClickHouse migrations')
    .addOption(configOption())
    .addOption(
      new Option('--rebuild-sessions', 'then rebuild the sessions aggregate from messages (after a hard crash; stop the writers first)'),
    )
    .action(async (opts: { config?: string; rebuildSessions?: boolean }) => {
      const config = await resolveConfig(opts.config, false, STORE_SECTIONS);
      const migrateLog = logger(config);
      const store = await openConfiguredStore(config, migrateLog, { migrate: true });
      try {
        if (opts.rebuildSessions === true) {
          const rebuilt = await rebuildSessions(store, migrateLog.child({ component: 'sink.sessions' }));
          out.write(`sessions rebuilt: ${rebuilt.sessions} sessions, ${rebuilt.messages} messages\n`);
        }
      } finally {
        await store.close();
      }
    });

  program
    .command('demo')
    .description('start the simulators, the pipeline and the query API on an embedded store; print signed example requests')
    .addOption(new Option('--data <dir>', 'data directory of the demo store').default('./data/demo'))
    .addOption(new Option('--port <n>', 'simulator port (0 = any free port)').argParser(parsePort).default(0))
    .addOption(new Option('--messages <n>', 'messages per simulated account').argParser(parsePositive).default(2000))
    .addOption(new Option('--duration <seconds>', 'stop by itself after this many seconds').argParser(parsePositive))
    .addOption(new Option('--query-port <n>', 'query API port (0 = any free port)').argParser(parsePort).default(9002))
    .action(async (opts: { data: string; port: number; messages: number; duration?: number; queryPort: number }) => {
      const demoLog = createLogger(logLevel('warn'));
      log = demoLog;
      exitCode = await runDemo({ ...opts, log: demoLog, out });
    });

  program
    .command('simulate')
    .description('run the provider simulators alone')
    .addOption(new Option('--host <host>', 'listen address').default('127.0.0.1'))
    .addOption(new Option('--port <n>', 'listen port').argParser(parsePort).default(8801))
    .addOption(new Option('--messages <n>', 'messages per simulated account').argParser(parsePositive).default(10_000))
    .action(async (opts: { host: string; port: number; messages: number }) => {
      const simLog = createLogger(logLevel('info'));
      log = simLog;
      const lifecycle = installLifecycle({ log: simLog });
      let code = 1;
      try {
        await runSimulateCommand({ ...opts, log: simLog, out, signal: lifecycle.signal });
        code = 0;
      } finally {
        // finish, not dispose: a stop signal repeated while the process ends (npx forwarding
        // it, a group signal and a supervisor's) is logged instead of killing the process.
        lifecycle.finish(code);
      }
    });

  program
    .command('sign')
    .description('print a signed query API URL (HMAC-SHA256 over the sorted parameters)')
    .argument('<url>', 'path and query, e.g. "/api/v1/chat-msg/sessions?ext_staff_id=s1&session_type=external"')
    .requiredOption('--tenant <id>', 'tenant (ext_corp_id); added to the parameters unless present')
    .requiredOption('--secret <secret>', "the tenant's secret")
    .addOption(new Option('--strict', 'add timestamp (now) and a random nonce, for query.strict servers'))
    .action((url: string, opts: { tenant: string; secret: string; strict?: boolean }) => {
      if (opts.secret === '') throw new ConfigError(['--secret: an empty secret cannot sign']);
      const fresh = opts.strict === true ? { timestamp: Math.floor(Date.now() / 1000), nonce: randomBytes(12).toString('hex') } : {};
      out.write(`${signUrl(url, opts.secret, { tenant: opts.tenant, ...fresh })}\n`);
    });

  program
    .command('sql')
    .description('run a read-only query on the configured ClickHouse')
    .argument('<query>', 'a SELECT (or WITH, SHOW, DESCRIBE, EXPLAIN) statement')
    .addOption(configOption())
    .addOption(new Option('-f, --format <format>', 'output format').choices(['table', 'json', 'jsonl']).default('table'))
    .action(async (query: string, opts: { config?: string; format: OutputFormat }) => {
      const problem = readOnlyProblem(query);
      let config: Config;
      try {
        config = await resolveConfig(opts.config, false, STORE_SECTIONS);
      } catch (err) {
        // Every problem at once: the query's with the configuration's.
        if (problem !== undefined && err instanceof ConfigError) throw new ConfigError([problem, ...err.problems]);
        throw err;
      }
      if (problem !== undefined) {
        const level = logLevelProblem();
        throw new ConfigError(level === undefined ? [problem] : [problem, level]);
      }
      // Opening a chDB directory creates it: a mistyped path would give an empty store and "Unknown table".
      if (config.clickhouse.url === undefined && !existsSync(config.clickhouse.path)) {
        throw new ConfigError([`clickhouse.path: no store at ${config.clickhouse.path} (pass --config, or run msgpipe run or demo first)`]);
      }
      const store = await openConfiguredStore(config, logger(config), { migrate: false });
      try {
        // The statement check is about intent; the engine's readonly mode is the guarantee
        // (`WITH … INSERT …` starts like a read).
        const statement = soleStatement(query) ?? query;
        const settings = { readonly: '2' } as const;
        if (store.queryRows === undefined) {
          const [names, ...rows] = await store.query<unknown[]>(statement, undefined, { settings, format: 'JSONCompactEachRowWithNames' });
          out.write(formatRows((names ?? []).map(String), rows, opts.format));
        } else {
          // Row by row: an export of a whole table must not be held in memory (nor in one string).
          await writeRows(store.queryRows(statement, undefined, { settings }), opts.format, out);
        }
      } finally {
        await store.close();
      }
    });

  try {
    await program.parseAsync([...sqlQueryOperand(argv)], { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof ConfigError) {
      process.stderr.write(`msgpipe: ${err.message}\n`);
      return 2;
    }
    const line = operationalMessage(err);
    if (line !== undefined) {
      // What the machine refused (a busy port, a directory, the store's lock, a query the engine
      // refused): one line to read; the stack only at debug level.
      log?.debug({ err }, 'Command failed.');
      process.stderr.write(`msgpipe: ${line}\n`);
    } else if (log) log.fatal({ err }, 'Command failed.');
    else process.stderr.write(`msgpipe: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    log?.flush();
    // A command that ended without taking the held signals (help, a usage error, a run that
    // failed before its lifecycle) ends by the signal, as it would have without the hold.
    await releaseStopSignalsToDefault();
  }
}
