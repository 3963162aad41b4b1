/**
 * Process lifecycle: turns SIGTERM/SIGINT into one AbortSignal and bounds the drain.
 *
 * Ctrl-C, systemd and docker signal the whole process group, and npx forwards the signal once
 * more, so a second or third signal is normal: it is logged and ignored, never allowed to cut
 * a drain short. Only the drain deadline (30 s by default) ends the process early, with exit
 * code 70, because a stuck drain must not hang a deploy forever.
 *
 * Started through npm (`npx msgpipe`, `npm exec`, `npm run`), msgpipe is a child of the shell
 * npm started, and npm passes a stop signal only to that shell, which ends without passing it
 * on (signalling npx alone left msgpipe running, orphaned). So under npm the shell's exit is a
 * stop too: the parent process is checked every second. Not for a session leader: `setsid`
 * detached it on purpose.
 *
 * After the drain, {@link Lifecycle.finish} makes sure the process really ends: a handle a
 * library leaves open (kafkajs 2.2.4 can keep a broker connection and its timers after a
 * consumer that rode out a broker restart disconnected) would otherwise keep a drained process
 * alive for ever, and a supervisor waiting for it would hang.
 */
import { readFileSync } from 'node:fs';

import type { Logger } from 'pino';

import { PARENT_AT_START, releaseStopSignals, STOP_SIGNALS } from './early-signals.ts';
import { libcFunction } from './libc.ts';

type ExitFunction = (status: number) => void;
let libcExit: ExitFunction | null | undefined;

/**
 * Ends the process now with `code`, through the C library's `_exit(2)`: no exit hook runs. The
 * embedded engine's exit hook closes its connection even while a statement runs in it, which
 * crashed the process (SIGSEGV) or held `process.exit` until the statement ended (2 min seen),
 * so a deadline that must bound the drain cannot go through it. Where `_exit` cannot be had,
 * `process.exit`. msgpipe's log lines go to stderr, which Node writes synchronously to files
 * and terminals; to a pipe a line may still be queued, and is lost as it was with process.exit.
 */
export function exitNow(code: number): never {
  libcExit ??= libcFunction('void _exit(int status)') as ExitFunction | null;
  if (libcExit !== null) libcExit(code);
  process.exit(code);
}

export interface Lifecycle {
  /** Aborts on the first stop signal (or {@link Lifecycle.stop}). */
  readonly signal: AbortSignal;
  /** Starts the shutdown as if a signal had arrived. */
  stop(reason: string): void;
  /** Removes the signal handlers and the deadline timer. */
  dispose(): void;
  /**
   * {@link Lifecycle.dispose}, for a command whose work is over, and then ends the process with
   * `code` if something still holds it after `lingerMs`, logging the resources left open. A
   * process whose event loop empties ends by itself first (the timer does not hold it). Stop
   * signals in the meantime are logged and change nothing.
   */
  finish(code: number): void;
}

export interface LifecycleOptions {
  readonly log: Logger;
  /** Longest drain after the first signal before the process exits anyway. */
  readonly drainTimeoutMs?: number;
  /** How the deadline ends the process; tests replace it. */
  readonly exit?: (code: number) => void;
  /**
   * How often to check that the parent process still lives, stopping when it has gone; by
   * default 1 s when npm started the command (`npm_command` is set), else never (0).
   */
  readonly parentCheckMs?: number;
  /** How long {@link Lifecycle.finish} lets the event loop empty by itself (5 s by default). */
  readonly lingerMs?: number;
}

/** Whether Node writes files when the process exits (`--prof`, `--cpu-prof`, `--heap-prof`, coverage). */
function writesAtExit(): boolean {
  const flags = [...process.execArgv, ...(process.env['NODE_OPTIONS'] ?? '').split(/\s+/)];
  return process.env['NODE_V8_COVERAGE'] !== undefined || flags.some((f) => f === '--prof' || f.startsWith('--cpu-prof') || f.startsWith('--heap-prof'));
}

/** Whether this process leads its own session (started by `setsid`): Linux only, else false. */
function sessionLeader(): boolean {
  try {
    const stat = readFileSync('/proc/self/stat', 'latin1');
    // Fields after the command name, which ends at the last ")": state, ppid, pgrp, session.
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[3]) === process.pid;
  } catch {
    return false;
  }
}

/** Installs the stop-signal handlers for a long-running command. */
export function installLifecycle(options: LifecycleOptions): Lifecycle {
  const controller = new AbortController();
  const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
  const exit = options.exit ?? exitNow;
  let deadline: NodeJS.Timeout | undefined;

  const stop = (reason: string): void => {
    if (controller.signal.aborted) {
      options.log.info({ reason }, 'Already stopping; the drain goes on.');
      return;
    }
    options.log.info({ reason, drainTimeoutMs }, 'Stopping: draining in-flight work.');
    deadline = setTimeout(() => {
      options.log.error({ drainTimeoutMs }, 'Drain deadline passed; exiting before the drain finished.');
      exit(70);
    }, drainTimeoutMs);
    deadline.unref();
    controller.abort(new Error(`stopped by ${reason}`));
  };
  const handlers = STOP_SIGNALS.map((sig) => {
    const handler = (): void => { stop(sig); };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  // What bin/msgpipe.js held while the command line loaded (./early-signals.ts).
  for (const sig of releaseStopSignals()) {
    options.log.info({ reason: sig }, 'A stop signal came while msgpipe loaded.');
    stop(sig);
  }
  const parentCheckMs = options.parentCheckMs ?? (process.env['npm_command'] === undefined || sessionLeader() ? 0 : 1000);
  const parent = PARENT_AT_START;
  const parentCheck =
    parentCheckMs > 0
      ? setInterval(() => {
          if (process.ppid === parent) return;
          clearInterval(parentCheck);
          stop('parent exited');
        }, parentCheckMs).unref()
      : undefined;
  const dispose = (): void => {
    for (const [sig, handler] of handlers) process.off(sig, handler);
    if (deadline) clearTimeout(deadline);
    clearInterval(parentCheck);
  };
  return {
    signal: controller.signal,
    stop,
    dispose,
    finish: (code) => {
      // A signal repeated while the process winds down (npx forwarding it, a second Ctrl-C) must
      // not turn a finished run into a killed one: keep handlers that only log it. Added before
      // the others go: a signal with no listener left, even for a moment, has its default
      // action, and kills the process.
      const quiet = STOP_SIGNALS.map((sig) => {
        const handler = (): void => { options.log.info({ reason: sig, code }, 'Already finished; exiting.'); };
        process.on(sig, handler);
        return [sig, handler] as const;
      });
      dispose();
      // Once the work is over, nothing is left to tear down: end at the 'exit' event, before
      // Node's own teardown (~20 ms with the engine loaded), during which a late signal would
      // have killed the process with its default action.
      // (Not when Node itself has output to write at exit: a CPU or heap profile, coverage.)
      if (options.exit === undefined && !writesAtExit()) process.once('exit', (exitCode) => { exitNow(exitCode); });
      const linger = setTimeout(() => {
        options.log.warn(
          { resources: process.getActiveResourcesInfo(), lingerMs: options.lingerMs ?? 5000, code },
          'Work is over but open handles keep the process alive; exiting.',
        );
        exit(code);
        // Only a test's exit returns.
        for (const [sig, handler] of quiet) process.off(sig, handler);
      }, options.lingerMs ?? 5000);
      linger.unref();
    },
  };
}
