import { describe, expect, it } from 'vitest';

import { BatchAbandonedError, type PartitionBatch } from '../../../src/kafka/consume.ts';
import { BatchCoalescer } from '../../../src/kafka/sink.ts';

function member(
  partition: number,
  records: number,
  lost = new AbortController(),
): { batch: PartitionBatch; output: { messages: []; events: []; deadLetters: []; recalls: [] } } {
  const batch = {
    topic: 't',
    partition,
    messages: Array.from({ length: records }, (_, i) => ({ offset: String(i) })),
    firstOffset: '0',
    lastOffset: String(records - 1),
    heartbeat: () => Promise.resolve(),
    signal: lost.signal,
  } as unknown as PartitionBatch;
  return { batch, output: { messages: [], events: [], deadLetters: [], recalls: [] } };
}

function recorder(fail = false): { groups: number[][]; store: (g: readonly ReturnType<typeof member>[]) => Promise<void> } {
  const groups: number[][] = [];
  return {
    groups,
    store: async (g) => {
      groups.push(g.map((m) => m.batch.partition));
      await new Promise((r) => setTimeout(r, 5));
      if (fail) throw new Error('insert failed');
    },
  };
}

describe('BatchCoalescer', () => {
  it('stores the batches that arrive within the linger as one group, and settles every member with it', async () => {
    const r = recorder();
    const c = new BatchCoalescer(r.store, { maxRows: 1000, maxBatches: 10, lingerMs: 30 });
    const joins = [c.join(member(0, 5)), c.join(member(1, 5))];
    await new Promise((res) => setTimeout(res, 5));
    joins.push(c.join(member(2, 5)));
    expect(r.groups).toEqual([]);
    await Promise.all(joins);
    expect(r.groups).toEqual([[0, 1, 2]]);
  });

  it('stores at once when the group is full by batches or by rows; later batches open a new group', async () => {
    const r = recorder();
    const c = new BatchCoalescer(r.store, { maxRows: 100, maxBatches: 2, lingerMs: 10_000 });
    const first = [c.join(member(0, 1)), c.join(member(1, 1))];
    await Promise.all(first);
    const second = [c.join(member(2, 60)), c.join(member(3, 60))];
    await Promise.all(second);
    expect(r.groups).toEqual([[0, 1], [2, 3]]);
    const big = new BatchCoalescer(r.store, { maxRows: 100, maxBatches: 50, lingerMs: 10_000 });
    await big.join(member(4, 150));
    expect(r.groups.at(-1)).toEqual([4]);
  });

  it('rejects every member of a group whose store failed, and goes on with the next group', async () => {
    const failing = recorder(true);
    const c = new BatchCoalescer(failing.store, { maxRows: 1000, maxBatches: 2, lingerMs: 10 });
    const results = await Promise.allSettled([c.join(member(0, 1)), c.join(member(1, 1))]);
    expect(results.map((x) => x.status)).toEqual(['rejected', 'rejected']);
    await expect(c.join(member(2, 1))).rejects.toThrow('insert failed');
    expect(failing.groups).toEqual([[0, 1], [2]]);
  });

  it('puts a batch that arrives while a group is being stored into the next group', async () => {
    const groups: number[][] = [];
    let release: () => void = () => undefined;
    const c = new BatchCoalescer(
      async (g) => {
        groups.push(g.map((m) => m.batch.partition));
        if (groups.length === 1) await new Promise<void>((r) => { release = r; });
      },
      { maxRows: 1000, maxBatches: 2, lingerMs: 10 },
    );
    const first = [c.join(member(0, 1)), c.join(member(1, 1))];
    const late = c.join(member(2, 1));
    await new Promise((r) => setTimeout(r, 30));
    expect(groups).toEqual([[0, 1], [2]]);
    release();
    await Promise.all([...first, late]);
  });

  it('gives every member a BatchAbandonedError when a partition of the group is lost during the store', async () => {
    const lost = new AbortController();
    let seen: AbortSignal | undefined;
    const c = new BatchCoalescer(
      async (_g, signal) => {
        seen = signal;
        lost.abort(new Error('evicted'));
        await Promise.resolve();
        throw new Error('insert aborted');
      },
      { maxRows: 1000, maxBatches: 2, lingerMs: 10 },
    );
    const results = await Promise.allSettled([c.join(member(0, 1, lost)), c.join(member(1, 1))]);
    expect(seen?.aborted).toBe(true);
    for (const r of results) {
      expect(r.status).toBe('rejected');
      expect((r as PromiseRejectedResult).reason).toBeInstanceOf(BatchAbandonedError);
    }
  });

  it('rejects (never hangs) when the store throws before returning a promise', async () => {
    const c = new BatchCoalescer(
      () => {
        throw new Error('sync failure');
      },
      { maxRows: 1000, maxBatches: 1, lingerMs: 10 },
    );
    await expect(c.join(member(0, 1))).rejects.toThrow('sync failure');
  });
});
