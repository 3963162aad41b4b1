/**
 * The benchmarked child processes, watched: a bench fails (throws {@link BenchFailure}) instead
 * of reporting a rate when a child died before the work was done, when one did not exit 0 after
 * the stop signal, or when the store holds other counts than the simulator released.
 */
import type { ChildProcess } from 'node:child_process';

/** A benchmark run that must not be reported: what went wrong, for the operator. */
export class BenchFailure extends Error {
  override readonly name = 'BenchFailure';
}

export interface ChildExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Set when {@link stopAll} had to SIGKILL it: milliseconds it was given after SIGTERM. */
  readonly killedAfterMs?: number;
}

/** A child process with its exit recorded from the moment it was spawned. */
export interface Watched {
  readonly name: string;
  readonly child: ChildProcess;
  /** Resolves when the process has exited (never rejects). */
  readonly exit: Promise<ChildExit>;
  /** The exit, once it happened. */
  exited(): ChildExit | undefined;
}

/** Watches `child` (call it right after spawn, so that no exit is missed). */
export function watch(name: string, child: ChildProcess): Watched {
  let done: ChildExit | undefined;
  const exit = new Promise<ChildExit>((resolve) => {
    child.once('exit', (code, signal) => {
      done = { code, signal };
      resolve(done);
    });
    // A spawn failure (no 'exit' follows): report it as an exit without a code.
    child.once('error', () => {
      done ??= { code: null, signal: null };
      resolve(done);
    });
  });
  return { name, child, exit, exited: () => done };
}

/** How a child ended, in words (exit code 70 is the pipeline's drain deadline). */
export function describeExit(name: string, exit: ChildExit): string {
  if (exit.killedAfterMs !== undefined) return `${name} had not exited ${String(exit.killedAfterMs / 1000)} s after SIGTERM and was killed`;
  if (exit.signal !== null) return `${name} was killed by ${exit.signal}`;
  if (exit.code === null) return `${name} could not be started`;
  if (exit.code === 70) return `${name} exited with code 70: the drain deadline passed and cut in-flight work off (docs/operations.md, "Stopping")`;
  return `${name} exited with code ${String(exit.code)}`;
}

/**
 * Polls `done` every `intervalMs` (calling `tick` between polls) until it holds; fails as soon
 * as any child exits first, naming it and its exit code. The caller kills the others.
 */
export async function untilDone(
  done: () => boolean | Promise<boolean>,
  children: readonly Watched[],
  what: string,
  tick: () => Promise<void> = () => Promise.resolve(),
  intervalMs = 100,
): Promise<void> {
  const early = (): never => {
    const dead = children.filter((c) => c.exited() !== undefined);
    throw new BenchFailure(`${dead.map((c) => describeExit(c.name, c.exited()!)).join('; ')} before ${what}; the run is not reported`);
  };
  for (;;) {
    if (children.some((c) => c.exited() !== undefined)) early();
    if (await done()) return;
    // Wake up at once when a child exits instead of sleeping the interval out.
    await Promise.race([new Promise((r) => setTimeout(r, intervalMs)), ...children.map((c) => c.exit)]);
    if (children.some((c) => c.exited() !== undefined)) early();
    await tick();
  }
}

/**
 * Sends SIGTERM to every child still running and waits for all of them, up to `graceMs`
 * (then SIGKILL). Returns each child's exit in the order given.
 */
export async function stopAll(children: readonly Watched[], graceMs = 60_000): Promise<ChildExit[]> {
  for (const c of children) if (c.exited() === undefined) c.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, graceMs); });
  await Promise.race([Promise.all(children.map((c) => c.exit)), late]);
  clearTimeout(timer);
  const stuck = new Set(children.filter((c) => c.exited() === undefined));
  const exits = await killAll(children);
  return exits.map((exit, i) => (stuck.has(children[i]!) ? { ...exit, killedAfterMs: graceMs } : exit));
}

/** SIGKILLs every child still running and waits until all have exited. */
export async function killAll(children: readonly Watched[]): Promise<ChildExit[]> {
  for (const c of children) if (c.exited() === undefined) c.child.kill('SIGKILL');
  return Promise.all(children.map((c) => c.exit));
}

/** Fails with every problem listed when `problems` is not empty. */
export function failIfAny(bench: string, problems: readonly string[]): void {
  if (problems.length > 0) throw new BenchFailure(`${bench} bench failed, the run is not reported: ${problems.join('; ')}`);
}
