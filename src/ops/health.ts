/**
 * Readiness (`GET /readyz`): the process is ready once every condition a role declared is met,
 * and stops being ready for good when it starts draining.
 *
 * Liveness (`GET /healthz`) needs nothing: answering at all proves the event loop runs.
 */

/** What `/readyz` reports. */
export interface ReadinessState {
  readonly ready: boolean;
  readonly draining: boolean;
  /** Declared conditions not met yet, in declaration order. */
  readonly waiting: readonly string[];
}

/**
 * Named start-up conditions. A role declares what it needs (`store`, `sources`, `kafka` …)
 * with {@link Readiness.require}, marks each one with {@link Readiness.met}, and calls
 * {@link Readiness.drain} on its stop signal. With nothing declared the process is not ready:
 * an empty list would report ready before anything started.
 */
export class Readiness {
  private readonly conditions = new Map<string, boolean>();
  private draining = false;

  /** Declares conditions that must be met before the process is ready. */
  require(...names: string[]): this {
    for (const name of names) if (!this.conditions.has(name)) this.conditions.set(name, false);
    return this;
  }

  /** Marks a condition met (declaring it if needed). */
  met(name: string): void {
    this.conditions.set(name, true);
  }

  /** The process is stopping: not ready from now on. */
  drain(): void {
    this.draining = true;
  }

  state(): ReadinessState {
    const waiting = [...this.conditions].filter(([, ok]) => !ok).map(([name]) => name);
    return { ready: !this.draining && this.conditions.size > 0 && waiting.length === 0, draining: this.draining, waiting };
  }
}
