/**
 * The configuration: one zod schema, parsed once at start, frozen, passed down.
 *
 * Names are the contract of DESIGN §7. The file is YAML (`--config` or `MSGPIPE_CONFIG`) with
 * `${ENV}` interpolation for secrets; an empty or unset variable is a problem, not an empty
 * string. Loading reports every problem at once (t3-env style) through {@link ConfigError}.
 * docs/config.md is generated from this schema (`npm run gen`), and a test checks it is current.
 */
import { readFile } from 'node:fs/promises';

import { parseDocument } from 'yaml';
import { z } from 'zod';

import { geweSourceSchema, syncfinderSourceSchema, videosapiSourceSchema } from '../ingest/finder-config.ts';
import { yunhuSourceSchema } from '../ingest/yunhu-config.ts';
import { metricsConfigSchema } from '../ops/config.ts';
import { ConfigError } from './errors.ts';

function isTimeZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat('en-US', { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

const tenantSchema = z.strictObject({
  id: z.string().min(1).describe('The tenant id, used as `ext_corp_id` in the query API.'),
  secret: z
    .string()
    .min(1, 'an empty secret would let anyone sign requests')
    .refine((s) => s.trim() !== '', 'a secret of only whitespace is no secret (an unset variable padded with spaces?)')
    .meta({ secret: true })
    .describe('HMAC secret of the tenant for the query API.'),
});

export const sourceSchema = z.discriminatedUnion('type', [geweSourceSchema, videosapiSourceSchema, syncfinderSourceSchema, yunhuSourceSchema]);
export type SourceConfig = z.infer<typeof sourceSchema>;

const clickhouseSchema = z
  .strictObject({
    path: z.string().min(1).default('./data/clickhouse').describe('Data directory of the embedded chDB store.'),
    url: z.url({ protocol: /^https?$/ }).optional().describe('A ClickHouse server instead of the embedded store.'),
    database: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'use letters, digits and "_"')
      .default('msgpipe')
      .describe('Database holding the msgpipe tables.'),
    username: z.string().optional().describe('ClickHouse user (server only).'),
    password: z.string().optional().meta({ secret: true }).describe('ClickHouse password (server only).'),
    maxMergeBytes: z
      .number()
      .int()
      .min(0)
      .refine((v) => v === 0 || v >= 8 * 1024 * 1024, {
        message: "use 0 (ClickHouse's own limit) or at least 8388608 (8 MiB): below that, parts stop merging almost at once",
      })
      .default(33_554_432)
      .describe(
        'Embedded store only: the largest size on disk of the parts one merge of `messages` combines (its `max_bytes_to_merge_at_max_space_in_pool`), since a merge takes memory in proportion to the rows it writes (ADR 0018). 0 = ClickHouse\'s own limit; otherwise at least 8 MiB. A server is left alone.',
      ),
  })
  .describe('Where rows are stored.');

/**
 * `host:port`, the port 1-65535. No IPv6 address literal: kafkajs splits a broker at its first
 * `:`, so `[::1]:9092` would retry a host named `[` for ever (a host name that resolves to an
 * IPv6 address works).
 */
function isBroker(value: string): boolean {
  const m = /^[^\s:/,[\]]+:(\d{1,5})$/.exec(value);
  return m !== null && Number(m[1]) >= 1 && Number(m[1]) <= 65_535;
}

const kafkaSchema = z
  .strictObject({
    brokers: z
      .array(z.string().min(1))
      .min(1)
      // An item may be a comma list, as `KAFKA_BROKERS` is ("${KAFKA_BROKERS}" in deploy/msgpipe.yaml).
      .transform((items) => items.flatMap((item) => item.split(',').map((b) => b.trim()).filter((b) => b !== '')))
      .pipe(z.array(z.string().refine(isBroker, { error: (issue) => `a broker is host:port (port 1-65535; no IPv6 address literal), not ${JSON.stringify(issue.input)}` })).min(1))
      .describe('Kafka bootstrap brokers as `host:port`; an item may be a comma-separated list. Absent = embedded in-process queues.'),
    topicPrefix: z.string().min(1).default('msgpipe').describe('Prefix of every topic name.'),
    partitions: z
      .number()
      .int()
      .min(1)
      .default(6)
      .describe('Partitions of the raw, messages, events and dlq topics when msgpipe creates them (the most consumers of a role that get work).'),
    consumers: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(1)
      .describe('Consumers of the transform and sink groups in each process running that role.'),
    sessionTimeoutMs: z
      .number()
      .int()
      .min(6000)
      .max(300_000)
      .default(30_000)
      .describe('Consumer group session timeout: how long the partitions of a process that died without leaving wait before another member takes them.'),
  })
  .describe('Distributed mode.');

const querySchema = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1').describe('Address the query API listens on.'),
    port: z.number().int().min(0).max(65_535).default(9002).describe('Port of the query API.'),
    timezone: z
      .string()
      .min(1)
      .refine(isTimeZone, 'not a time zone name (use an IANA name such as Asia/Shanghai)')
      .default('Asia/Shanghai')
      .describe('Time zone of `send_at_*` dates.'),
    strict: z.boolean().default(false).describe('Require `timestamp` and `nonce` on signed requests.'),
    rateLimit: z
      .number()
      .int()
      .min(1)
      .default(100)
      .describe('Requests per second each tenant may make; more are answered with HTTP 429.'),
  })
  .describe('The msg-server compatible query API.');

const sinkSchema = z
  .strictObject({
    maxRows: z.number().int().min(1).default(20_000).describe('Flush a batch at this many rows.'),
    maxBytes: z
      .number()
      .int()
      .min(1024)
      .default(8 * 1024 * 1024)
      .describe('Flush a batch at about this many bytes of row data.'),
    maxAgeMs: z.number().int().min(10).default(1000).describe('Flush a batch this long after its first row.'),
  })
  .describe(
    'Batching of ClickHouse inserts in the embedded pipeline (without `kafka.brokers`). The Kafka sink role stores what each fetch brings instead (up to 8 MiB, groups of up to 20 000 rows), because its insert tokens name the offset ranges they hold (docs/kafka.md).',
  );

const transformSchema = z
  .strictObject({
    workers: z
      .number()
      .int()
      .min(0)
      .max(16)
      .optional()
      .describe(
        'Worker threads that transform pages and encode their rows in the embedded pipeline; 0 = in the main thread. Default: 1 on a machine with more than two cores, else 0 (on two cores the engine already keeps one busy, and a thread costs more CPU and memory, ~40 MB and up to 90 MB at the peak, than it gives). Cores are those the process may run on, capped by a cgroup CPU quota.',
      ),
  })
  .describe('The transform stage of the embedded pipeline (without `kafka.brokers`).');

/** The log levels `log.level` and `MSGPIPE_LOG_LEVEL` accept. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const logSchema = z
  .strictObject({
    level: z.enum(LOG_LEVELS).default('info').describe('Log level.'),
  })
  .describe('Logging.');

export const configSchema = z
  .strictObject({
    tenants: z.array(tenantSchema).default([]).describe('Tenants of the query API.'),
    sources: z.array(sourceSchema).default([]).describe('Chat API accounts to poll.'),
    clickhouse: clickhouseSchema.prefault({}),
    kafka: kafkaSchema.optional(),
    query: querySchema.prefault({}),
    transform: transformSchema.prefault({}),
    sink: sinkSchema.prefault({}),
    log: logSchema.prefault({}),
    metrics: metricsConfigSchema.prefault({}),
  });

export type Config = Readonly<z.infer<typeof configSchema>>;

/** The `key` string of each object in `list` (undefined where it is missing or not a string). */
function stringsAt(list: unknown, key: string): (string | undefined)[] {
  if (!Array.isArray(list)) return [];
  return list.map((item: unknown) => {
    const v = item !== null && typeof item === 'object' ? (item as Record<string, unknown>)[key] : undefined;
    return typeof v === 'string' ? v : undefined;
  });
}

/**
 * Problems that span several entries: duplicate tenants and source names, sources of an unlisted
 * tenant. Read from the raw input, so they are listed with the schema's problems (a refinement
 * of the schema would run only once everything else is valid).
 */
function crossFieldProblems(raw: unknown): string[] {
  const root = raw !== null && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const problems: string[] = [];
  const tenants = new Set<string>();
  stringsAt(root['tenants'], 'id').forEach((id, i) => {
    if (id === undefined) return;
    if (tenants.has(id)) problems.push(`tenants[${i}].id: duplicate tenant "${id}"`);
    tenants.add(id);
  });
  const names = new Set<string>();
  stringsAt(root['sources'], 'name').forEach((name, i) => {
    if (name === undefined) return;
    if (names.has(name)) problems.push(`sources[${i}].name: duplicate source name "${name}"`);
    names.add(name);
  });
  stringsAt(root['sources'], 'tenant').forEach((tenant, i) => {
    if (tenant !== undefined && tenant !== '' && !tenants.has(tenant)) problems.push(`sources[${i}].tenant: tenant "${tenant}" is not listed in tenants`);
  });
  return problems;
}

const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Problems found while replacing variables, and the paths they were found at. */
interface Interpolation {
  readonly problems: string[];
  readonly paths: Set<string>;
}

/**
 * Replaces `${NAME}` with environment values; `$${` is a literal `${`. An unset or empty variable
 * is a problem, and so is any other `${…}`: shell forms such as `${NAME:-default}` are not
 * supported, and taken as text they would make a secret of the file's own words.
 */
function interpolate(value: unknown, env: NodeJS.ProcessEnv, path: string, found: Interpolation): unknown {
  if (typeof value === 'string') {
    // "${GEWE_TOKEN}" or "Bearer ${TOKEN}"; "$${X}" stays a literal "${X}".
    return value.replace(/\$(\$?)\{([^}]*)(\}?)/g, (whole, escape: string, name: string, close: string) => {
      if (escape) return whole.slice(1);
      const problem = (text: string): string => {
        found.problems.push(`${path}: ${text}`);
        found.paths.add(path);
        return '';
      };
      if (close === '' || !VARIABLE_NAME.test(name)) {
        return problem(`${JSON.stringify(whole)} is not a variable reference: write \${NAME} (letters, digits and "_"), or $\${ for a literal "\${"`);
      }
      const v = Object.hasOwn(env, name) ? env[name] : undefined;
      if (v === undefined) return problem(`environment variable ${name} is not set`);
      if (v === '') return problem(`environment variable ${name} is empty`);
      return v;
    });
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, `${path}[${i}]`, found));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [k, interpolate(v, env, path ? `${path}.${k}` : k, found)]),
    );
  }
  return value;
}

function issuePath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((acc, part) => (typeof part === 'number' ? `${acc}[${part}]` : acc ? `${acc}.${String(part)}` : String(part)), '');
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

const ANY_ADDRESS = new Set(['0.0.0.0', '::', '[::]']);
/** Addresses `localhost` may be bound as (it resolves to one of them, which depends on the machine). */
const LOOPBACK = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

/** True when listeners on `a` and `b` (one port) would meet. */
function sameListener(a: string, b: string): boolean {
  const host = (h: string): string => h.toLowerCase();
  if (host(a) === host(b) || ANY_ADDRESS.has(a) || ANY_ADDRESS.has(b)) return true;
  return (host(a) === 'localhost' && LOOPBACK.has(host(b))) || (host(b) === 'localhost' && LOOPBACK.has(host(a)));
}

/** The query API and the operations listener on one port: the second would fail to listen, after the store was opened. */
function listenerProblems(config: Config): string[] {
  const { query, metrics } = config;
  if (!metrics.enabled || query.port === 0 || query.port !== metrics.port) return [];
  const overlap = sameListener(query.host, metrics.host);
  return overlap ? [`metrics.port: ${String(metrics.port)} is query.port too; the query API and the operations listener need a port each`] : [];
}

/** A top-level section of the configuration. */
export type ConfigSection = keyof z.infer<typeof configSchema>;

/** Options of {@link parseConfig} and {@link loadConfig}. */
export interface ParseConfigOptions {
  /**
   * Read only these sections of the file; the others take their defaults, unread, so their
   * variables need not be set (`sql` and `migrate` read `clickhouse` and `log` alone). Keys the
   * schema does not know are still reported.
   */
  readonly only?: readonly ConfigSection[];
}

/** `raw` without the known sections that `only` leaves out. */
function sectionsOf(raw: unknown, only: readonly ConfigSection[] | undefined): unknown {
  if (only === undefined || raw === null || typeof raw !== 'object' || Array.isArray(raw)) return raw;
  const known = new Set(Object.keys(configSchema.shape));
  const kept = new Set<string>(only);
  return Object.fromEntries(Object.entries(raw).filter(([key]) => kept.has(key) || !known.has(key)));
}

/**
 * Validates a configuration object (after YAML parsing) and returns it frozen.
 *
 * @throws {ConfigError} MSGPIPE_ERR_CONFIG listing every problem.
 */
export function parseConfig(raw: unknown, env: NodeJS.ProcessEnv = process.env, options: ParseConfigOptions = {}): Config {
  const found: Interpolation = { problems: [], paths: new Set() };
  const interpolated = interpolate(sectionsOf(raw ?? {}, options.only), env, '', found);
  const problems = found.problems;
  const result = configSchema.safeParse(interpolated);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const path = issuePath(issue.path);
      // A variable problem already stands for its value ("Invalid URL" of the '' left in its place adds nothing).
      if (!found.paths.has(path)) problems.push(`${path || '(root)'}: ${issue.message}`);
    }
  }
  problems.push(...crossFieldProblems(interpolated));
  if (result.success) problems.push(...listenerProblems(result.data));
  if (problems.length > 0 || !result.success) throw new ConfigError([...new Set(problems)]);
  return deepFreeze(result.data);
}

/**
 * Reads and validates a YAML configuration file.
 *
 * @throws {ConfigError} MSGPIPE_ERR_CONFIG when the file is unreadable, not YAML, or invalid.
 */
export async function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env, options: ParseConfigOptions = {}): Promise<Config> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ConfigError([`${file}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`]);
  }
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0) throw new ConfigError(doc.errors.map((e) => `${file}: ${e.message}`));
  let raw: unknown;
  try {
    // Refuses what parses but cannot be built, such as aliases nested into a billion values.
    raw = doc.toJS();
  } catch (err) {
    throw new ConfigError([`${file}: ${err instanceof Error ? err.message : String(err)}`]);
  }
  return parseConfig(raw, env, options);
}
