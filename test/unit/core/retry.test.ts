import { describe, expect, it } from 'vitest';

import { MsgpipeError, TransientError } from '../../../src/core/errors.ts';
import { backoffMs, retry } from '../../../src/core/retry.ts';

const fast = { attempts: 4, minMs: 1, maxMs: 4, factor: 2 };

describe('retry', () => {
  it('retries transient errors until success', async () => {
    let calls = 0;
    const result = await retry(
      () => {
        calls++;
        if (calls < 3) return Promise.reject(new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', 'x'));
        return Promise.resolve('ok');
      },
      { policy: fast },
    );
    expect(result).toBe('ok');
    expect(calls).toBe(3);
  });

  it('never retries programmer errors or permanent errors', async () => {
    let calls = 0;
    await expect(retry(() => { calls++; return Promise.reject(new TypeError('bug')); }, { policy: fast })).rejects.toThrow('bug');
    await expect(
      retry(() => { calls++; return Promise.reject(new MsgpipeError('MSGPIPE_ERR_HTTP_STATUS', 'no')); }, { policy: fast }),
    ).rejects.toThrow('no');
    expect(calls).toBe(2);
  });

  it('gives up after the attempts with the cause kept', async () => {
    const err = await retry(() => Promise.reject(new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', 'down')), { policy: fast }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MsgpipeError);
    expect((err as MsgpipeError).code).toBe('MSGPIPE_ERR_RETRIES_EXHAUSTED');
    expect(((err as MsgpipeError).cause as Error).message).toBe('down');
  });

  it('stops waiting when the signal aborts', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => { controller.abort(); }, 50);
    await expect(
      retry(() => Promise.reject(new TransientError('MSGPIPE_ERR_HTTP_TRANSIENT', 'x')), {
        policy: { attempts: Infinity, minMs: 10_000, maxMs: 10_000, factor: 1 },
        signal: controller.signal,
      }),
    ).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('keeps jittered backoff inside [min/2, cap]', () => {
    const policy = { attempts: 10, minMs: 100, maxMs: 1000, factor: 2 };
    expect(backoffMs(policy, 1, () => 0)).toBe(50);
    expect(backoffMs(policy, 1, () => 1)).toBe(100);
    expect(backoffMs(policy, 3, () => 1)).toBe(400);
    expect(backoffMs(policy, 9, () => 1)).toBe(1000);
  });
});
