/**
 * Keeps large native allocations out of glibc's main heap (ADR 0017).
 *
 * Node's Buffers, the chDB binding's copies of insert bodies and query results, and undici's
 * bodies are malloc'd from glibc. glibc serves a large allocation with its own mapping, returned
 * to the system when freed, but once such a mapping is freed it raises that threshold to the
 * freed size (up to 32 MiB). After that, the pipeline's megabyte-sized buffers come from the main
 * heap, which only shrinks from its top. In the e2e bench that heap held 115–124 MB. A fixed
 * threshold of 1 MiB (`mallopt(M_MMAP_THRESHOLD)`, which also stops the raising) keeps it at
 * 62–69 MB.
 *
 * An operator's own `MALLOC_MMAP_THRESHOLD_` wins: then this does nothing.
 */
import type { Logger } from 'pino';

import { libcFunction } from './libc.ts';

/** mallopt(3) parameter: the size from which malloc uses a mapping of its own. */
const M_MMAP_THRESHOLD = -3;

/** Allocations of this size and more get their own mapping. */
export const MMAP_THRESHOLD_BYTES = 1024 * 1024;

/**
 * Sets glibc's mmap threshold to {@link MMAP_THRESHOLD_BYTES} (fixed) unless the environment sets
 * one. Never throws.
 *
 * @returns whether it was set
 */
export function limitNativeHeap(log?: Logger, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env['MALLOC_MMAP_THRESHOLD_'] !== undefined) return false;
  const mallopt = libcFunction('int mallopt(int param, int value)', (err) => {
    log?.debug({ err }, 'mallopt is not available; glibc keeps its adaptive mmap threshold.');
  }) as ((param: number, value: number) => number) | null;
  // mallopt returns 1 on success; musl's does nothing and returns 0.
  return mallopt !== null && mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) === 1;
}
