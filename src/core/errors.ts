/**
 * The error catalogue: every error msgpipe raises carries a stable `code` and a `retriable` flag.
 *
 * Subclasses are chosen by what the caller does with the error: a {@link ConfigError} stops the
 * program, a {@link TransientError} is retried, a {@link PoisonError} dead-letters the record,
 * an {@link AuthError} parks the account. docs/errors.md lists every code; a test keeps the two
 * in step.
 */

export const ERROR_CODES = {
  MSGPIPE_ERR_CONFIG: 'The configuration is invalid.',
  MSGPIPE_ERR_HTTP_TRANSIENT: 'A provider request failed in a way that may pass (network, 5xx, 429, timeout).',
  MSGPIPE_ERR_HTTP_STATUS: 'A provider answered with an HTTP status that retrying will not change.',
  MSGPIPE_ERR_PROVIDER: 'A provider answered with an error envelope that is not about credentials; retried with backoff.',
  MSGPIPE_ERR_AUTH: 'A provider refused the account token; the account is parked.',
  MSGPIPE_ERR_CURSOR_REFUSED: 'A provider refused the stored cursor (keyBuff); after repeated refusals the source starts again from the beginning.',
  MSGPIPE_ERR_CURSOR_RECORD: 'The last record of a key in the Kafka cursors topic is not the msgpipe.v1.Cursor of that key; the ingest role does not start.',
  MSGPIPE_ERR_PAGE_MALFORMED: 'A provider page is not the JSON shape of its API.',
  MSGPIPE_ERR_JSON: 'A record is not valid JSON.',
  MSGPIPE_ERR_UTF8: 'A record is not valid UTF-8.',
  MSGPIPE_ERR_PROTOBUF: 'A record is not the protobuf message of its API (truncated, bad wire type).',
  MSGPIPE_ERR_SHAPE: 'A record is valid JSON but a field has the wrong type or is missing.',
  MSGPIPE_ERR_XML: 'Message XML is malformed.',
  MSGPIPE_ERR_XML_DTD: 'Message XML carries a DTD.',
  MSGPIPE_ERR_XML_LIMIT: 'Message XML, or the content parsed from it, exceeds a size or depth cap.',
  MSGPIPE_ERR_TOO_LARGE: 'A record exceeds the size cap.',
  MSGPIPE_ERR_CLICKHOUSE: 'A ClickHouse request failed.',
  MSGPIPE_ERR_MIGRATION: 'An applied migration was changed or has gone, or a migration file is malformed.',
  MSGPIPE_ERR_JOURNAL: 'The insert journal of the embedded store could not be written, read or removed.',
  MSGPIPE_ERR_RETRIES_EXHAUSTED: 'An operation failed after every retry.',
  MSGPIPE_ERR_SHUTDOWN: 'The operation was cut off by shutdown.',
  MSGPIPE_ERR_TRANSFORM_THREAD: 'A transform worker thread failed or stopped; the pipeline stops, and a restart reads the page again.',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Extra context that is safe to log: small, no secrets, no payloads. */
export type ErrorDetails = Readonly<Record<string, string | number | boolean | undefined>>;

/** Base of every msgpipe error. `code` and `details` are enumerable so JSON logs carry them. */
export class MsgpipeError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: ErrorDetails | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { retriable?: boolean; details?: ErrorDetails; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details;
  }
}

/** The configuration is wrong: stop at start and say every problem. */
export class ConfigError extends MsgpipeError {
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super('MSGPIPE_ERR_CONFIG', `Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/** May pass on its own: retry with backoff. `retryAfterMs` is the server's Retry-After, if any. */
export class TransientError extends MsgpipeError {
  readonly retryAfterMs: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { retryAfterMs?: number; details?: ErrorDetails; cause?: unknown } = {},
  ) {
    super(code, message, { ...options, retriable: true });
    this.retryAfterMs = options.retryAfterMs;
  }
}

/** The provider refused the account's credentials: park that account, keep the others running. */
export class AuthError extends MsgpipeError {
  constructor(message: string, options: { details?: ErrorDetails; cause?: unknown } = {}) {
    super('MSGPIPE_ERR_AUTH', message, options);
  }
}

/** This record can never be processed: dead-letter it with its original bytes and go on. */
export class PoisonError extends MsgpipeError {
  constructor(code: ErrorCode, message: string, options: { details?: ErrorDetails; cause?: unknown } = {}) {
    super(code, message, options);
  }
}

/** True for errors that come from a bug, which no retry can fix (the kafkajs rule). */
export function isProgrammerError(err: unknown): boolean {
  return (
    err instanceof TypeError || err instanceof RangeError || err instanceof ReferenceError || err instanceof SyntaxError
  );
}

/** True when `err` says it may pass if tried again. */
export function isRetriable(err: unknown): boolean {
  if (isProgrammerError(err)) return false;
  return err instanceof MsgpipeError && err.retriable;
}
