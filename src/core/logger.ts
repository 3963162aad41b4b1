/**
 * The root logger: pino JSON lines on stderr (stdout stays free for command output such as
 * `msgpipe sql`). Components take `log.child({ component })` with low-cardinality bindings and
 * log constant messages; secrets, tokens and signatures are redacted.
 */
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

/** Paths pino blanks out wherever they appear in a log record. */
export const REDACT_PATHS = [
  'token',
  'secret',
  'password',
  'signature',
  '*.token',
  '*.secret',
  '*.password',
  '*.signature',
  'headers.authorization',
  'headers["x-gewe-token"]',
  'headers["videosapi-token"]',
  'config.tenants[*].secret',
  'config.sources[*].token',
];

/** Creates the process's root logger. */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    { level, base: { pid: process.pid }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } },
    destination,
  );
}

/** A logger that drops everything, for tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
