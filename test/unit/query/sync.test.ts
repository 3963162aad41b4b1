import { describe, expect, it } from 'vitest';

import { ApiError } from '../../../src/query/envelope.ts';
import { triggerSync } from '../../../src/query/sync.ts';

describe('triggerSync', () => {
  it('resolves once the trigger is accepted', async () => {
    const asked: string[] = [];
    await triggerSync({ trigger: (tenant) => new Promise<void>((resolve) => { asked.push(tenant); setTimeout(resolve, 10); }) }, 'corp1', () => undefined, 1000);
    expect(asked).toEqual(['corp1']);
  });

  it('answers a 500 saying the request was not delivered when the trigger hangs, and reports its late failure', async () => {
    let fail: (err: Error) => void = () => undefined;
    const late: unknown[] = [];
    const hanging = { trigger: () => new Promise<void>((_resolve, reject) => { fail = reject; }) };
    const error = await triggerSync(hanging, 'corp1', (err) => late.push(err), 50).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(ApiError);
    expect((error as ApiError).apiCode).toBe(500);
    expect((error as ApiError).message).toMatch(/not delivered within 0\.05 s/);
    // The publish goes on; its failure after the answer is reported, not left unhandled.
    const cause = new Error('broker down');
    fail(cause);
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(late).toEqual([cause]);
  });

  it('passes on a trigger that fails at once', async () => {
    const broken = { trigger: () => Promise.reject(new Error('not connected')) };
    await expect(triggerSync(broken, 'corp1', () => undefined, 1000)).rejects.toThrow('not connected');
  });
});
