/**
 * Process lifecycle: turns SIGTERM/SIGINT into one AbortSignal and bounds the drain.
 *
 * Ctrl-C, systemd and docker signal the whole process group, and npx forwards the signal once
 * more, so a second or third signal is normal: it is logged and ignored, never allowed to cut
 * a drain short. Only the drain deadline (30 s by default) ends the process early, with exit
 * code 70, because a stuck drain must not hang a deploy forever.
 */
import type { Logger } from 'pino';

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

export interface Lifecycle {
  /** Aborts on the first stop signal (or {@link Lifecycle.stop}). */
  readonly signal: AbortSignal;
  /** Starts the shutdown as if a signal had arrived. */
  stop(reason: string): void;
  /** Removes the signal handlers and the deadline timer. */
  dispose(): void;
}

export interface LifecycleOptions {
  readonly log: Logger;
  /** Longest drain after the first signal before the process exits anyway. */
  readonly drainTimeoutMs?: number;
  /** How the deadline ends the process; tests replace it. */
  readonly exit?: (code: number) => void;
}

/** Installs the stop-signal handlers for a long-running command. */
export function installLifecycle(options: LifecycleOptions): Lifecycle {
  const controller = new AbortController();
  const drainTimeoutMs = options.drainTimeoutMs ?? 30_000;
  const exit = options.exit ?? ((code: number) => process.exit(code));
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
  const handlers = SIGNALS.map((sig) => {
    const handler = (): void => { stop(sig); };
    process.on(sig, handler);
    return [sig, handler] as const;
  });
  return {
    signal: controller.signal,
    stop,
    dispose: () => {
      for (const [sig, handler] of handlers) process.off(sig, handler);
      if (deadline) clearTimeout(deadline);
    },
  };
}
