/**
 * `POST /api/v1/chat-msg/sync`: asks for an immediate poll of the tenant's sources and answers
 * at once. msg-server ran the whole pull inside the request (W-P4); here the request only wakes
 * the pollers: in the embedded mode the pipeline's `Wakeups`, in the Kafka mode a publisher to
 * the `<prefix>.control` topic. Both have the {@link SyncTrigger} shape.
 */
import { API_CODES, ApiError } from './envelope.ts';

export interface SyncTrigger {
  /** Wakes (or asks to wake) every source of `tenant`; may return a promise that settles once asked. */
  trigger(tenant: string): unknown;
}

/**
 * How long a request waits for the trigger (the control topic's ack in the Kafka mode). A broker
 * that is down would otherwise hold the request through the producer's retries.
 */
export const SYNC_ACK_TIMEOUT_MS = 3000;

/** What the race in {@link triggerSync} settles with when the trigger took too long. */
const TIMED_OUT = Symbol('timed out');

/**
 * Triggers `tenant`; waits only for the trigger itself (a publish ack), never for the poll, and
 * for at most `timeoutMs`: then it answers 500 with a message saying the request was not
 * delivered, while the publish goes on in the background (its late failure is only logged by
 * `onLateFailure`). The pollers keep their schedule either way.
 */
export async function triggerSync(
  trigger: SyncTrigger,
  tenant: string,
  onLateFailure: (err: unknown) => void,
  timeoutMs: number = SYNC_ACK_TIMEOUT_MS,
): Promise<void> {
  const pending = Promise.resolve(trigger.trigger(tenant));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => {
      resolve(TIMED_OUT);
    }, timeoutMs);
  });
  try {
    const outcome = await Promise.race([pending, timedOut]);
    if (outcome === TIMED_OUT) {
      pending.catch(onLateFailure);
      throw new ApiError(
        API_CODES.INTERNAL,
        `sync request not delivered within ${String(timeoutMs / 1000)} s (the control topic did not accept it); sources keep polling on their schedule`,
      );
    }
  } finally {
    clearTimeout(timer);
  }
}
