/**
 * The one module that talks to ClickHouse: @clickhouse/client over HTTP to a server, or over
 * chDB (the `chdb` package, an in-process ClickHouse) for the embedded default.
 *
 * Contract of {@link Store}:
 * - `query` returns JSONEachRow rows with 64-bit integers quoted (exact decimal strings);
 *   parameters are always bound server side (`{name:Type}`), never spliced into SQL. A server
 *   refuses a parameter over 128 KiB: a caller binds a longer list in pieces ({@link stringList},
 *   {@link MAX_PARAM_BYTES}).
 * - `insert` sends JSONEachRow with `async_insert=0` and the caller's
 *   `insert_deduplication_token` (DESIGN §1). Rows of one call are stored as given: ClickHouse
 *   does not merge those sharing a sort key (`optimize_on_insert=0`), so a caller drops its own
 *   duplicates, as the writer does.
 * - every failure is a {@link MsgpipeError} `MSGPIPE_ERR_CLICKHOUSE` whose `retriable` flag says
 *   whether trying again may pass (timeouts, overload, too many parts, network) or not.
 *
 * chDB specifics this module hides:
 * - Settings are applied as `SET …` on the chDB connection and therefore stick to it for every
 *   later call (verified on chdb 3.4.0: a dedup token set for one insert silently deduplicated the
 *   next insert that did not set one). So every call sends the full set of
 *   {@link MANAGED_SETTINGS}, each with its explicit default unless the call overrides it.
 * - chDB ignores the client's `database` option; the database is selected with `USE` once.
 * - libchdb binds one data directory per process: {@link Store.close} waits for the engine to
 *   let go (`drainPending`) so the next {@link openStore} may use another directory.
 * - libchdb carries its own jemalloc, configured from the environment when the library loads;
 *   `chdb` is therefore imported lazily, after {@link CHDB_MALLOC_CONF} is in place
 *   (docs/adr/0011-embedded-sink-throughput-and-memory.md).
 *
 * Server specifics this module hides:
 * - A server reads at most 1 MiB of URL and 128 KiB per parameter (its `http_max_uri_size` and
 *   `http_max_field_value_size`). @clickhouse/client moves a query's parameters into a multipart
 *   body past 4 KiB (`use_multipart_params_auto`), but leaves a command's in the URL; commands
 *   with parameters are therefore sent as multipart bodies here. The 128 KiB per parameter stay:
 *   callers bind long values in pieces.
 * - The client's own log lines go to the store's logger, not to the console.
 * - The tests run this path against an HTTP stand-in over chDB (test/helpers/clickhouse-http.ts).
 */
import { randomUUID } from 'node:crypto';
import { constants } from 'node:fs';
import { access, mkdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';

import {
  createClient,
  type ClickHouseClient,
  type ClickHouseClientConfigOptions,
  type ClickHouseSettings,
  type ErrorLogParams,
  type Logger as ClientLogger,
  type LogParams,
  parseError,
  type WarnLogParams,
} from '@clickhouse/client';
import type * as ChdbModule from 'chdb';
import type * as ChdbConnectionModule from 'chdb/connection';
import type { ChdbConnection } from 'chdb/connection';
import type { Logger } from 'pino';

import { ConfigError, isProgrammerError, MsgpipeError } from '../core/errors.ts';

/** Where the store lives. `url` selects a ClickHouse server; otherwise chDB at `path`. */
export interface StoreOptions {
  /** chDB data directory (embedded mode). Created if absent. */
  readonly path?: string;
  /** ClickHouse server URL (HTTP interface), e.g. `http://127.0.0.1:8123`. Wins over `path`. */
  readonly url?: string;
  /** Database holding the msgpipe tables; created if absent, unless `createDatabase` is false. */
  readonly database: string;
  /**
   * False: the database must exist already (MSGPIPE_ERR_CONFIG otherwise), and nothing is
   * written to open the store, so a read-only user can open it (`msgpipe sql`). Default true.
   */
  readonly createDatabase?: boolean;
  readonly username?: string;
  readonly password?: string;
  /** Per-request timeout against a server, ms (default 300 000). chDB calls are not timed out. */
  readonly requestTimeoutMs?: number;
}

/** Query parameters for `{name:Type}` placeholders. */
export type QueryParams = Readonly<Record<string, unknown>>;

/**
 * The settings a caller may set per call. Each has a default that is sent whenever the call does
 * not set it, so nothing leaks from one call into the next on chDB (see the file comment).
 */
export interface CallSettings {
  /** Seconds; 0 = unlimited. */
  readonly max_execution_time?: number;
  /** Bytes as a decimal string; '0' = unlimited. */
  readonly max_memory_usage?: string;
  /**
   * 2: the call may read and change settings, not write. Not managed: on chDB it sticks to the
   * connection and cannot be lifted again, so only for a store used for nothing after (`msgpipe sql`).
   */
  readonly readonly?: '2';
}

export interface CallOptions {
  readonly signal?: AbortSignal;
  readonly settings?: CallSettings;
}

export interface QueryOptions extends CallOptions {
  /**
   * The rows' JSON form: objects (JSONEachRow, the default), or arrays of values after a first
   * array of the column names, which keeps the query's columns in order and each of them (two
   * columns of one name, a name like `10`, which an object puts first).
   */
  readonly format?: 'JSONEachRow' | 'JSONCompactEachRowWithNames';
}

export interface InsertOptions extends CallOptions {
  /**
   * The table columns, in the order to send them. Given, rows travel as JSONCompactEachRow
   * (values only, about half the bytes of JSONEachRow for wide rows); a property missing from a
   * row is sent as null, which the column's DEFAULT replaces. Omitted: JSONEachRow.
   */
  readonly columns?: readonly string[];
  /**
   * `insert_deduplication_token`: a retried insert with the same token and the same rows is
   * ignored by ClickHouse within the table's deduplication window. Omitted = no token (identical
   * blocks are still deduplicated by content hash on tables with a window).
   */
  readonly dedupToken?: string;
}

/**
 * Rows already encoded as JSONCompactEachRow (one JSON array per line, values in the order of
 * {@link InsertOptions.columns}), e.g. by the sink writer as units arrive. Handed to
 * {@link Store.insert} instead of row objects, the bytes go to ClickHouse as they are.
 */
export class JsonLines {
  /** The newline-terminated lines. */
  readonly body: Buffer;
  /** How many rows (lines) `body` holds. */
  readonly length: number;

  constructor(body: Buffer, length: number) {
    this.body = body;
    this.length = length;
  }
}

/** A small ClickHouse handle: everything msgpipe needs and nothing it does not. */
export interface Store {
  /** `chdb` for the embedded engine, `server` for a ClickHouse server. */
  readonly backend: 'chdb' | 'server';
  readonly database: string;
  /** Runs a SELECT and returns its rows (JSONEachRow unless `options.format`; UInt64/Int64 as decimal strings). */
  query<T>(sql: string, params?: QueryParams, options?: QueryOptions): Promise<T[]>;
  /**
   * Runs a SELECT and yields its column names, then each row's values in that order, as they are
   * parsed: a result of any size is read without holding it as JS values (`msgpipe sql`). On
   * chDB the engine streams one result at a time: finish or break off one read before the next.
   */
  queryRows?(sql: string, params?: QueryParams, options?: CallOptions): AsyncIterable<readonly unknown[]>;
  /** Runs a statement without a result (DDL, UPDATE, …). */
  command(sql: string, params?: QueryParams, options?: CallOptions): Promise<void>;
  /**
   * Inserts rows into `table` of the store's database as JSONEachRow, synchronously
   * (`async_insert=0`); {@link JsonLines} (which needs `columns`) are sent as they are. Rows
   * sharing a sort key are not merged at insert (`optimize_on_insert=0`): drop duplicates first.
   */
  insert(table: string, rows: readonly object[] | JsonLines, options?: InsertOptions): Promise<void>;
  /**
   * Only a store that journals its inserts (src/sink/journal.ts) has this: the writer will not
   * send the failed insert that `table` and `options` name again, so its journal file goes.
   */
  forget?(table: string, options?: InsertOptions): Promise<void>;
  /** Closes the connection; for chDB also waits until the engine has released the data directory. */
  close(): Promise<void>;
}

/** The calls of a {@link Store} that {@link wrapStore} can replace. */
export type StoreCalls = Partial<Pick<Store, 'query' | 'command' | 'insert' | 'forget' | 'close'>>;

/**
 * `inner` with some of its calls replaced; every other call goes to `inner`, `forget` included
 * when `inner` has it, so a wrapper cannot drop the insert journal's (src/sink/journal.ts).
 */
export function wrapStore(inner: Store, calls: StoreCalls): Store {
  const forget = calls.forget ?? inner.forget?.bind(inner);
  const queryRows = inner.queryRows?.bind(inner);
  return {
    backend: inner.backend,
    database: inner.database,
    query: calls.query ?? (<T>(sql: string, params?: QueryParams, options?: QueryOptions) => inner.query<T>(sql, params, options)),
    ...(queryRows === undefined ? {} : { queryRows }),
    command: calls.command ?? ((sql, params, options) => inner.command(sql, params, options)),
    insert: calls.insert ?? ((table, rows, options) => inner.insert(table, rows, options)),
    ...(forget === undefined ? {} : { forget }),
    close: calls.close ?? (() => inner.close()),
  };
}

/** Results whose numbers JSON would round, as strings (see {@link MANAGED_SETTINGS}). */
const EXACT_JSON_NUMBERS = {
  output_format_json_quote_64bit_integers: 1,
  output_format_json_quote_decimals: 1,
  output_format_json_quote_denormals: 1,
} as const satisfies ClickHouseSettings;

/**
 * Settings sent with every call, at these values unless the call overrides them.
 *
 * - `async_insert=0`: our inserts are large client-side batches carrying their own dedup token;
 *   server-side coalescing would mix tokens (ClickHouse#111031) and chDB 26.7 defaults it to 1.
 * - `insert_deduplication_token=''`: no token unless the call gives one.
 * - `throw_on_max_partitions_per_insert_block=0`: a batch of old history may span more than 100
 *   months; that must not fail (the error would be TOO_MANY_PARTS and look retriable).
 * - `output_format_json_quote_64bit_integers=1`, `output_format_json_quote_decimals=1`: exact
 *   64-bit integers and decimals in results (JSON numbers would pass through a double);
 *   `output_format_json_quote_denormals=1`: NaN and ±Infinity as `"nan"`, `"inf"`, `"-inf"`, not
 *   as `null`, which a reader could not tell from NULL.
 */
export const MANAGED_SETTINGS = {
  async_insert: 0,
  wait_for_async_insert: 1,
  insert_deduplicate: 1,
  insert_deduplication_token: '',
  throw_on_max_partitions_per_insert_block: 0,
  ...EXACT_JSON_NUMBERS,
  max_execution_time: 0,
  max_memory_usage: '0',
} as const satisfies ClickHouseSettings;

/**
 * A chDB error as the client's path reports it (`Unknown table …`, type `UNKNOWN_TABLE`), not as
 * the engine's text (`Code: 60. DB::Exception: Unknown table …`). An abort stays an abort.
 */
function asClickHouseError(err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof MsgpipeError || err.name === 'ChdbAbortError') return err;
  return parseError(err.message);
}

/** Rows per block of a streamed chDB read: about 4 MB of JSON for rows of 500 bytes. */
const STREAM_BLOCK_ROWS = 8192;

/** ClickHouse's default `max_block_size`, set back after a streamed read. */
const DEFAULT_MAX_BLOCK_SIZE = 65_409;

/** ClickHouse error names that may pass when the same request is tried again. */
const RETRIABLE_TYPES = new Set([
  'UNEXPECTED_END_OF_FILE',
  'TIMEOUT_EXCEEDED',
  'READONLY',
  'TOO_MANY_SIMULTANEOUS_QUERIES',
  'NO_FREE_CONNECTION',
  'SOCKET_TIMEOUT',
  'NETWORK_ERROR',
  'MEMORY_LIMIT_EXCEEDED',
  'TABLE_IS_READ_ONLY',
  'TOO_MANY_PARTS',
  'ALL_CONNECTION_TRIES_FAILED',
  'TOO_FEW_LIVE_REPLICAS',
  'UNKNOWN_STATUS_OF_INSERT',
  'SYSTEM_ERROR',
  'CANNOT_SCHEDULE_TASK',
  'ABORTED',
  'KEEPER_EXCEPTION',
  'TABLE_IS_BEING_RESTARTED',
  'SERVER_OVERLOADED',
]);

/** The same, by numeric code, for errors whose name did not come through. */
const RETRIABLE_CODES = new Set([3, 159, 164, 202, 203, 209, 210, 236, 241, 242, 252, 279, 285, 319, 425, 439, 999]);

/** Node/undici network failures: the request may not have reached the server, or its answer was lost. */
const NETWORK_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

/** Longest error message we keep: ClickHouse echoes bound parameters, which can be huge. */
const MAX_MESSAGE = 1000;

function readProp(value: unknown, key: string): unknown {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
}

/**
 * Turns anything @clickhouse/client or chDB throws into a `MSGPIPE_ERR_CLICKHOUSE` error with
 * `retriable` set by the rules above. Aborts (our own signal) are never retriable.
 */
export function toStoreError(err: unknown, operation: string, signal?: AbortSignal): MsgpipeError {
  if (err instanceof MsgpipeError) return err;
  const rawMessage = err instanceof Error ? err.message : String(err);
  const message = rawMessage.length > MAX_MESSAGE ? `${rawMessage.slice(0, MAX_MESSAGE)}…` : rawMessage;
  // @clickhouse/client: `code` '252', `type` 'TOO_MANY_PARTS'. chDB's own errors: `code`
  // 'CHDB_QUERY', `clickhouseCode` 252, and the name only in the text: "Code: 252. DB::Exception:
  // Too many parts (600). … (TOO_MANY_PARTS)".
  const typeProp = readProp(err, 'type');
  const type =
    typeof typeProp === 'string' && typeProp !== ''
      ? typeProp
      : /\(([A-Z][A-Z0-9_]+)\)\s*(?:\(version [^)]*\))?\s*$/.exec(rawMessage)?.[1];
  const codeValue = readProp(err, 'code');
  const clickhouseCode = readProp(err, 'clickhouseCode');
  const numeric =
    typeof clickhouseCode === 'number'
      ? clickhouseCode
      : typeof codeValue === 'string' && /^\d+$/.test(codeValue)
        ? Number(codeValue)
        : undefined;
  const errno = typeof codeValue === 'string' && !/^(\d+|CHDB_\w+)$/.test(codeValue) ? codeValue : undefined;
  const causeCode = readProp(readProp(err, 'cause'), 'code');
  const name = err instanceof Error ? err.name : '';

  let retriable: boolean;
  if (name === 'AbortError' || name === 'ChdbAbortError' || signal?.aborted === true) {
    retriable = false;
  } else if (type !== undefined) {
    retriable = RETRIABLE_TYPES.has(type);
  } else if (numeric !== undefined) {
    retriable = RETRIABLE_CODES.has(numeric);
  } else if (errno !== undefined || typeof causeCode === 'string') {
    retriable = NETWORK_ERRNOS.has(errno ?? '') || NETWORK_ERRNOS.has(typeof causeCode === 'string' ? causeCode : '');
  } else {
    // The client's own request timeout and dropped sockets carry no code; neither does the
    // page a proxy or load balancer answers for a server that is down or restarting (the client
    // keeps only the body: nginx "502 Bad Gateway", Traefik "Service Unavailable", Envoy "no
    // healthy upstream", …). A ClickHouse error carries its code and was classified above.
    retriable =
      /timeout|socket hang up|ECONNRESET|ECONNREFUSED|network/i.test(rawMessage) ||
      /bad gateway|service (?:temporarily )?unavailable|gateway time-?out|no healthy upstream|upstream connect error|upstream request timeout/i.test(rawMessage);
  }
  return new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', `ClickHouse ${operation} failed: ${message}`, {
    retriable,
    cause: err,
    details: {
      operation,
      ...(type === undefined ? {} : { clickhouseType: type }),
      ...(numeric === undefined ? {} : { clickhouseCode: numeric }),
      ...(errno === undefined ? {} : { errno }),
    },
  });
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function assertIdentifier(name: string, what: string): void {
  if (!IDENTIFIER.test(name)) {
    throw new MsgpipeError('MSGPIPE_ERR_CONFIG', `${what} "${name}" is not a plain identifier (letters, digits, "_").`);
  }
}

/**
 * The most bytes one bound parameter takes on the wire. A ClickHouse server refuses a request
 * holding a longer parameter, in the URL or in a multipart body alike (`Poco::Exception. Code:
 * 1000 … HTML Form Exception: Field value too long`): its `http_max_field_value_size`, 128 KiB
 * unless the server's default profile raises it, is checked while the request is read, before
 * any setting sent with the request applies. Lists that can be longer go in pieces of at most
 * this size ({@link stringList}); some room is left below the limit for what a server is
 * configured with.
 */
export const MAX_PARAM_BYTES = 100 * 1024;

const PARAM_ESCAPES: Readonly<Record<string, string>> = { '\t': '\\t', '\n': '\\n', '\r': '\\r', "'": "\\'", '\\': '\\\\' };

/**
 * A parameter value as text, the way @clickhouse/client 1.x sends it (`formatQueryParams` of
 * client-common): strings escaped, and quoted inside arrays and maps; null as `\N` (NULL inside
 * a container); booleans 1/0 (TRUE/FALSE inside); dates as unix seconds; objects and Maps as
 * `{k:v}`. Used to send command parameters in a multipart body and to measure parameters.
 */
export function formatParam(value: unknown, nested = false): string {
  if (value === null || value === undefined) return nested ? 'NULL' : '\\N';
  if (typeof value === 'number') {
    if (Number.isNaN(value)) return 'nan';
    if (value === Number.POSITIVE_INFINITY) return '+inf';
    if (value === Number.NEGATIVE_INFINITY) return '-inf';
    return String(value);
  }
  if (typeof value === 'bigint') return String(value);
  if (typeof value === 'boolean') return nested ? (value ? 'TRUE' : 'FALSE') : value ? '1' : '0';
  if (typeof value === 'string') {
    const escaped = value.replace(/[\t\n\r'\\]/g, (c) => PARAM_ESCAPES[c] ?? c);
    return nested ? `'${escaped}'` : escaped;
  }
  if (Array.isArray(value)) return `[${value.map((v: unknown) => formatParam(v, true)).join(',')}]`;
  if (value instanceof Date) {
    const seconds = Math.floor(value.getTime() / 1000).toString().padStart(10, '0');
    const ms = value.getUTCMilliseconds();
    return ms === 0 ? seconds : `${seconds}.${ms.toString().padStart(3, '0')}`;
  }
  const entries = value instanceof Map ? [...(value as Map<unknown, unknown>).entries()] : typeof value === 'object' ? Object.entries(value) : undefined;
  if (entries === undefined) throw new MsgpipeError('MSGPIPE_ERR_CONFIG', `Query parameter of type ${typeof value} cannot be sent.`);
  return `{${entries.map(([k, v]) => `${formatParam(k, true)}:${formatParam(v, true)}`).join(',')}}`;
}

/** Bytes of `value` as a quoted string inside a list, and its comma. */
function listedBytes(value: string): number {
  return Buffer.byteLength(formatParam(value, true)) + 1;
}

/** Joins a {@link stringList}; chosen because ids never hold it (and checked per call). */
const LIST_SEPARATOR = '\u001f';

/** A list bound as parameters: the SQL expression (an `Array(String)`) and the parameters it names. */
export interface BoundList {
  readonly sql: string;
  readonly params: Readonly<Record<string, string | readonly string[]>>;
}

/**
 * A list of strings for `IN` as query parameters: the SQL expression to put in the query and the
 * parameters to bind. The list travels as strings split by the engine, not as an `Array(String)`
 * literal: for a batch's 7 300 message ids that literal took the engine about 10 ms to parse, and
 * a duplicate lookup used it twice (docs/benchmarks.md). A list longer than
 * {@link MAX_PARAM_BYTES} goes in pieces, joined again by `arrayConcat`. A piece holding the
 * separator itself, or an empty list, goes as the array.
 *
 * Parameter names are `name` for one piece, `name_0` … `name_n` for several.
 *
 * `stringList('ids', ['a', 'b'])` → `{ sql: "splitByChar('\\x1F', {ids:String})", params: { ids: 'a\u001fb' } }`.
 */
export function stringList(name: string, values: readonly string[]): BoundList {
  assertIdentifier(name, 'Parameter name');
  if (values.length === 0) return { sql: `{${name}:Array(String)}`, params: { [name]: [] } };
  // Measured as the array (the larger form, its brackets included), so either form of a piece fits.
  const pieces = groupBySize(values, listedBytes, MAX_PARAM_BYTES - 2);
  const params: Record<string, string | readonly string[]> = {};
  const parts = pieces.map((p, i) => {
    const key = pieces.length === 1 ? name : `${name}_${i}`;
    if (p.some((v) => v.includes(LIST_SEPARATOR))) {
      params[key] = p;
      return `{${key}:Array(String)}`;
    }
    params[key] = p.join(LIST_SEPARATOR);
    return `splitByChar('\\x1F', {${key}:String})`;
  });
  return { sql: parts.length === 1 ? (parts[0] ?? '') : `arrayConcat(${parts.join(', ')})`, params };
}

/** Bytes one code point takes in a parameter's text: its UTF-8 bytes, and a backslash if escaped. */
function paramCodePointBytes(code: number): number {
  if (code === 0x09 || code === 0x0a || code === 0x0d || code === 0x27 || code === 0x5c) return 2;
  return code < 0x80 ? 1 : code < 0x800 ? 2 : code < 0x10000 ? 3 : 4;
}

/**
 * `text` cut into pieces that each take at most `maxBytes` as a parameter (escapes counted), at
 * code point boundaries (a piece never ends in half of a surrogate pair); joined by `concat` in
 * SQL, they give the text again. A text that fits is one piece; '' is [''].
 */
export function textPieces(text: string, maxBytes: number = MAX_PARAM_BYTES): string[] {
  if (maxBytes < 8) throw new MsgpipeError('MSGPIPE_ERR_CONFIG', `A text piece of ${maxBytes} bytes cannot hold a character.`);
  const pieces: string[] = [];
  let start = 0;
  let bytes = 0;
  let i = 0;
  while (i < text.length) {
    const code = text.codePointAt(i) ?? 0;
    const units = code > 0xffff ? 2 : 1;
    const n = paramCodePointBytes(code);
    if (bytes + n > maxBytes) {
      pieces.push(text.slice(start, i));
      start = i;
      bytes = 0;
    }
    bytes += n;
    i += units;
  }
  pieces.push(text.slice(start));
  return pieces;
}

/**
 * `items` in consecutive groups whose sizes add up to at most `max` bytes; an item larger than
 * `max` makes a group of its own. For commands that bind one parameter per group (a map of
 * recall times): one statement per group keeps every parameter within {@link MAX_PARAM_BYTES}.
 */
export function groupBySize<T>(items: readonly T[], size: (item: T) => number, max: number = MAX_PARAM_BYTES): T[][] {
  const groups: T[][] = [];
  let group: T[] = [];
  let bytes = 0;
  for (const item of items) {
    const n = size(item);
    if (group.length > 0 && bytes + n > max) {
      groups.push(group);
      group = [];
      bytes = 0;
    }
    group.push(item);
    bytes += n;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * Reads the (empty) answer of a statement without a result, a command or an INSERT, to its end:
 * that ends the request and frees the socket.
 */
async function readToEnd(stream: Readable): Promise<void> {
  stream.resume();
  await finished(stream);
}

/**
 * A multipart/form-data body of named text parts (RFC 7578), as @clickhouse/client builds one
 * for a query's parameters: `query` and one `param_<name>` part per parameter.
 */
function multipartBody(parts: Readonly<Record<string, string>>, boundary: string): Buffer {
  const chunks: string[] = [];
  for (const [name, value] of Object.entries(parts)) {
    chunks.push(`--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
  }
  chunks.push(`--${boundary}--\r\n`);
  return Buffer.from(chunks.join(''), 'utf8');
}

/**
 * Settings every insert needs on either backend.
 *
 * `optimize_on_insert=0`: ClickHouse would otherwise merge the rows of each inserted block that
 * share a sort key, as the table engine does at merge time (ReplacingMergeTree `messages`,
 * AggregatingMergeTree `sessions_agg` behind its view). Our blocks have nothing to merge: the
 * writer drops duplicates inside a batch, and `sessions_mv` groups by the sort key already. The
 * pass cost 18–24 % of an insert's time (docs/benchmarks.md); merges still fold re-deliveries.
 */
const INSERT_SETTINGS = {
  async_insert: 0,
  insert_deduplicate: 1,
  // A retried insert whose table part is a duplicate still reaches the views, which check their
  // own parts: the repair of src/sink/journal.ts. The default since ClickHouse 26.2, not before.
  deduplicate_blocks_in_dependent_materialized_views: 1,
  optimize_on_insert: 0,
  throw_on_max_partitions_per_insert_block: 0,
} as const satisfies ClickHouseSettings;

/**
 * chDB: the whole managed set, so nothing sticks from an earlier call. A server keeps nothing
 * between HTTP requests, so it gets only what the call needs: sending the managed defaults there
 * would override limits an administrator set in the user's profile.
 */
function settingsFor(
  backend: 'chdb' | 'server',
  options: CallOptions | undefined,
  insert?: { token: string },
): ClickHouseSettings {
  const base: ClickHouseSettings =
    backend === 'chdb'
      ? { ...MANAGED_SETTINGS }
      : insert === undefined
        ? { ...EXACT_JSON_NUMBERS }
        : { ...INSERT_SETTINGS };
  return {
    ...base,
    ...(options?.settings ?? {}),
    ...(insert === undefined || (backend === 'server' && insert.token === '')
      ? {}
      : { insert_deduplication_token: insert.token }),
  };
}

/** Rows as positional arrays in `columns` order; a missing property becomes null (= DEFAULT). */
function compactRows(rows: readonly object[], columns: readonly string[]): unknown[][] {
  return rows.map((row) => {
    const record = row as Readonly<Record<string, unknown>>;
    return columns.map((c) => record[c] ?? null);
  });
}

/** Largest DateTime64(3) value ClickHouse stores (2299-12-31 23:59:59.999 UTC). */
export const MAX_DATETIME64_MS = 10_413_791_999_999;

/** A unix ms time a DateTime64(3) column stores as it is (and an Int64 parameter binds exactly). */
export function isUnixMs(value: unknown): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 && value <= MAX_DATETIME64_MS;
}

/** An integer an Int32 column stores as it is (a larger one it would wrap, without an error). */
export function isInt32(value: unknown): boolean {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= -(2 ** 31) && value <= 2 ** 31 - 1;
}

/** `\udXXX` (a lone surrogate as JSON.stringify escapes it) after an even run of backslashes. */
const LONE_SURROGATE_ESCAPE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/**
 * JSON text made by `JSON.stringify` with every lone surrogate replaced by U+FFFD. The text of a
 * JavaScript string may hold half of a surrogate pair (a cut in the middle of an emoji), which
 * JSON.stringify writes as `\ud83d`; ClickHouse refuses the whole insert for one ("missing
 * second part of surrogate pair"), so no row of the batch could ever be stored.
 */
export function wellFormedJson(json: string): string {
  return json.includes('\\ud') ? json.replace(LONE_SURROGATE_ESCAPE, '$1\\ufffd') : json;
}

/** One JSON text per row, newline separated, as UTF-8 bytes. */
function jsonLines(rows: readonly unknown[]): Buffer {
  const lines: string[] = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) lines[i] = wellFormedJson(JSON.stringify(rows[i]));
  return Buffer.from(lines.join('\n'), 'utf8');
}

/**
 * jemalloc options for chDB's engine, unless `JE_MALLOC_CONF` is already set:
 * - one arena instead of one per CPU: libchdb is built with `percpu_arena:percpu`, which
 *   overrides `narenas` unless it is disabled too;
 * - freed pages returned to the system within 200 ms instead of 5 s;
 * - heap profiling off: libchdb is built with `prof_active:true`, which takes a stack trace
 *   every 512 KiB allocated.
 * Measured: one arena and the 200 ms decay, peak native memory −57 MB for +11 % insert CPU; then
 * without profiling and per-CPU arenas, insert time −6 to −10 % (docs/benchmarks.md).
 */
export const CHDB_MALLOC_CONF = 'percpu_arena:disabled,narenas:1,dirty_decay_ms:200,muzzy_decay_ms:0,prof_active:false';

interface ChdbModules {
  readonly chdb: typeof ChdbModule;
  readonly connection: typeof ChdbConnectionModule;
}

let chdbModules: Promise<ChdbModules> | undefined;

/** Loads libchdb once, with its allocator configured first (jemalloc reads it at load time only). */
function loadChdb(): Promise<ChdbModules> {
  if (chdbModules === undefined) {
    process.env['JE_MALLOC_CONF'] ??= CHDB_MALLOC_CONF;
    chdbModules = Promise.all([import('chdb'), import('chdb/connection')]).then(([chdb, connection]) => ({
      chdb,
      connection,
    }));
  }
  return chdbModules;
}

class ClickHouseStore implements Store {
  readonly backend: 'chdb' | 'server';
  readonly database: string;
  private readonly client: ClickHouseClient;
  /** The chDB connection under `client`, for its zero-copy insert; undefined for a server. */
  private readonly chdb: ChdbConnection | undefined;
  private readonly log: Logger;
  private closed = false;

  constructor(client: ClickHouseClient, chdb: ChdbConnection | undefined, database: string, log: Logger) {
    this.client = client;
    this.chdb = chdb;
    this.backend = chdb === undefined ? 'server' : 'chdb';
    this.database = database;
    this.log = log;
  }

  async query<T>(sql: string, params?: QueryParams, options?: QueryOptions): Promise<T[]> {
    try {
      const result = await this.client.query({
        query: sql,
        format: options?.format ?? 'JSONEachRow',
        clickhouse_settings: settingsFor(this.backend, options),
        ...(params === undefined ? {} : { query_params: params }),
        ...(options?.signal === undefined ? {} : { abort_signal: options.signal }),
      });
      return await result.json<T>();
    } catch (err) {
      throw toStoreError(err, 'query', options?.signal);
    }
  }

  async *queryRows(sql: string, params?: QueryParams, options?: CallOptions): AsyncIterable<readonly unknown[]> {
    if (this.chdb !== undefined && (params === undefined || Object.keys(params).length === 0)) {
      const blocks = await this.chdbBlocks(sql, options);
      if (blocks !== undefined) {
        yield* blocks;
        return;
      }
    }
    try {
      const result = await this.client.query({
        query: sql,
        format: 'JSONCompactEachRowWithNames',
        clickhouse_settings: settingsFor(this.backend, options),
        ...(params === undefined ? {} : { query_params: params }),
        ...(options?.signal === undefined ? {} : { abort_signal: options.signal }),
      });
      for await (const rows of result.stream<unknown[]>()) {
        for (const row of rows) yield row.json();
      }
    } catch (err) {
      throw toStoreError(err, 'query', options?.signal);
    }
  }

  /**
   * The rows of `sql` from chDB's own stream, a block of {@link STREAM_BLOCK_ROWS} rows at a time,
   * or `undefined` for a statement the engine does not stream (SHOW, DESCRIBE, EXPLAIN). The
   * client's path holds the whole result several times over: 1.45 GB for 800k rows of 500 bytes,
   * against 0.4 GB this way.
   */
  private async chdbBlocks(sql: string, options: CallOptions | undefined): Promise<AsyncIterable<readonly unknown[]> | undefined> {
    const chdb = this.chdb;
    if (chdb === undefined) return undefined;
    const signal = options?.signal;
    // The stream takes no settings and one statement: the client's path SETs them on the
    // session, as it does before each of its calls.
    const apply = (settings: ClickHouseSettings, abort?: AbortSignal): Promise<unknown> =>
      this.client.command({ query: 'SELECT 1', clickhouse_settings: settings, ...(abort === undefined ? {} : { abort_signal: abort }) });
    let stream: ReturnType<ChdbConnection['chdb']['queryStream']>;
    try {
      await apply({ ...settingsFor(this.backend, options), max_block_size: String(STREAM_BLOCK_ROWS) }, signal);
      // The format clause as the client's path writes it: a statement with its own FORMAT is
      // then a syntax error on both paths, not rows in another format.
      stream = chdb.chdb.queryStream(`${sql}\nFORMAT JSONCompactEachRowWithNames`, { format: 'JSONCompactEachRowWithNames', ...(signal === undefined ? {} : { signal }) });
    } catch (err) {
      await apply({ max_block_size: String(DEFAULT_MAX_BLOCK_SIZE) }).catch(() => undefined);
      if ((err instanceof Error ? err.message : String(err)).includes('Streaming query is not supported')) return undefined;
      throw toStoreError(asClickHouseError(err), 'query', signal);
    }
    const notOurs = (): MsgpipeError =>
      new MsgpipeError('MSGPIPE_ERR_CONFIG', 'The result is not in the JSONCompactEachRowWithNames format asked for: leave out the FORMAT clause (msgpipe sql --format chooses the output).');
    const row = (line: string, names: boolean): unknown[] => {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw notOurs();
      }
      if (!Array.isArray(value) || (names && !value.every((v) => typeof v === 'string'))) throw notOurs();
      return value;
    };
    return (async function* rows(): AsyncGenerator<readonly unknown[]> {
      let first = true;
      try {
        for await (const chunk of stream) {
          const lines = chunk.text().split('\n');
          if (lines.at(-1) === '') lines.pop();
          // Every block starts with the column names again; the first one's are the header.
          if (lines.length - chunk.numRows !== 1) throw notOurs();
          if (first) yield row(lines[0] ?? '', true);
          for (let i = 1; i < lines.length; i++) yield row(lines[i] ?? '', false);
          first = false;
        }
        // Even an empty result has its names (a `FORMAT Null` has none).
        if (first) throw notOurs();
      } catch (err) {
        throw toStoreError(asClickHouseError(err), 'query', signal);
      } finally {
        stream.cancel();
        await apply({ max_block_size: String(DEFAULT_MAX_BLOCK_SIZE) }).catch(() => undefined);
      }
    })();
  }

  async command(sql: string, params?: QueryParams, options?: CallOptions): Promise<void> {
    try {
      if (this.backend === 'server' && params !== undefined && Object.keys(params).length > 0) {
        // @clickhouse/client sends a command's parameters in the URL, where a server takes at
        // most 1 MiB in all and 128 KiB per parameter, both URL-encoded (a CJK character takes 9
        // bytes there): the text of an edited message, or the times of a few thousand recalls,
        // did not fit. In a multipart body, as the client sends a query's long parameters, only
        // the 128 KiB per parameter remain, counted in plain bytes.
        await this.multipartCommand(sql, params, options);
        return;
      }
      await this.client.command({
        query: sql,
        clickhouse_settings: settingsFor(this.backend, options),
        ...(params === undefined ? {} : { query_params: params }),
        ...(options?.signal === undefined ? {} : { abort_signal: options.signal }),
      });
    } catch (err) {
      throw toStoreError(err, 'command', options?.signal);
    }
  }

  /** A statement without a result, with its text and parameters in a multipart body (server only). */
  private async multipartCommand(sql: string, params: QueryParams, options: CallOptions | undefined): Promise<void> {
    const parts: Record<string, string> = { query: sql };
    for (const [name, value] of Object.entries(params)) {
      assertIdentifier(name, 'Parameter name');
      parts[`param_${name}`] = formatParam(value);
    }
    const boundary = `----msgpipe-${randomUUID()}`;
    // exec sends `values` as the body; with an empty `query`, the URL carries none.
    const { stream } = await this.client.exec({
      query: '',
      values: Readable.from([multipartBody(parts, boundary)], { objectMode: false }),
      clickhouse_settings: settingsFor(this.backend, options),
      http_headers: { 'Content-Type': `multipart/form-data; boundary=${boundary}` },
      ...(options?.signal === undefined ? {} : { abort_signal: options.signal }),
    });
    await readToEnd(stream);
  }

  async insert(table: string, rows: readonly object[] | JsonLines, options?: InsertOptions): Promise<void> {
    if (rows.length === 0) return;
    assertIdentifier(table, 'Table name');
    const token = options?.dedupToken ?? '';
    const columns = options?.columns;
    if (columns !== undefined) for (const c of columns) assertIdentifier(c, 'Column name');
    if (rows instanceof JsonLines && columns === undefined) {
      throw new MsgpipeError('MSGPIPE_ERR_CONFIG', 'Encoded JSON lines need the column list.');
    }
    const format = columns === undefined ? 'JSONEachRow' : 'JSONCompactEachRow';
    try {
      if (this.chdb !== undefined) {
        // chDB's raw insert hands the bytes to the engine without the SQL text round trip of the
        // client path: about 3× faster (20 000 messages: ~290 ms vs ~900 ms). Its settings go in
        // the INSERT's SETTINGS clause, so they do not stick to the session. Parsing runs on the
        // inserting thread: the parallel parser's extra threads only competed with the pipeline
        // for the same cores (300k e2e, 6 alternating runs: +5 % msgs/s, −5 % CPU).
        await this.chdb.chdb.rawInsert({
          table,
          values: rows instanceof JsonLines ? rows.body : jsonLines(columns === undefined ? rows : compactRows(rows, columns)),
          format,
          ...(columns === undefined ? {} : { columns }),
          settings: {
            ...INSERT_SETTINGS,
            // The limits a read set on the session (SET by the client path, which resets them
            // only for its own calls) must not reach the insert: the query API's 10 s one, say.
            max_execution_time: MANAGED_SETTINGS.max_execution_time,
            max_memory_usage: MANAGED_SETTINGS.max_memory_usage,
            input_format_parallel_parsing: 0,
            insert_deduplication_token: token,
            ...(options?.settings ?? {}),
          },
          ...(options?.signal === undefined ? {} : { signal: options.signal }),
        });
        return;
      }
      // The body is built here, as for chDB, and sent as bytes: the client's own insert would
      // re-serialise every chunk of a stream as JSON (a Buffer became {"type":"Buffer",…}) and
      // would leave lone surrogates, which the server refuses, in the rows.
      const body = rows instanceof JsonLines ? rows.body : jsonLines(columns === undefined ? rows : compactRows(rows, columns));
      const { stream } = await this.client.exec({
        query: `INSERT INTO ${table}${columns === undefined ? '' : ` (${columns.join(', ')})`} FORMAT ${format}`,
        values: Readable.from([body], { objectMode: false }),
        clickhouse_settings: settingsFor(this.backend, options, { token }),
        ...(options?.signal === undefined ? {} : { abort_signal: options.signal }),
      });
      await readToEnd(stream);
    } catch (err) {
      throw toStoreError(err, 'insert', options?.signal);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.close();
    } finally {
      // An aborted chDB call keeps running inside the engine; the data directory is only free
      // (for a store at another path) once it and the deferred connection teardown are done.
      if (this.backend === 'chdb') await (await loadChdb()).chdb.drainPending();
      this.log.debug('ClickHouse store closed.');
    }
  }
}

/**
 * @clickhouse/client's own log lines, sent to the store's logger. Left to itself, the client
 * writes them to the console as text of several lines in the middle of msgpipe's JSON log: a
 * warning for every client created (a long `request_timeout` without progress headers) and,
 * for every failed request, the error the store also throws to its caller. Those errors go to
 * debug (the caller decides how loud a failure is); the rest keeps its level.
 */
function clientLog(log: Logger): { LoggerClass: new () => ClientLogger } {
  const target = log.child({ lib: '@clickhouse/client' });
  const fields = (p: LogParams, err?: Error): object => ({ module: p.module, ...(p.args ?? {}), ...(err === undefined ? {} : { err }) });
  return {
    LoggerClass: class implements ClientLogger {
      trace(p: LogParams): void {
        target.trace(fields(p), p.message);
      }
      debug(p: LogParams): void {
        target.debug(fields(p), p.message);
      }
      info(p: LogParams): void {
        target.info(fields(p), p.message);
      }
      warn(p: WarnLogParams): void {
        target.warn(fields(p, p.err), p.message);
      }
      error(p: ErrorLogParams): void {
        target.debug(fields(p, p.err), p.message);
      }
    },
  };
}

function missingDatabase(database: string): ConfigError {
  return new ConfigError([`clickhouse.database: there is no database ${JSON.stringify(database)} (msgpipe migrate creates it)`]);
}

/**
 * Opens the store: a ClickHouse server when `url` is given, else chDB at `path`; creates
 * `database` if absent and makes it the default for unqualified table names.
 *
 * Only one chDB data directory can be open per process; close the previous store first.
 * `log` is the store's own (child) logger.
 *
 * @throws MsgpipeError MSGPIPE_ERR_CONFIG for a bad database name or neither url nor path;
 *   MSGPIPE_ERR_CLICKHOUSE when the store cannot be reached or the database not created.
 */
export async function openStore(options: StoreOptions, log: Logger): Promise<Store> {
  assertIdentifier(options.database, 'Database name');
  if (options.url !== undefined) {
    const auth = {
      ...(options.username === undefined ? {} : { username: options.username }),
      ...(options.password === undefined ? {} : { password: options.password }),
    };
    // The HTTP `database` parameter must name an existing database, so create it first with a
    // client bound to `default`.
    const bootstrap = createClient({ url: options.url, ...auth, request_timeout: options.requestTimeoutMs ?? 300_000, log: clientLog(log) });
    try {
      if (options.createDatabase === false) {
        const result = await bootstrap.query({
          query: 'SELECT count() AS n FROM system.databases WHERE name = {name:String}',
          query_params: { name: options.database },
          format: 'JSONEachRow',
        });
        const [row] = await result.json<{ n: string | number }>();
        if (Number(row?.n ?? 0) === 0) throw missingDatabase(options.database);
      } else {
        await bootstrap.command({
          query: `CREATE DATABASE IF NOT EXISTS \`${options.database}\``,
        });
      }
    } catch (err) {
      if (err instanceof MsgpipeError) throw err;
      throw toStoreError(err, options.createDatabase === false ? 'open database' : 'create database');
    } finally {
      await bootstrap.close();
    }
    const client = createClient({
      url: options.url,
      log: clientLog(log),
      ...auth,
      database: options.database,
      request_timeout: options.requestTimeoutMs ?? 300_000,
      // Dedup lookups bind thousands of ids; send long parameters in the body, not the URL.
      use_multipart_params_auto: true,
    });
    log.info({ backend: 'server', database: options.database }, 'ClickHouse store opened.');
    return new ClickHouseStore(client, undefined, options.database, log);
  }
  if (options.path === undefined) {
    throw new MsgpipeError('MSGPIPE_ERR_CONFIG', 'ClickHouse store needs either a url or a chDB path.');
  }
  let client: ClickHouseClient;
  let chdb: ChdbConnection;
  // chDB reports a directory it cannot use without the reason: ask the file system first.
  try {
    await mkdir(options.path, { recursive: true });
    await access(options.path, constants.W_OK);
  } catch (err) {
    throw new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', `The embedded store's directory (clickhouse.path) cannot be used: ${(err as Error).message}`, { cause: err });
  }
  const modules = await loadChdb();
  try {
    chdb = modules.connection.createChdbConnection({ path: options.path });
    // chdb/connection implements the Connection of @clickhouse/client-common, which the client
    // bundles its own copy of; the shapes agree, only exactOptionalPropertyTypes tells them apart.
    const connection = chdb as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>;
    client = createClient({ connection, log: clientLog(log) });
  } catch (err) {
    if (isProgrammerError(err)) throw err;
    const failed = toStoreError(err, 'open chDB');
    // chDB says only this when another process holds the directory's lock (it prints "Cannot
    // lock file …/status" itself); a second directory in one process has a message of its own.
    if (!failed.message.includes('Failed to create connection') || /only one active/i.test(failed.message)) throw failed;
    throw new MsgpipeError(
      'MSGPIPE_ERR_CLICKHOUSE',
      `${failed.message.replace(/\.?\s*$/, '.')} Only one process may open an embedded store: is a msgpipe run, demo or sql using ${options.path}? Stop it, or query through its API.`,
      { cause: err, ...(failed.details === undefined ? {} : { details: failed.details }) },
    );
  }
  const store = new ClickHouseStore(client, chdb, options.database, log);
  try {
    if (options.createDatabase === false) {
      const [row] = await store.query<{ n: string }>('SELECT count() AS n FROM system.databases WHERE name = {name:String}', { name: options.database });
      if (Number(row?.n ?? 0) === 0) throw missingDatabase(options.database);
    } else {
      await store.command(`CREATE DATABASE IF NOT EXISTS \`${options.database}\``);
    }
    await store.command(`USE \`${options.database}\``);
  } catch (err) {
    await store.close();
    throw err;
  }
  log.info({ backend: 'chdb', database: options.database }, 'ClickHouse store opened.');
  return store;
}
