/**
 * One retry policy for the whole program: exponential backoff with full jitter, honouring a
 * server's Retry-After, retrying only errors that say they may pass (never programmer errors).
 */
import { setTimeout as sleep } from 'node:timers/promises';

import { isRetriable, MsgpipeError, TransientError } from './errors.ts';

export interface RetryPolicy {
  /** Attempts in all, the first included; `Infinity` retries until aborted. */
  readonly attempts: number;
  /** First backoff, ms. */
  readonly minMs: number;
  /** Backoff cap, ms. */
  readonly maxMs: number;
  readonly factor: number;
}

/** undici's RetryHandler defaults: 500 ms, ×2, capped at 30 s. */
/** Longest Retry-After we honour: a server asking for hours is treated as asking for 15 minutes. */
const MAX_RETRY_AFTER_MS = 15 * 60_000;

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, minMs: 500, maxMs: 30_000, factor: 2 };

/** The wait before attempt `attempt + 1` (attempt counts from 1): full jitter below the exponential cap. */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxMs, policy.minMs * policy.factor ** (attempt - 1));
  return Math.round(policy.minMs / 2 + random() * (cap - policy.minMs / 2));
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export async function delay(ms: number, signal?: AbortSignal): Promise<void> {
  await sleep(ms, undefined, signal ? { signal } : undefined);
}

export interface RetryOptions {
  readonly policy?: RetryPolicy;
  readonly signal?: AbortSignal;
  /** Called before each wait, to log or count the retry. */
  readonly onRetry?: (err: unknown, attempt: number, waitMs: number) => void;
  readonly random?: () => number;
}

/**
 * Runs `fn` until it succeeds, it throws an error that is not retriable, the attempts run out
 * or the signal aborts.
 *
 * @throws the last error; after the last attempt a retriable error is wrapped in
 *   MSGPIPE_ERR_RETRIES_EXHAUSTED with the cause.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions = {}): Promise<T> {
  const policy = options.policy ?? DEFAULT_RETRY;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (!isRetriable(err) || options.signal?.aborted) throw err;
      if (attempt >= policy.attempts) {
        throw new MsgpipeError('MSGPIPE_ERR_RETRIES_EXHAUSTED', `Gave up after ${attempt} attempts.`, { cause: err });
      }
      const retryAfter = err instanceof TransientError ? err.retryAfterMs : undefined;
      // The server's Retry-After wins over our own backoff, up to a sanity bound.
      const wait = Math.max(backoffMs(policy, attempt, options.random), Math.min(retryAfter ?? 0, MAX_RETRY_AFTER_MS));
      options.onRetry?.(err, attempt, wait);
      await delay(wait, options.signal);
    }
  }
}
