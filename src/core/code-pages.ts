/**
 * Releases the resident pages of code and read-only data that the process touched once and no
 * longer uses (ADR 0017).
 *
 * Loading chDB's engine (libchdb, ~600 MB mapped) runs its static initializers across the whole
 * library, and the kernel maps pages around each one it touches: about 200 MB of file pages end up
 * resident in the process although a steady pipeline uses ~20 MB of them. They count in its RSS
 * until memory pressure makes the kernel evict them. This does early what the kernel does then:
 * `madvise(MADV_DONTNEED)` on the read-only, private, file-backed mappings of libchdb and of the
 * node executable that hold no private copy of any page, in memory or in swap (`Anonymous: 0` and
 * `Swap: 0` in /proc/self/smaps). Their contents are the file's, so a page used again is mapped
 * again from the page cache (a minor fault). A mapping changed between reading smaps and the call
 * (a debugger's breakpoint, a uprobe written into the code) would lose that change, as it would
 * when the kernel reclaims the page.
 *
 * Linux only (the kernel interface is /proc/self/smaps); elsewhere, or when the FFI library
 * (koffi) cannot load, it does nothing.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

import type { Logger } from 'pino';

import { libcFunction } from './libc.ts';

/** madvise(2) advice: drop the pages from this process; file-backed ones are read again on use. */
const MADV_DONTNEED = 4;

type Madvise = (addr: bigint, length: bigint, advice: number) => number;

/** A mapping line of /proc/self/smaps: `start-end perms offset dev inode path`. */
const MAPPING = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/;

/** One mapping that may be released. */
export interface CodeMapping {
  readonly start: bigint;
  readonly end: bigint;
  readonly path: string;
}

/**
 * The mappings of `smaps` text that are safe and worth releasing: read-only (`r-xp` or `r--p`),
 * private, backed by a file `isCodeFile` accepts, with no copied-on-write page, in memory (`Anonymous`) or
 * swapped out (`Swap`). A mapping whose smaps lacks either line is not released.
 */
export function releasableMappings(smaps: string, isCodeFile: (path: string) => boolean): CodeMapping[] {
  const out: CodeMapping[] = [];
  let current: (CodeMapping & { anonymous: number | undefined; swap: number | undefined }) | undefined;
  const finish = (): void => {
    if (current?.anonymous === 0 && current.swap === 0) out.push({ start: current.start, end: current.end, path: current.path });
    current = undefined;
  };
  const kb = (line: string): number => Number(/(\d+)/.exec(line)?.[1] ?? -1);
  for (const line of smaps.split('\n')) {
    const m = MAPPING.exec(line);
    if (m) {
      finish();
      const [, start = '', end = '', perms = '', path = ''] = m;
      if ((perms === 'r-xp' || perms === 'r--p') && isCodeFile(path)) {
        current = { start: BigInt(`0x${start}`), end: BigInt(`0x${end}`), path, anonymous: undefined, swap: undefined };
      }
    } else if (current !== undefined && line.startsWith('Anonymous:')) {
      current.anonymous = kb(line);
    } else if (current !== undefined && line.startsWith('Swap:')) {
      current.swap = kb(line);
    }
  }
  finish();
  return out;
}

/** The node executable as the kernel names its mappings (symbolic links resolved). */
let nodeExecutable: string | undefined;

/** Whether mappings of `path` are released: the node executable and chDB's engine library. */
function isCodeFile(path: string): boolean {
  if (nodeExecutable === undefined) {
    try {
      nodeExecutable = realpathSync(process.execPath);
    } catch {
      nodeExecutable = process.execPath;
    }
  }
  return path === nodeExecutable || /\/libchdb[^/]*\.so[^/]*$/.test(path);
}

/** What one release did. */
export interface CodePagesRelease {
  readonly mappings: number;
  /** Bytes of address space advised (not all of it was resident). */
  readonly bytes: number;
  /** Resident file pages of the process before and after, bytes (`RssFile`). */
  readonly residentBefore: number;
  readonly residentAfter: number;
  readonly ms: number;
}

function rssFile(): number {
  const m = /^RssFile:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

let madvise: Madvise | null | undefined;

function loadMadvise(log: Logger | undefined): Madvise | null {
  if (madvise === undefined) {
    madvise = libcFunction('int madvise(uintptr_t addr, size_t length, int advice)', (err) => {
      log?.debug({ err }, 'madvise is not available; cold code pages stay resident.');
    }) as Madvise | null;
  }
  return madvise;
}

/**
 * Releases the cold code pages now (see the module comment). Never throws.
 *
 * @returns what it did, or `undefined` where it cannot (not Linux, no FFI)
 */
export function releaseCodePages(log?: Logger): CodePagesRelease | undefined {
  const call = loadMadvise(log);
  if (call === null) return undefined;
  try {
    const started = performance.now();
    const before = rssFile();
    const smaps = readFileSync('/proc/self/smaps', 'utf8');
    const mappings = releasableMappings(smaps, isCodeFile);
    let bytes = 0;
    let released = 0;
    for (const m of mappings) {
      if (call(m.start, m.end - m.start, MADV_DONTNEED) === 0) {
        released += 1;
        bytes += Number(m.end - m.start);
      }
    }
    return { mappings: released, bytes, residentBefore: before, residentAfter: rssFile(), ms: performance.now() - started };
  } catch (err) {
    log?.debug({ err }, 'Releasing cold code pages failed.');
    return undefined;
  }
}

/** When {@link startCodePageRelease} releases, after its first release. */
export interface CodePageSchedule {
  /** Extra releases in the first seconds, ms after the start. */
  readonly early: readonly number[];
  /** Then one every this many ms. */
  readonly intervalMs: number;
}

/**
 * The default schedule. Code run for the first time (the first inserts, merges and queries)
 * brings its pages back, and their neighbours, in the first seconds: resident file pages stayed
 * at 123–128 MB until the release at 10 s brought them to 87–92 MB (1M e2e bench). Releases at
 * 3 and 6 s bring that down within the first seconds (docs/benchmarks.md, session 9).
 */
export const CODE_PAGE_SCHEDULE: CodePageSchedule = { early: [3000, 6000], intervalMs: 10_000 };

/**
 * Releases cold code pages now, at the schedule's early times and then every `intervalMs`
 * (pages used since come back on their own, with their neighbours). Returns a stop function.
 * The timers do not keep the process alive.
 */
export function startCodePageRelease(
  log: Logger,
  schedule: CodePageSchedule = CODE_PAGE_SCHEDULE,
  release: (log: Logger) => CodePagesRelease | undefined = releaseCodePages,
): () => void {
  const run = (): void => {
    const r = release(log);
    if (r !== undefined) {
      log.debug(
        { mappings: r.mappings, residentBeforeMb: Math.round(r.residentBefore / 2 ** 20), residentAfterMb: Math.round(r.residentAfter / 2 ** 20), ms: Math.round(r.ms) },
        'Released cold code pages.',
      );
    }
  };
  run();
  const timers = schedule.early.map((ms) => setTimeout(run, ms));
  const interval = setInterval(run, schedule.intervalMs);
  for (const t of [...timers, interval]) t.unref();
  return () => {
    for (const t of timers) clearTimeout(t);
    clearInterval(interval);
  };
}
