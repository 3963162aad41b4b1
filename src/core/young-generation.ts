/**
 * Node 24's larger young generation, capped at the size Node 20 and 22 give it (ADR 0020).
 *
 * V8 sizes the young generation from the memory it sees when the process starts. Node 24 gives
 * it four times what Node 20 and 22 give on any machine above 0.5 GiB: 192 MiB against 48 MiB
 * above 2 GiB, 96 against 24 above 1 GiB, 48 against 12 above 0.5 GiB. The pipeline allocates
 * fast enough to fill it. The embedded e2e bench peaked at 631 MB on Node 24 against 472 MB on
 * Node 20 (the target is 500 MB); with Node 20's size Node 24 peaked at 503–534 MB.
 *
 * The size can only be set when V8 starts: `v8.setFlagsFromString` after that changes nothing.
 * So `msgpipe run` and `msgpipe demo` replace their own process with the same command and
 * `--max-semi-space-size` added (`process.execve`): the same process id, the same standard
 * streams, before anything else has started. It happens only when
 * - the runtime is Node 24 or later, where the larger default applies;
 * - neither the command line nor `NODE_OPTIONS` sizes the young generation already
 *   (`--max-semi-space-size`, `--min-semi-space-size`, `--max-heap-size`): an operator's choice
 *   wins, and is also how to keep V8's default;
 * - the memory V8 sized itself from is above 0.5 GiB: below that every version picks 1 MiB;
 * - the process is not a forked child with an IPC channel (a process manager, `node --watch`),
 *   whose channel would not survive, nor started with `--inspect`, whose debugger would be cut
 *   off, nor under the permission model (`--permission`).
 *
 * No imports beyond Node's own: bin/msgpipe.js loads this before the rest of the CLI.
 */
import { accessSync, constants } from 'node:fs';
import { totalmem } from 'node:os';

/**
 * Options by which an operator sizes the young generation. V8 also refuses `--max-heap-size`
 * together with both `--max-old-space-size` and `--max-semi-space-size`: it aborts at start.
 */
const YOUNG_GENERATION_FLAGS = ['--max-semi-space-size', '--min-semi-space-size', '--max-heap-size'];

/** Node's permission model: without `--allow-child-process` it refuses `process.execve`. */
const PERMISSION_FLAGS = ['--permission', '--experimental-permission'];

/** `--inspect`, `--inspect-brk`, `--inspect-wait`: a debugger attached to the first process would be cut off. */
const INSPECT_FLAGS = ['--inspect'];

/** Commands whose memory the targets bound: they run the pipeline for as long as they are let. */
const LONG_RUNNING_COMMANDS = new Set(['run', 'demo']);

const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

/**
 * The semi-space size, MiB, that Node 20 and 22 give V8 with this much memory, or `undefined`
 * at 0.5 GiB and less, where Node 24 gives the same. Measured with the machine's memory faked
 * (docs/adr/0020-young-generation-on-node-24.md).
 */
export function nodeTwentySemiSpaceMib(memoryBytes: number): number | undefined {
  if (memoryBytes > 2 * GIB) return 16;
  if (memoryBytes > GIB) return 8;
  if (memoryBytes > 512 * MIB) return 4;
  return undefined;
}

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
  /** Whether the process has an IPC channel to its parent (`process.channel`). */
  readonly hasIpcChannel: boolean;
}

/** Whether a Node option list has an option starting with one of `flags`, in either spelling, quoted or not. */
function hasOption(options: readonly string[], flags: readonly string[]): boolean {
  return options.some((option) => {
    const bare = option.replace(/^["']+/, '').replaceAll('_', '-');
    return flags.some((flag) => bare.startsWith(flag));
  });
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
  if (facts.hasIpcChannel) return undefined;
  const options = [...facts.execArgv, ...(facts.nodeOptions ?? '').split(/\s+/)];
  if ([YOUNG_GENERATION_FLAGS, INSPECT_FLAGS, PERMISSION_FLAGS].some((flags) => hasOption(options, flags))) return undefined;
  const size = nodeTwentySemiSpaceMib(facts.memoryBytes);
  if (size === undefined) return undefined;
  return [`--max-semi-space-size=${String(size)}`, ...facts.execArgv];
}

/** The memory V8 sized the heap from: Node takes a cgroup limit when there is one. */
export function heapSizingMemory(): number {
  const limit = process.constrainedMemory();
  const total = totalmem();
  return limit > 0 ? Math.min(limit, total) : total;
}

/**
 * Replaces the process with the same command and Node 20's semi-space size when
 * {@link relaunchArgs} says so. Returns only when it does not: the decision was no, or the
 * platform has no `process.execve` (Windows, Node before 22.15), or node's executable cannot be
 * run again, or Node refused the call. A failing execve(2) itself aborts the process (Node prints
 * the error and raises SIGABRT), so the executable is checked first.
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
    hasIpcChannel: process.channel !== undefined,
  });
  if (nodeArgs === undefined) return;
  try {
    accessSync(process.execPath, constants.X_OK);
  } catch {
    // Node's executable was replaced or removed under the running process (an upgrade, say):
    // the command goes on with V8's default young generation, more memory and nothing else lost.
    return;
  }
  try {
    execve.call(process, process.execPath, [process.execPath, ...nodeArgs, ...process.argv.slice(1)], process.env);
  } catch {
    // Refused before the system call (a permission model, say): the command goes on as it is.
  }
}
