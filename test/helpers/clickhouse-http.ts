/**
 * A stand-in for the HTTP interface of a ClickHouse server (https://clickhouse.com/docs/interfaces/http),
 * so that the server path of the store (`clickhouse.url`, @clickhouse/client over HTTP) runs in
 * tests on machines with neither a ClickHouse server binary nor a Docker engine. Only the HTTP
 * layer is emulated here; every statement runs on the real engine: chDB, the same ClickHouse
 * (26.7), in the test process. The behaviour follows the server's own code
 * (src/Server/HTTPHandler.cpp, HTTP/HTMLForm.cpp, HTTP/exceptionCodeToHTTPStatus.cpp,
 * HTTP/HTTPServerRequest.cpp).
 *
 * Covered, as a server does it:
 * - Each request gets a fresh engine connection (on one shared data directory), so its settings,
 *   current database and query parameters last for that request only, as without `session_id`.
 * - The SQL is the `query` URL parameter, a newline, then the body. When the URL query is an
 *   INSERT and the body is not empty, the body is the INSERT's data and reaches the engine as the
 *   bytes received. A `multipart/form-data` body is a form instead: its `query` fields (after
 *   the URL's) make the SQL and its `param_<name>` fields bind parameters not bound by the URL.
 * - URL parameters other than the reserved ones (`database`, `default_format`, `query_id`, …)
 *   are settings, applied with `SET` so the engine checks them (an unknown one fails as
 *   UNKNOWN_SETTING, a change refused under `readonly` fails as on a server).
 *   `param_<name>` binds `{name:Type}` from the text exactly as sent (the engine parses it by
 *   the placeholder's type, as a server does). The output format is the query's FORMAT clause,
 *   else `default_format`, else TabSeparated. A request other than POST runs with `readonly=2`.
 * - Two statements in one request are refused ("Multi-statements are not allowed"), judged by
 *   the engine's own parser.
 * - The server's request limits, at the engine's defaults unless given: URI length
 *   (http_max_uri_size, answered 400 with no body), and per form (the URL's query string, a
 *   multipart body) the number of fields (http_max_fields) and the length of a field's name and
 *   value (http_max_field_name_size, http_max_field_value_size; for the URL on the still
 *   URL-encoded text), answered with the Poco exception a server sends (code 1000, HTTP 500).
 *   They are the limits of a server's default profile: a setting sent with the request does not
 *   change them (the newest servers let the user's settings raise those of a multipart body).
 * - Request bodies with Content-Encoding gzip, deflate or br; a compressed answer when
 *   `enable_http_compression` (the engine's default unless the URL sets it) and Accept-Encoding
 *   ask for one of those.
 * - A server time zone other than the engine's, as `session_timezone` of every request.
 * - One user (HTTP Basic, X-ClickHouse-User/X-ClickHouse-Key or user/password parameters);
 *   anything else fails as AUTHENTICATION_FAILED (HTTP 403).
 * - Errors: the engine's exception text with the server's ` (version …)` suffix, the HTTP status
 *   the server maps its code to, and `X-ClickHouse-Exception-Code`.
 * - Answers carry X-ClickHouse-Query-Id (the `query_id` sent, else a new one),
 *   X-ClickHouse-Summary, X-ClickHouse-Timezone and X-ClickHouse-Server-Display-Name;
 *   `GET /ping` and `GET /` without a query answer `Ok.`.
 *
 * Not covered (msgpipe uses none of it; a request that asks for it is refused with
 * NOT_IMPLEMENTED, HTTP 501, so nothing passes here that a server would treat otherwise):
 * sessions (`session_id`), external tables (file parts of a multipart body), ClickHouse's native
 * compression (`compress`, `decompress`), roles, encodings other than gzip, deflate and br.
 *
 * Different from a server, by construction:
 * - A result is computed in full before the answer starts, so an error always comes with its
 *   HTTP status; a server streams and may report a late error after a 200 and part of a result
 *   (`X-ClickHouse-Exception-Tag`).
 * - X-ClickHouse-Summary holds what chDB reports: result rows and bytes, and for an INSERT with
 *   its data in the body written rows and bytes; read_rows, read_bytes and total_rows_to_read
 *   are 0. No X-ClickHouse-Format, no per-format Content-Type, no X-ClickHouse-Progress.
 * - A statement carried entirely in the body (not an INSERT in the URL with its data in the
 *   body), and the fields of a multipart body, reach the engine as UTF-8 text: bytes that are not
 *   UTF-8 there would be altered.
 * - Header sizes (http_max_request_header_size and the field limits for headers) are not checked.
 * - The engine is a local instance: no replication, cluster, quotas, user profiles or server
 *   configuration beyond the engine's defaults.
 * - libchdb binds one data directory per process: the stand-in must be the only chDB user of
 *   its test file (vitest runs each file in its own process).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';

import { drainPending, Session } from 'chdb';

/** The server's request limits (ClickHouse settings of the same names). */
export interface ClickHouseHttpLimits {
  /** http_max_uri_size: longest request URI (path and query string). */
  readonly maxUriSize: number;
  /** http_max_fields: most fields in the URL's query string, and in a multipart body. */
  readonly maxFields: number;
  /** http_max_field_name_size: longest field name. */
  readonly maxFieldNameSize: number;
  /** http_max_field_value_size: longest field value (URL-encoded, for the URL). */
  readonly maxFieldValueSize: number;
}

export interface ClickHouseHttpOptions {
  /** The one user: name and password (default `default` with an empty password, as a fresh server). */
  readonly username?: string;
  readonly password?: string;
  /** Limits other than the engine's defaults. */
  readonly limits?: Partial<ClickHouseHttpLimits>;
  /**
   * The server's time zone (its `<timezone>`), e.g. `Asia/Shanghai`: every request runs with it as
   * `session_timezone` unless the request sets that. Default: the engine's, that of the process.
   */
  readonly timezone?: string;
}

/** One request as the stand-in received it (for tests that check what went over the wire). */
export interface ReceivedRequest {
  readonly method: string;
  readonly path: string;
  /** Length of the request URI. */
  readonly uriLength: number;
  /** Names of the URL's query string fields, in order. */
  readonly urlFields: readonly string[];
  /** Names of the fields of a multipart body, or undefined when the body was not multipart. */
  readonly formFields: readonly string[] | undefined;
  /** Bytes of the body, after Content-Encoding. */
  readonly bodyBytes: number;
  /** The statement (for an INSERT with its data in the body: the URL query alone). */
  readonly query: string;
  /** Query parameters, name → text as sent. */
  readonly params: Readonly<Record<string, string>>;
  /** Settings sent as URL parameters, name → value. */
  readonly settings: Readonly<Record<string, string>>;
  /** HTTP status of the answer. */
  status: number;
}

export interface ClickHouseHttp {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly limits: ClickHouseHttpLimits;
  /** Every request so far, in arrival order. */
  readonly requests: ReceivedRequest[];
  /**
   * Reads the engine directly, not over HTTP: JSONEachRow with 64-bit integers quoted, in
   * `database` (default `default`). For checking what is stored independently of the HTTP layer.
   */
  engineQuery<T>(sql: string, database?: string): Promise<T[]>;
  /** Stops the server, releases the engine and removes its data directory. */
  close(): Promise<void>;
}

// --- the engine ------------------------------------------------------------------------------

interface NativeQueryResult {
  readonly bytes: Uint8Array;
  readonly elapsed: number;
  readonly rowsRead: number;
  readonly bytesRead: number;
}

interface NativeInsertResult {
  readonly elapsed: number;
  readonly rowsWritten: number;
  readonly bytesWritten: number;
}

/**
 * The two calls of chDB's native addon used here, on a Session's connection. The package's
 * public `queryBindAsync` formats JavaScript values itself (a string is escaped again), while a
 * server binds the parameter text it received; so the text goes to the same native call
 * `queryBindAsync` ends in, as received. `InsertRawAsyncConnection` is the call behind chDB's
 * raw insert: the INSERT statement plus its data as bytes, as a server streams the body.
 */
interface ChdbNative {
  QueryAsyncConnection(connection: unknown, sql: string, format: string, params?: Record<string, string>): Promise<NativeQueryResult>;
  InsertRawAsyncConnection(connection: unknown, prefix: string, data: Buffer, countLines: boolean): Promise<NativeInsertResult>;
}

function loadNative(): ChdbNative {
  const require = createRequire(import.meta.url);
  const loader = require(join(dirname(require.resolve('chdb')), 'dist', 'loader.js')) as { loadNative(): ChdbNative };
  return loader.loadNative();
}

/**
 * chDB's addon does not keep the parameters of concurrent parameterized queries on different
 * connections apart (see `globalParamChain` in chdb/index.js); it runs them one at a time, and
 * so does the stand-in.
 */
class ParamChain {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.tail.then(task, task);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

/** A string as a ClickHouse single-quoted literal. */
function quoteString(value: string): string {
  return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

/** A name as a ClickHouse back-quoted identifier. */
function quoteIdentifier(name: string): string {
  return `\`${name.replace(/\\/g, '\\\\').replace(/`/g, '\\`')}\``;
}

/** Text in the escaped form a `{q:String}` parameter is read in. */
function escapeParam(value: string): string {
  return value.replace(/[\\\t\n\r\0]/g, (c) => ({ '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r', '\0': '\\0' })[c] ?? c);
}

// --- HTTP-level errors -----------------------------------------------------------------------

/** An answer the server gives before (or instead of) running the statement. */
class HttpFailure extends Error {
  readonly code: number;
  readonly status: number;

  constructor(message: string, code: number, status: number) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** A Poco::Net::HTMLFormException as the server reports it (ErrorCodes::POCO_EXCEPTION). */
function formFailure(what: string): HttpFailure {
  return new HttpFailure(`Poco::Exception. Code: 1000, e.code() = 0, HTML Form Exception: ${what}`, 1000, 500);
}

function notImplemented(what: string): HttpFailure {
  return new HttpFailure(`Code: 48. DB::Exception: The ClickHouse HTTP stand-in (test/helpers/clickhouse-http.ts) does not support ${what}. (NOT_IMPLEMENTED)`, 48, 501);
}

/** HTTP status per exception name: src/Server/HTTP/exceptionCodeToHTTPStatus.cpp. */
const STATUS_BY_TYPE: ReadonlyMap<string, number> = new Map([
  ...['REQUIRED_PASSWORD'].map((t) => [t, 401] as const),
  ...['UNKNOWN_USER', 'WRONG_PASSWORD', 'AUTHENTICATION_FAILED', 'SET_NON_GRANTED_ROLE', 'ACCESS_DENIED'].map((t) => [t, 403] as const),
  ...[
    'BAD_ARGUMENTS', 'CANNOT_COMPILE_REGEXP', 'CANNOT_PARSE_TEXT', 'CANNOT_PARSE_ESCAPE_SEQUENCE', 'CANNOT_PARSE_QUOTED_STRING',
    'CANNOT_PARSE_DATE', 'CANNOT_PARSE_DATETIME', 'CANNOT_PARSE_NUMBER', 'CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING', 'CANNOT_PARSE_IPV4',
    'CANNOT_PARSE_IPV6', 'CANNOT_PARSE_INPUT_ASSERTION_FAILED', 'CANNOT_PARSE_UUID', 'DUPLICATE_COLUMN', 'ILLEGAL_COLUMN',
    'UNKNOWN_ELEMENT_IN_AST', 'UNKNOWN_TYPE_OF_AST_NODE', 'THERE_IS_NO_COLUMN', 'TOO_DEEP_AST', 'TOO_BIG_AST',
    'UNEXPECTED_AST_STRUCTURE', 'SYNTAX_ERROR', 'INCORRECT_DATA', 'TYPE_MISMATCH', 'VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE',
  ].map((t) => [t, 400] as const),
  ...[
    'UNKNOWN_TABLE', 'UNKNOWN_FUNCTION', 'UNKNOWN_IDENTIFIER', 'UNKNOWN_TYPE', 'UNKNOWN_STORAGE', 'UNKNOWN_DATABASE',
    'UNKNOWN_SETTING', 'UNKNOWN_DIRECTION_OF_SORTING', 'UNKNOWN_AGGREGATE_FUNCTION', 'UNKNOWN_FORMAT',
    'UNKNOWN_DATABASE_ENGINE', 'UNKNOWN_TYPE_OF_QUERY', 'UNKNOWN_ROLE',
  ].map((t) => [t, 404] as const),
  ['QUERY_IS_TOO_LARGE', 413],
  ['NOT_IMPLEMENTED', 501],
  ['SOCKET_TIMEOUT', 503],
  ['CANNOT_OPEN_FILE', 503],
  ['HTTP_LENGTH_REQUIRED', 411],
  ['TIMEOUT_EXCEEDED', 408],
  ['CANNOT_SCHEDULE_TASK', 503],
  ['UNSUPPORTED_MEDIA_TYPE', 415],
]);

// --- forms -----------------------------------------------------------------------------------

/**
 * The fields of a URL query string as HTMLForm::readQuery reads them: `+` is a space, limits
 * apply to the still-encoded text, an empty string is one empty field.
 */
function readQueryString(raw: string, limits: ClickHouseHttpLimits): [string, string][] {
  const fields: [string, string][] = [];
  for (const piece of raw.split('&')) {
    if (limits.maxFields > 0 && fields.length === limits.maxFields) throw formFailure('Too many form fields');
    const eq = piece.indexOf('=');
    const name = eq === -1 ? piece : piece.slice(0, eq);
    const value = eq === -1 ? '' : piece.slice(eq + 1);
    if (name.length > limits.maxFieldNameSize) throw formFailure('Field name too long');
    if (value.length > limits.maxFieldValueSize) throw formFailure('Field value too long');
    fields.push([decodeFormText(name), decodeFormText(value)]);
  }
  return fields;
}

function decodeFormText(text: string): string {
  try {
    return decodeURIComponent(text.replace(/\+/g, ' '));
  } catch {
    throw new HttpFailure(`Poco::Exception. Code: 1000, e.code() = 0, Syntax error: URI encoding: ${text.slice(0, 100)}`, 1000, 500);
  }
}

/**
 * The fields of a multipart/form-data body (RFC 7578), as HTMLForm::readMultipart takes them:
 * parts between `--boundary` lines, each with its headers, a blank line and its content; the
 * limits apply to the content's bytes.
 */
function readMultipart(body: Buffer, contentType: string, limits: ClickHouseHttpLimits): [string, string][] {
  const boundary = /boundary="?([^";]+)"?/i.exec(contentType)?.[1];
  if (boundary === undefined) throw formFailure('No boundary line found');
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // The first delimiter may start the body without the CRLF that precedes the others.
  let at = body.indexOf(`--${boundary}`);
  if (at === -1) throw formFailure('No boundary line found');
  at += boundary.length + 2;
  const fields: [string, string][] = [];
  for (;;) {
    if (body.subarray(at, at + 2).toString() === '--') return fields;
    const headersEnd = body.indexOf('\r\n\r\n', at);
    const next = body.indexOf(delimiter, at);
    if (headersEnd === -1 || next === -1 || headersEnd > next) {
      throw new HttpFailure(
        'Code: 33. DB::Exception: Unexpected EOF, did not find the last boundary while parsing a multipart HTTP request. (CANNOT_READ_ALL_DATA)',
        33,
        500,
      );
    }
    const headers = body.subarray(at, headersEnd).toString('utf8');
    const content = body.subarray(headersEnd + 4, next);
    at = next + delimiter.length;
    if (limits.maxFields > 0 && fields.length === limits.maxFields) throw formFailure('Too many form fields');
    if (/filename=/i.test(headers)) throw notImplemented('external tables (file parts of a multipart body)');
    const name = /content-disposition:[^\r\n]*\bname="([^"]*)"/i.exec(headers)?.[1] ?? '';
    if (Buffer.byteLength(name) > limits.maxFieldNameSize) throw formFailure('Field name too long');
    if (content.length > limits.maxFieldValueSize) throw formFailure('Field value too long');
    fields.push([name, content.toString('utf8')]);
  }
}

/** URL parameters that are not settings (HTTPHandler's reserved_param_names). */
const RESERVED = new Set([
  'compress', 'decompress', 'user', 'password', 'quota_key', 'query_id', 'stacktrace', 'role', 'buffer_size',
  'wait_end_of_query', 'session_id', 'session_timeout', 'session_check', 'client_protocol_version', 'close_session',
  'database', 'default_format',
]);

/** Whether `sql` starts with the keyword INSERT, after blanks and comments. */
function startsWithInsert(sql: string): boolean {
  let i = 0;
  while (i < sql.length) {
    if (/\s/.test(sql[i] ?? '')) i++;
    else if (sql.startsWith('--', i) || sql[i] === '#') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end + 1;
    } else if (sql.startsWith('/*', i)) {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? sql.length : end + 2;
    } else break;
  }
  return /^insert\b/i.test(sql.slice(i, i + 7));
}

// --- bodies ----------------------------------------------------------------------------------

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const gunzip = promisify(zlib.gunzip);
const inflate = promisify(zlib.inflate);
const brotliDecompress = promisify(zlib.brotliDecompress);
const gzip = promisify(zlib.gzip);
const deflate = promisify(zlib.deflate);
const brotliCompress = promisify(zlib.brotliCompress);

async function decodeBody(body: Buffer, encoding: string | undefined): Promise<Buffer> {
  switch ((encoding ?? '').trim().toLowerCase()) {
    case '':
    case 'none':
      return body;
    case 'gzip':
      return gunzip(body);
    case 'deflate':
      return inflate(body);
    case 'br':
      return brotliDecompress(body);
    default:
      throw notImplemented(`request Content-Encoding '${encoding ?? ''}'`);
  }
}

/** src/IO/CompressionMethod.cpp chooseHTTPCompressionMethod: the server's preference order. */
function chooseResponseEncoding(accept: string | undefined): 'zstd' | 'br' | 'lz4' | 'snappy' | 'gzip' | 'deflate' | 'xz' | 'bz2' | undefined {
  if (accept === undefined) return undefined;
  for (const method of ['zstd', 'br', 'lz4', 'snappy', 'gzip', 'deflate', 'xz', 'bz2'] as const) if (accept.includes(method)) return method;
  return undefined;
}

async function encodeBody(body: Buffer, method: 'gzip' | 'deflate' | 'br'): Promise<Buffer> {
  switch (method) {
    case 'gzip':
      return gzip(body);
    case 'deflate':
      return deflate(body);
    case 'br':
      return brotliCompress(body);
  }
}

// --- the server ------------------------------------------------------------------------------

interface Credentials {
  readonly user: string;
  readonly password: string;
}

function credentialsOf(req: IncomingMessage, fields: readonly [string, string][]): Credentials {
  const headerUser = req.headers['x-clickhouse-user'];
  const headerKey = req.headers['x-clickhouse-key'];
  if (typeof headerUser === 'string' || typeof headerKey === 'string') {
    return { user: typeof headerUser === 'string' ? headerUser : 'default', password: typeof headerKey === 'string' ? headerKey : '' };
  }
  const auth = req.headers.authorization;
  if (auth?.startsWith('Basic ') === true) {
    const decoded = Buffer.from(auth.slice(6), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon === -1 ? { user: decoded, password: '' } : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  const field = (name: string): string | undefined => fields.find(([n]) => n === name)?.[1];
  return { user: field('user') ?? 'default', password: field('password') ?? '' };
}

/**
 * Starts the stand-in on 127.0.0.1 (a free port) over a fresh chDB data directory.
 */
export async function startClickHouseHttp(options: ClickHouseHttpOptions = {}): Promise<ClickHouseHttp> {
  const native = loadNative();
  const dataDir = await mkdtemp(join(tmpdir(), 'msgpipe-clickhouse-http-'));
  // Keeps the engine up between requests (the last connection closing would shut it down).
  const anchor = new Session(dataDir);
  const chain = new ParamChain();

  const engine = (session: Session, sql: string, format: string, params?: Record<string, string>): Promise<NativeQueryResult> =>
    params === undefined || Object.keys(params).length === 0
      ? native.QueryAsyncConnection(session.connection, sql, format)
      : chain.run(() => native.QueryAsyncConnection(session.connection, sql, format, params));

  const defaults = new Map(
    Buffer.from(
      (
        await engine(
          anchor,
          `SELECT name, value FROM system.settings WHERE name IN ('http_max_uri_size', 'http_max_fields', 'http_max_field_name_size',
             'http_max_field_value_size', 'enable_http_compression')
           UNION ALL SELECT 'version', version() UNION ALL SELECT 'timezone', timezone()`,
          'TabSeparated',
        )
      ).bytes,
    )
      .toString('utf8')
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.split('\t') as [string, string]),
  );
  const setting = (name: string): string => {
    const value = defaults.get(name);
    if (value === undefined) throw new Error(`The engine has no ${name}`);
    return value;
  };
  const limits: ClickHouseHttpLimits = {
    maxUriSize: options.limits?.maxUriSize ?? Number(setting('http_max_uri_size')),
    maxFields: options.limits?.maxFields ?? Number(setting('http_max_fields')),
    maxFieldNameSize: options.limits?.maxFieldNameSize ?? Number(setting('http_max_field_name_size')),
    maxFieldValueSize: options.limits?.maxFieldValueSize ?? Number(setting('http_max_field_value_size')),
  };
  const versionSuffix = ` (version ${setting('version')} (official build))`;
  const timezone = options.timezone ?? setting('timezone');
  const compressionByDefault = setting('enable_http_compression') === '1';
  const user: Credentials = { user: options.username ?? 'default', password: options.password ?? '' };
  const displayName = 'clickhouse-http-stand-in';
  const requests: ReceivedRequest[] = [];

  /** Sends an error as HTTPHandler::trySendExceptionToClient does before anything was written. */
  const sendError = (res: ServerResponse, message: string, code: number, status: number | undefined): number => {
    const type = /\(([A-Z][A-Z0-9_]+)\)\s*$/.exec(message)?.[1];
    const finalStatus = status ?? (type === undefined ? 500 : STATUS_BY_TYPE.get(type) ?? 500);
    const text = message.endsWith(')') && message.includes('(version ') ? message : `${message}${versionSuffix}`;
    res.writeHead(finalStatus, {
      'Content-Type': 'text/plain; charset=UTF-8',
      'X-ClickHouse-Server-Display-Name': displayName,
      'X-ClickHouse-Exception-Code': String(code),
    });
    res.end(`${text}\n`);
    return finalStatus;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const rawUri = req.url ?? '/';
    const method = req.method ?? 'GET';
    if (rawUri.length > limits.maxUriSize) {
      // HTTPServerRequest::readRequest throws a MessageException; the connection answers 400, no body.
      req.resume();
      res.writeHead(400, { Connection: 'close' });
      res.end();
      requests.push({ method, path: '', uriLength: rawUri.length, urlFields: [], formFields: undefined, bodyBytes: 0, query: '', params: {}, settings: {}, status: 400 });
      return;
    }
    const questionMark = rawUri.indexOf('?');
    const path = questionMark === -1 ? rawUri : rawUri.slice(0, questionMark);
    const rawQueryString = questionMark === -1 ? '' : rawUri.slice(questionMark + 1);
    const record: ReceivedRequest = {
      method, path, uriLength: rawUri.length, urlFields: [], formFields: undefined, bodyBytes: 0, query: '', params: {}, settings: {}, status: 0,
    };
    requests.push(record);
    const rawBody = await readBody(req);

    if ((method === 'GET' || method === 'HEAD') && (path === '/ping' || (path === '/' && !/(^|&)query=/.test(rawQueryString)))) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=UTF-8' });
      res.end('Ok.\n');
      record.status = 200;
      return;
    }
    if (path !== '/') {
      res.writeHead(404, { 'Content-Type': 'text/plain; charset=UTF-8' });
      res.end(`There is no handle ${path}\n\nUse / or /ping for health checks.\n`);
      record.status = 404;
      return;
    }

    let session: Session | undefined;
    try {
      const urlFields = readQueryString(rawQueryString, limits);
      const credentials = credentialsOf(req, urlFields);
      if (credentials.user !== user.user || credentials.password !== user.password) {
        throw new HttpFailure(
          `Code: 516. DB::Exception: ${credentials.user}: Authentication failed: password is incorrect, or there is no user with such name. (AUTHENTICATION_FAILED)`,
          516,
          403,
        );
      }
      const field = (name: string): string | undefined => urlFields.find(([n]) => n === name)?.[1];
      if (field('session_id') !== undefined) throw notImplemented('sessions (session_id)');
      if (field('role') !== undefined) throw notImplemented('roles');
      for (const flag of ['compress', 'decompress']) {
        const value = field(flag);
        if (value !== undefined && value !== '0' && value !== '') throw notImplemented(`ClickHouse native compression (${flag}=1)`);
      }

      const params: Record<string, string> = {};
      const settings = new Map<string, string>();
      let urlQuery = '';
      for (const [name, value] of urlFields) {
        if (name === '' || RESERVED.has(name)) continue;
        if (name === 'query') urlQuery = value;
        else if (name.startsWith('param_')) params[name.slice(6)] ??= value;
        else settings.set(name, value);
      }
      const body = await decodeBody(rawBody, req.headers['content-encoding']);
      const contentType = req.headers['content-type'] ?? '';
      let query: string;
      let insertData: Buffer | undefined;
      let formFields: string[] | undefined;
      if (contentType.startsWith('multipart/form-data')) {
        // DynamicQueryHandler::getQuery: the SQL is every `query` field (URL first), the body is a form.
        const form = readMultipart(body, contentType, limits);
        formFields = form.map(([name]) => name);
        query = urlQuery + form.filter(([name]) => name === 'query').map(([, value]) => value).join('');
        for (const [name, value] of form) if (name.startsWith('param_')) params[name.slice(6)] ??= value;
      } else if (urlQuery !== '' && body.length > 0 && startsWithInsert(urlQuery) && Object.keys(params).length === 0) {
        query = urlQuery;
        insertData = body;
      } else {
        query = `${urlQuery === '' ? '' : `${urlQuery}\n`}${body.toString('utf8')}`;
      }
      Object.assign(record, {
        urlFields: urlFields.map(([name]) => name),
        formFields,
        bodyBytes: body.length,
        query,
        params: { ...params },
        settings: Object.fromEntries(settings),
      });
      if (query.trim() === '') throw new HttpFailure('Code: 62. DB::Exception: Empty query. (SYNTAX_ERROR)', 62, 400);
      for (const name of settings.keys()) {
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new HttpFailure(`Code: 115. DB::Exception: Unknown setting '${name}'. (UNKNOWN_SETTING)`, 115, 404);
      }

      session = new Session(dataDir);
      // HTTPHandler::processQuery order: the database, readonly for a method other than POST,
      // then the URL's settings (which readonly=2 then forbids from touching readonly).
      const prelude: string[] = [];
      if (options.timezone !== undefined) prelude.push(`SET session_timezone = ${quoteString(options.timezone)}`);
      const database = (typeof req.headers['x-clickhouse-database'] === 'string' ? req.headers['x-clickhouse-database'] : undefined) ?? field('database');
      if (database !== undefined && database !== '') prelude.push(`USE ${quoteIdentifier(database)}`);
      if (method !== 'POST') prelude.push('SET readonly = 2');
      if (settings.size > 0) prelude.push(`SET ${[...settings].map(([name, value]) => `${name} = ${quoteString(value)}`).join(', ')}`);
      if (prelude.length > 0) await engine(session, prelude.join('; '), 'TabSeparated');

      // The server parses one statement per request; chDB would run several.
      try {
        await engine(session, 'SELECT length(formatQuery({q:String}))', 'TabSeparated', { q: escapeParam(query) });
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        if (message.includes('Multi-statements are not allowed')) {
          throw new HttpFailure(message.replace(/\s*: In scope SELECT length\(formatQuery[\s\S]*(?=\. \(SYNTAX_ERROR\)$)/, ''), 62, 400);
        }
        // Any other failure is the statement's own, reported when it runs below.
      }

      const format =
        (typeof req.headers['x-clickhouse-format'] === 'string' ? req.headers['x-clickhouse-format'] : undefined) ?? field('default_format') ?? 'TabSeparated';
      let output: Buffer;
      let summary: Record<string, string>;
      if (insertData !== undefined) {
        const inserted = await native.InsertRawAsyncConnection(session.connection, query, insertData, true);
        output = Buffer.alloc(0);
        summary = {
          read_rows: '0', read_bytes: '0', written_rows: String(inserted.rowsWritten), written_bytes: String(inserted.bytesWritten),
          total_rows_to_read: '0', result_rows: '0', result_bytes: '0', elapsed_ns: String(Math.round(inserted.elapsed * 1e9)),
        };
      } else {
        const result = await engine(session, query, format, params);
        output = Buffer.from(result.bytes.buffer, result.bytes.byteOffset, result.bytes.byteLength);
        summary = {
          read_rows: '0', read_bytes: '0', written_rows: '0', written_bytes: '0', total_rows_to_read: '0',
          result_rows: String(result.rowsRead), result_bytes: String(result.bytesRead), elapsed_ns: String(Math.round(result.elapsed * 1e9)),
        };
      }

      const headers: Record<string, string> = {
        'Content-Type': 'text/plain; charset=UTF-8',
        'X-ClickHouse-Server-Display-Name': displayName,
        'X-ClickHouse-Query-Id': field('query_id') ?? (typeof req.headers['x-clickhouse-query-id'] === 'string' ? req.headers['x-clickhouse-query-id'] : randomUUID()),
        'X-ClickHouse-Timezone': timezone,
        'X-ClickHouse-Summary': JSON.stringify(summary),
      };
      const compressionSetting = settings.get('enable_http_compression');
      const compress = compressionSetting === undefined ? compressionByDefault : compressionSetting === '1' || compressionSetting.toLowerCase() === 'true';
      const encoding = compress ? chooseResponseEncoding(req.headers['accept-encoding']) : undefined;
      if (encoding !== undefined) {
        if (encoding !== 'gzip' && encoding !== 'deflate' && encoding !== 'br') throw notImplemented(`response Content-Encoding '${encoding}'`);
        output = await encodeBody(output, encoding);
        headers['Content-Encoding'] = encoding;
      }
      res.writeHead(200, headers);
      res.end(output);
      record.status = 200;
    } catch (err) {
      if (err instanceof HttpFailure) {
        record.status = sendError(res, err.message, err.code, err.status);
      } else {
        const message = err instanceof Error ? err.message : String(err);
        const code = Number(/^Code: (\d+)\./.exec(message)?.[1] ?? 1001);
        record.status = sendError(res, message, code, undefined);
      }
    } finally {
      session?.close();
    }
  };

  // ClickHouse reads request lines and headers up to http_max_request_header_size (10 MiB);
  // Node's parser must not refuse a long URI first, so the URI limit above decides.
  const server = createServer({ maxHeaderSize: 16 * 1024 * 1024 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    limits,
    requests,
    async engineQuery<T>(sql: string, database = 'default'): Promise<T[]> {
      const session = new Session(dataDir);
      try {
        const zone = options.timezone === undefined ? '' : `, session_timezone = ${quoteString(options.timezone)}`;
        await engine(session, `USE ${quoteIdentifier(database)}; SET output_format_json_quote_64bit_integers = 1${zone}`, 'TabSeparated');
        const result = await engine(session, sql, 'JSONEachRow');
        return Buffer.from(result.bytes)
          .toString('utf8')
          .split('\n')
          .filter((line) => line !== '')
          .map((line) => JSON.parse(line) as T);
      } finally {
        session.close();
      }
    },
    async close(): Promise<void> {
      await new Promise<void>((resolve) => {
        server.close(() => { resolve(); });
        server.closeAllConnections();
      });
      anchor.close();
      await drainPending();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
