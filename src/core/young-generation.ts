/**
 * Node 24's larger young generation, capped where msgpipe's memory targets are measured
 * (ADR 0020).
 *
 * V8 sizes the young generation from the machine's memory when the process starts. Node 20 and
 * 22 stop at 16 MiB per semi-space (48 MiB in all); Node 24 goes on to 64 MiB (192 MiB) on a
 * machine with 16 GiB or more. The pipeline allocates fast enough to fill it, and the embedded
 * e2e bench peaked at 631 MB on Node 24 against 472 MB on Node 20 (the target is 500 MB); with
 * `--max-semi-space-size=16` Node 24 peaked at 503 MB.
 *
 * The size can only be set when V8 starts: `v8.setFlagsFromString` after that changes nothing.
 * So `msgpipe run` and `msgpipe demo` replace their own process with the same command and the
 * flag added (`process.execve`, Node ≥ 22.15 on POSIX): the same process id, the same standard
 * streams, before anything else has started. It happens only when
 * - the runtime is Node 24 or later, where the larger default applies;
 * - neither the command line nor `NODE_OPTIONS` sets the size already (an operator's choice
 *   wins);
 * - the memory V8 sized itself from is more than 2 GiB, where Node 20 and 22 would have chosen
 *   16 MiB too. On a smaller machine or container V8's own smaller default stays.
 *
 * No imports beyond `node:os`: bin/msgpipe.js loads this before the rest of the CLI.
 */
import { totalmem } from 'node:os';

/** The semi-space size Node 20 and 22 use on any machine with more than 2 GiB. */
export const SEMI_SPACE_MIB = 16;

const FLAG = '--max-semi-space-size';

/** Commands whose memory the targets bound: they run the pipeline for as long as they are let. */
const LONG_RUNNING_COMMANDS = new Set(['run', 'demo']);

const TWO_GIB = 2 * 1024 ** 3;

/** What {@link relaunchArgs} decides from. */
export interface RelaunchFacts {
  /** `process.versions.node`. */
  readonly nodeVersion: string;
  /** Node's own options on the command line (`process.execArgv`). */
  readonly execArgv: readonly string[];
  /** `NODE_OPTIONS`. */
  readonly nodeOptions: string | undefined;
  /** The memory V8 sizes its heap from: the container's limit, or the machine's memory. */
  readonly memoryBytes: number;
  /** The msgpipe command and its arguments (`process.argv.slice(2)`). */
  readonly args: readonly string[];
}

/** Whether a Node option list sets the semi-space size (`--max-semi-space-size=N`, `--max_semi_space_size N`). */
function setsSemiSpace(options: readonly string[]): boolean {
  return options.some((option) => option.replaceAll('_', '-').startsWith(FLAG));
}

/**
 * The Node options to start the command again with, or `undefined` when the process should go
 * on as it is.
 */
export function relaunchArgs(facts: RelaunchFacts): string[] | undefined {
  const major = Number(facts.nodeVersion.split('.')[0]);
  if (!(major >= 24)) return undefined;
  const command = facts.args[0];
  if (command === undefined || !LONG_RUNNING_COMMANDS.has(command)) return undefined;
  if (setsSemiSpace(facts.execArgv) || setsSemiSpace((facts.nodeOptions ?? '').split(/\s+/))) return undefined;
  if (!(facts.memoryBytes > TWO_GIB)) return undefined;
  return [`${FLAG}=${String(SEMI_SPACE_MIB)}`, ...facts.execArgv];
}

/** The memory V8 sized the heap from: Node takes a cgroup limit when there is one. */
function heapSizingMemory(): number {
  const limit = process.constrainedMemory();
  const total = totalmem();
  return limit > 0 ? Math.min(limit, total) : total;
}

/**
 * Replaces the process with the same command and {@link SEMI_SPACE_MIB} MiB semi-spaces when
 * {@link relaunchArgs} says so. Returns only when it does not: the decision was no, or the
 * platform has no `process.execve` (Windows, Node before 22.15), or the call failed.
 */
export function relaunchWithSmallYoungGeneration(): void {
  const execve = (process as { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => never }).execve;
  if (typeof execve !== 'function') return;
  const nodeArgs = relaunchArgs({
    nodeVersion: process.versions.node,
    execArgv: process.execArgv,
    nodeOptions: process.env['NODE_OPTIONS'],
    memoryBytes: heapSizingMemory(),
    args: process.argv.slice(2),
  });
  if (nodeArgs === undefined) return;
  try {
    execve.call(process, process.execPath, [process.execPath, ...nodeArgs, ...process.argv.slice(1)], process.env);
  } catch {
    // The command goes on with V8's default young generation: more memory, nothing else lost.
  }
}
