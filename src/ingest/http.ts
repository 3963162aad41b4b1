/**
 * The HTTP client of the pollers: the only module that imports undici.
 *
 * One keep-alive agent per process. A request either returns the full body as bytes (decoding
 * is the caller's business: items are sliced from the raw bytes) or throws a classified error:
 * network failures, timeouts, 408/425/429 and every 5xx are {@link TransientError} (with Retry-After),
 * 401/403 are {@link AuthError}, any other status is permanent.
 */
import { Agent, request } from 'undici';

import { AuthError, MsgpipeError, TransientError } from '../core/errors.ts';

// No cap on connections per host: each source has one request in flight at most, so the
// sources bound them already, and a cap would queue requests of healthy accounts behind slow
// ones (more than 64 accounts on one provider host), with the queue time counted against their
// timeout.
const agent = new Agent({ keepAliveTimeout: 10_000 });

/** Largest response body we accept: far above any real page, a guard against a runaway server. */
const MAX_BODY_BYTES = 64 * 1024 * 1024;

export interface HttpResponse {
  readonly status: number;
  readonly body: Buffer;
}

/** Parses Retry-After (seconds or an HTTP date) into ms. `Retry-After: 3` → 3000. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v === '') return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Statuses worth asking again: every 5xx (DESIGN §2; a proxy's 520–524 too) and these. */
const TRANSIENT_STATUS = new Set([408, 425, 429]);

function isTransientStatus(status: number): boolean {
  return status >= 500 || TRANSIENT_STATUS.has(status);
}

/**
 * POSTs a JSON body and returns the raw response bytes of a 2xx answer.
 *
 * @throws {TransientError} MSGPIPE_ERR_HTTP_TRANSIENT for network errors, timeouts and retriable statuses.
 * @throws {AuthError} MSGPIPE_ERR_AUTH for 401 and 403.
 * @throws {MsgpipeError} MSGPIPE_ERR_HTTP_STATUS for other non-2xx statuses.
 */
export async function postJson(
  url: string,
  headers: Record<string, string>,
  body: unknown,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<HttpResponse> {
  return postBytes(url, { 'content-type': 'application/json', accept: 'application/json', ...headers }, JSON.stringify(body), options);
}

/**
 * POSTs a body as is (protobuf, say; set `content-type` in `headers`) and returns the raw
 * response bytes of a 2xx answer. Errors as {@link postJson}.
 *
 * `timeoutMs` bounds the whole request, body included: undici's own timeouts only bound the wait
 * for the headers and each gap between body chunks, so a server trickling a byte at a time
 * could hold one request, and the poller behind it, for as long as it liked.
 */
export async function postBytes(
  url: string,
  headers: Record<string, string>,
  body: string | Uint8Array,
  options: { timeoutMs: number; signal?: AbortSignal },
): Promise<HttpResponse> {
  // One controller per request, its listener on the caller's long-lived signal removed at the
  // end (AbortSignal.any kept every request's signal alive on Node 20: nodejs/node#55351).
  const controller = new AbortController();
  const stop = (): void => {
    controller.abort(options.signal?.reason);
  };
  let deadlinePassed = false;
  const timer = setTimeout(() => {
    deadlinePassed = true;
    controller.abort();
  }, options.timeoutMs);
  if (options.signal?.aborted === true) stop();
  else options.signal?.addEventListener('abort', stop, { once: true });
  try {
    return await exchange(url, headers, body, options, controller.signal, () => deadlinePassed);
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', stop);
  }
}

/** {@link postBytes}'s request and response, aborted by `signal`; `deadlinePassed` tells a timeout from a stop. */
async function exchange(
  url: string,
  headers: Record<string, string>,
  body: string | Uint8Array,
  options: { timeoutMs: number; signal?: AbortSignal },
  signal: AbortSignal,
  deadlinePassed: () => boolean,
): Promise<HttpResponse> {
  const timedOut = (): TransientError =>
    new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', `Provider request took longer than ${String(options.timeoutMs)} ms.`, {
      details: { timeoutMs: options.timeoutMs },
    });
  let res;
  try {
    res = await request(url, {
      method: 'POST',
      dispatcher: agent,
      headers,
      body,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      signal,
    });
  } catch (err) {
    if (options.signal?.aborted) throw err;
    if (deadlinePassed()) throw timedOut();
    // Nothing was sent: a header no request can carry (the configuration refuses such tokens).
    if ((err as { code?: string }).code === 'UND_ERR_INVALID_ARG') {
      throw new MsgpipeError('MSGPIPE_ERR_CONFIG', `The provider request cannot be sent: ${(err as Error).message}.`, { cause: err });
    }
    throw new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', 'Provider request failed.', {
      cause: err,
      details: { errorCode: (err as { code?: string }).code },
    });
  }
  const { statusCode } = res;
  if (statusCode < 200 || statusCode >= 300) {
    await res.body.dump().catch(() => undefined);
    if (statusCode === 401 || statusCode === 403) {
      throw new AuthError('Provider refused the credentials.', { details: { status: statusCode } });
    }
    if (isTransientStatus(statusCode)) {
      const retryAfterMs = parseRetryAfter(res.headers['retry-after']);
      throw new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', `Provider answered HTTP ${statusCode}.`, {
        details: { status: statusCode },
        ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
      });
    }
    throw new MsgpipeError('MSGPIPE_ERR_HTTP_STATUS', `Provider answered HTTP ${statusCode}.`, {
      details: { status: statusCode },
    });
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      size += buf.length;
      if (size > MAX_BODY_BYTES) {
        res.body.destroy();
        throw new MsgpipeError('MSGPIPE_ERR_TOO_LARGE', 'Provider response exceeds 64 MiB.');
      }
      chunks.push(buf);
    }
  } catch (err) {
    if (err instanceof MsgpipeError || options.signal?.aborted) throw err;
    if (deadlinePassed()) throw timedOut();
    throw new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', 'Provider response was cut off.', { cause: err });
  }
  return { status: statusCode, body: Buffer.concat(chunks, size) };
}
