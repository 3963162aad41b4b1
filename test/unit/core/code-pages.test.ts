/**
 * Releasing cold code pages: only read-only, private, unmodified file mappings of the chosen
 * files are advised, and the engine keeps working after its pages were released.
 */
import { readFileSync } from 'node:fs';

import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';

import { releasableMappings, releaseCodePages, startCodePageRelease } from '../../../src/core/code-pages.ts';
import { openTempStore, type TempStore } from '../sink/helpers.ts';

const SMAPS = `5600a0000000-5600a1000000 r--p 00000000 08:01 123 /usr/bin/node
Size:              16384 kB
Rss:                4096 kB
Anonymous:             0 kB
Swap:                  0 kB
5600a1000000-5600a3000000 r-xp 01000000 08:01 123 /usr/bin/node
Size:              32768 kB
Anonymous:             0 kB
Swap:                  0 kB
5600a3000000-5600a3100000 r--p 03000000 08:01 123 /usr/bin/node
Size:               1024 kB
Anonymous:           512 kB
Swap:                  0 kB
5600a3100000-5600a3200000 r--p 03100000 08:01 123 /usr/bin/node
Size:               1024 kB
Anonymous:             0 kB
Swap:                  8 kB
5600a3200000-5600a3300000 rw-p 03200000 08:01 123 /usr/bin/node
Anonymous:           128 kB
Swap:                  0 kB
7f0000000000-7f0020000000 r-xp 00000000 08:01 456 /opt/app/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so
Anonymous:             0 kB
Swap:                  0 kB
7f0020000000-7f0021000000 r--s 00000000 08:01 789 /opt/app/data/shared.bin
Anonymous:             0 kB
Swap:                  0 kB
7f0030000000-7f0031000000 r-xp 00000000 08:01 999 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
Swap:                  0 kB
7f0040000000-7f0041000000 rw-p 00000000 00:00 0
Anonymous:          4096 kB
Swap:                  0 kB
7f0050000000-7f0050100000 r-xp 00000000 08:01 456 /opt/app/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so
Size:               1024 kB
Anonymous:             0 kB
7f0060000000-7f0060100000 r-xp 00000000 08:01 456 /opt/app/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so
Size:               1024 kB
`;

describe('releasableMappings', () => {
  it('takes read-only private mappings of the chosen files that hold no private page, nothing else', () => {
    const files = new Set(['/usr/bin/node', '/opt/app/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so', '/opt/app/data/shared.bin']);
    const picked = releasableMappings(SMAPS, (path) => files.has(path)).map((m) => [m.start.toString(16), m.end.toString(16), m.path]);
    expect(picked).toEqual([
      ['5600a0000000', '5600a1000000', '/usr/bin/node'],
      ['5600a1000000', '5600a3000000', '/usr/bin/node'],
      ['7f0000000000', '7f0020000000', '/opt/app/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so'],
    ]);
    // Not taken: relocated data in memory (Anonymous > 0) or swapped out (Swap > 0), writable,
    // shared (r--s), other files (libc), and mappings whose Swap or Anonymous line is missing.
  });

  it('takes nothing when no file is chosen', () => {
    expect(releasableMappings(SMAPS, () => false)).toEqual([]);
  });
});

describe('releaseCodePages', () => {
  let temp: TempStore;
  beforeAll(async () => {
    temp = await openTempStore();
  });
  afterAll(async () => {
    await temp.dispose();
  });

  it('releases resident pages of the engine library, and the engine still answers', async () => {
    await temp.store.query('SELECT count() AS c FROM messages');
    const released = releaseCodePages();
    if (process.platform !== 'linux') {
      expect(released).toBeUndefined();
      return;
    }
    expect(released).toBeDefined();
    const libchdb = readFileSync('/proc/self/maps', 'utf8').split('\n').some((l) => /\/libchdb[^/]*\.so/.test(l));
    expect(libchdb).toBe(true);
    expect(released!.mappings).toBeGreaterThan(0);
    // Loading the engine leaves tens of megabytes of its code resident; most of it goes.
    expect(released!.residentBefore - released!.residentAfter).toBeGreaterThan(20 * 2 ** 20);
    const rows = await temp.store.query<{ n: string }>('SELECT toString(sum(number)) AS n FROM numbers(100000)');
    expect(rows).toEqual([{ n: '4999950000' }]);
  });
});

describe('startCodePageRelease', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('releases at once, at the early times, then every interval, until stopped', () => {
    vi.useFakeTimers();
    const at: number[] = [];
    const started = Date.now();
    const stop = startCodePageRelease(pino({ level: 'silent' }), { early: [3000, 6000], intervalMs: 10_000 }, () => {
      at.push(Date.now() - started);
      return undefined;
    });
    vi.advanceTimersByTime(25_000);
    expect(at).toEqual([0, 3000, 6000, 10_000, 20_000]);
    stop();
    vi.advanceTimersByTime(60_000);
    expect(at).toHaveLength(5);
  });
});
