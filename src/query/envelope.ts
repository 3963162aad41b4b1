/**
 * The response envelope `{code, message, data}` and the API's codes (seeds/msg-server-api.md).
 *
 * HTTP statuses follow the code: 200 for 0, the code itself for 400/401/403/404/429/500, and 400
 * for the parameter codes 1001–1006. msg-server answered most failures with HTTP 200; clients
 * that read `code` work either way, and proxies and load balancers see real statuses.
 *
 * Responses are serialised here, not by fastify, so `seq` (a UInt64) goes out as an exact JSON
 * number even above 2^53: rows carry it as a decimal string, {@link exactNumber} marks it, and
 * {@link serializeEnvelope} writes the digits unquoted.
 */
import { randomBytes } from 'node:crypto';

export const API_CODES = {
  OK: 0,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  TOO_MANY_REQUESTS: 429,
  INTERNAL: 500,
  INVALID_CORP: 1001,
  INVALID_STAFF: 1002,
  INVALID_SESSION_TYPE: 1003,
  INVALID_MSG_TYPE: 1004,
  BAD_DATE: 1005,
  BAD_PAGING: 1006,
} as const;

export type ApiCode = (typeof API_CODES)[keyof typeof API_CODES];

/** The message of each code when nothing more specific is said. */
export const API_MESSAGES: Readonly<Record<ApiCode, string>> = {
  0: 'success',
  400: 'invalid request parameters',
  401: 'signature verification failed',
  403: 'forbidden',
  404: 'not found',
  429: 'too many requests',
  500: 'internal server error',
  1001: 'invalid ext_corp_id',
  1002: 'invalid ext_staff_id',
  1003: 'invalid session_type',
  1004: 'invalid msg_type',
  1005: 'invalid date',
  1006: 'invalid paging parameters',
};

/** The HTTP status sent with `code`. */
export function httpStatusOf(code: ApiCode): number {
  if (code === 0) return 200;
  if (code >= 1000) return 400;
  return code;
}

/** A failure the client caused (or may see): answered with its code, never with internals. */
export class ApiError extends Error {
  readonly apiCode: ApiCode;

  constructor(code: ApiCode, message: string = API_MESSAGES[code]) {
    super(message);
    this.name = 'ApiError';
    this.apiCode = code;
  }
}

export interface Envelope {
  readonly code: ApiCode;
  readonly message: string;
  readonly data: unknown;
}

// A per-process random tag, so no client-supplied string can pose as a marked number.
const TAG = `\u0000n${randomBytes(8).toString('hex')}:`;
const MARKED = new RegExp(`"${JSON.stringify(TAG).slice(1, -1).replace(/\\/g, '\\\\')}(\\d+)"`, 'g');

/** Marks a decimal string to be written as a bare JSON number by {@link serializeEnvelope}. */
export function exactNumber(digits: string): string {
  return /^\d{1,20}$/.test(digits) ? `${TAG}${digits}` : '0';
}

/** The envelope as JSON text, marked numbers unquoted. */
export function serializeEnvelope(envelope: Envelope): string {
  return JSON.stringify(envelope).replace(MARKED, '$1');
}
