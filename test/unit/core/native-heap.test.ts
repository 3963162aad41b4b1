/**
 * The fixed mmap threshold: after limitNativeHeap, buffers of a megabyte and more no longer come
 * from glibc's main heap, even when glibc had raised its threshold above them.
 */
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { libcFunction } from '../../../src/core/libc.ts';
import { limitNativeHeap, MMAP_THRESHOLD_BYTES } from '../../../src/core/native-heap.ts';

/** Size of glibc's main heap (`[heap]` in /proc/self/maps), bytes. */
function mainHeapSize(): number {
  const line = readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .find((l) => l.endsWith('[heap]'));
  if (line === undefined) return 0;
  const [start = '0', end = '0'] = line.split(' ')[0]!.split('-');
  return parseInt(end, 16) - parseInt(start, 16);
}

/** Allocates `count` native buffers of `bytes` (Node takes them from malloc) and keeps them. */
function allocate(count: number, bytes: number): Buffer[] {
  return Array.from({ length: count }, () => Buffer.allocUnsafeSlow(bytes).fill(1));
}

const glibc = process.platform === 'linux' && (process.report.getReport() as { header: { glibcVersionRuntime?: string } }).header.glibcVersionRuntime !== undefined;

describe('limitNativeHeap', () => {
  it('leaves an operator-set MALLOC_MMAP_THRESHOLD_ alone', () => {
    expect(limitNativeHeap(undefined, { MALLOC_MMAP_THRESHOLD_: '65536' })).toBe(false);
  });

  it('keeps megabyte buffers out of the main heap after glibc raised its threshold above them', () => {
    if (!glibc) {
      expect(limitNativeHeap(undefined, {})).toBe(false);
      return;
    }
    // What glibc does on its own once a 32 MiB mapping was freed: serve everything below from the heap.
    const mallopt = libcFunction('int mallopt(int param, int value)') as (param: number, value: number) => number;
    expect(mallopt(-3, 32 * 1024 * 1024)).toBe(1);
    const before = mainHeapSize();
    const onHeap = allocate(16, 2 * MMAP_THRESHOLD_BYTES);
    const grown = mainHeapSize() - before;
    // Most of the 32 MiB (free space already in the heap takes some).
    expect(grown).toBeGreaterThanOrEqual(8 * 2 * MMAP_THRESHOLD_BYTES);

    expect(limitNativeHeap(undefined, {})).toBe(true);
    const after = mainHeapSize();
    const mapped = allocate(16, 2 * MMAP_THRESHOLD_BYTES);
    expect(mainHeapSize() - after).toBeLessThan(2 * MMAP_THRESHOLD_BYTES);
    expect(onHeap.length + mapped.length).toBe(32);
  });
});
