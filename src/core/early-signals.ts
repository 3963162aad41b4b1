/**
 * Stop signals that arrive while the command line loads. Loading msgpipe's modules takes about
 * 0.4 s before a long-running command installs its lifecycle (./lifecycle.ts); a SIGTERM or
 * Ctrl-C in that time would end the process with the signal's default action, as a kill, and
 * a supervisor stopping a service that just started would see it die instead of exit 0.
 *
 * bin/msgpipe.js loads this module alone and holds the signals before it loads the rest. The
 * lifecycle takes over what was held; a command without a lifecycle releases the hold before
 * it starts, and a signal held until then is raised again with its default action.
 *
 * No imports: this module must load in a few milliseconds.
 */

/**
 * The parent process when msgpipe started loading (bin/msgpipe.js loads this module first): the
 * lifecycle's parent watch compares against it, so a parent gone during the load counts too.
 */
export const PARENT_AT_START = process.ppid;

/** The signals that stop msgpipe; the lifecycle (./lifecycle.ts) handles the same ones. */
export const STOP_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

interface Hold {
  readonly signals: NodeJS.Signals[];
  readonly handler: (signal: NodeJS.Signals) => void;
}

let hold: Hold | undefined;

/** From now on, stop signals are recorded instead of ending the process. */
export function holdStopSignals(): void {
  if (hold !== undefined) return;
  const signals: NodeJS.Signals[] = [];
  const handler = (signal: NodeJS.Signals): void => {
    signals.push(signal);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, handler);
  hold = { signals, handler };
}

/** Ends the hold and returns the signals that arrived during it, in order (none without a hold). */
export function releaseStopSignals(): NodeJS.Signals[] {
  if (hold === undefined) return [];
  for (const signal of STOP_SIGNALS) process.off(signal, hold.handler);
  const { signals } = hold;
  hold = undefined;
  return signals;
}

/**
 * Resolves once the event loop has polled for I/O, in which signals that arrived meanwhile reach
 * their handlers. Node runs a signal's handlers only when the loop polls, and Node 22 and 24
 * load a local module graph synchronously (Node 20 turned the loop between modules): a SIGTERM
 * during the load is still waiting when the load ends. Removing the last handler then drops it.
 *
 * Two immediates: code running in the poll phase itself (a callback of the loader, say) sees its
 * first immediate in the same turn, before the loop polls again.
 */
export function deliverPendingSignals(): Promise<void> {
  return new Promise((resolve) => {
    setImmediate(() => {
      setImmediate(resolve);
    });
  });
}

/**
 * Ends the hold for a command that handles no stop signal itself: a signal that arrived during
 * it, or is still waiting for the loop, is raised again and ends the process as it would have
 * without the hold.
 */
export async function releaseStopSignalsToDefault(): Promise<void> {
  if (hold === undefined) return;
  await deliverPendingSignals();
  const first = releaseStopSignals()[0];
  if (first !== undefined && process.listenerCount(first) === 0) process.kill(process.pid, first);
}
