/**
 * `POST /api/v1/chat-msg/sync`: asks for an immediate poll of the tenant's sources and answers
 * at once. msg-server ran the whole pull inside the request (W-P4); here the request only wakes
 * the pollers: in the embedded mode the pipeline's `Wakeups`, in the Kafka mode a publisher to
 * the `<prefix>.control` topic. Both have the {@link SyncTrigger} shape.
 */
export interface SyncTrigger {
  /** Wakes (or asks to wake) every source of `tenant`; may return a promise that settles once asked. */
  trigger(tenant: string): unknown;
}

/** Triggers `tenant`; waits only for the trigger itself (a publish ack), never for the poll. */
export async function triggerSync(trigger: SyncTrigger, tenant: string): Promise<void> {
  await trigger.trigger(tenant);
}
