import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { retryKafka } from '../../../src/kafka/client.ts';

const silent = pino({ level: 'silent' });

/** Fails with `errors` in turn, then answers 'ok'; counts its calls. */
function flaky(errors: Error[]): { fn: () => Promise<string>; calls: () => number } {
  let calls = 0;
  return {
    fn: () => {
      const err = errors[calls];
      calls += 1;
      return err === undefined ? Promise.resolve('ok') : Promise.reject(err);
    },
    calls: () => calls,
  };
}

function retriable(message: string): Error {
  return Object.assign(new Error(message), { retriable: true });
}

describe('retryKafka', () => {
  it('tries again while kafkajs marks the error retriable', async () => {
    const f = flaky([retriable('coordinator loading'), retriable('not leader')]);
    await expect(retryKafka(f.fn, silent, 5, 1)).resolves.toBe('ok');
    expect(f.calls()).toBe(3);
  });

  it('throws another error at once, unless the caller widens what is retried', async () => {
    // What kafkajs 2.2.4 throws from listTopics when the broker drops the connection.
    const broken = (): Error => new TypeError("Cannot destructure property 'topicMetadata' of '(intermediate value)' as it is null.");
    const once = flaky([broken()]);
    await expect(retryKafka(once.fn, silent, 5, 1)).rejects.toThrow(TypeError);
    expect(once.calls()).toBe(1);
    const widened = flaky([broken(), broken()]);
    await expect(retryKafka(widened.fn, silent, 5, 1, () => true)).resolves.toBe('ok');
    expect(widened.calls()).toBe(3);
  });

  it('gives up after the last attempt with the last error', async () => {
    const f = flaky([retriable('a'), retriable('b'), retriable('c')]);
    await expect(retryKafka(f.fn, silent, 3, 1)).rejects.toThrow('c');
    expect(f.calls()).toBe(3);
  });
});
