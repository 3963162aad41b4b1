/**
 * The control topic `<p>.control` (key tenant, value `msgpipe.v1.SyncRequest`): how
 * `POST /api/v1/chat-msg/sync` on a query process wakes the sources of that tenant in every
 * ingest process.
 *
 * The publisher resolves once the broker acknowledged the request. Each ingest process listens
 * with a consumer group of its own (every process sees every request) starting at the end of
 * the topic: a request is a nudge to poll now, not work to replay after a restart.
 */
import { randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import type { Wakeups } from '../core/pipeline.ts';
import type { ConsumerRunConfig, Kafka, Producer } from './client.ts';
import { createIdempotentProducer, retryKafka } from './client.ts';
import { decodeSyncRequest, encodeSyncRequest } from './codec.ts';
import { settledWithin, superviseConsumer } from './consume.ts';
import type { Topics } from './topics.ts';

/** Publishes sync requests; the shape the query API's `SyncTrigger` expects. */
export interface SyncPublisher {
  /** Publishes a sync request for `tenant`; resolves once the broker acknowledged it. */
  trigger(tenant: string): Promise<void>;
  close(): Promise<void>;
}

/** A connected {@link SyncPublisher} on the control topic. */
export async function createSyncPublisher(kafka: Kafka, topics: Topics, clock: () => number = Date.now): Promise<SyncPublisher> {
  const producer: Producer = createIdempotentProducer(kafka);
  await producer.connect();
  // One publish per tenant at a time: while the broker is down a send retries for minutes, and
  // clients repeating POST /sync would otherwise pile up sends that all burst out on its return.
  // A request made while one is pending is the same nudge.
  const pending = new Map<string, Promise<void>>();
  return {
    trigger(tenant) {
      const inFlight = pending.get(tenant);
      if (inFlight !== undefined) return inFlight;
      const sent = producer
        .send({
          topic: topics.control,
          acks: -1,
          messages: [{ key: tenant, value: encodeSyncRequest({ tenant, requested_at: clock() }) }],
        })
        .then(() => undefined)
        .finally(() => pending.delete(tenant));
      pending.set(tenant, sent);
      return sent;
    },
    close: () => producer.disconnect(),
  };
}

/** A running listener; `stop()` leaves and deletes its group, and settles within 18 s even with the broker down. */
export interface SyncListener {
  /** Requests seen so far. */
  readonly received: () => number;
  stop(): Promise<void>;
}

/** Wakes `wakeups` for every sync request published from now on. */
export async function startSyncListener(kafka: Kafka, topics: Topics, wakeups: Wakeups, log: Logger): Promise<SyncListener> {
  const groupId = `${topics.control}.ingest.${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false, maxWaitTimeInMs: 250 });
  let received = 0;
  await consumer.connect();
  // Retried like the consumer loops' subscribe (consume.ts): the broker may be restarting.
  try {
    await retryKafka(() => consumer.subscribe({ topic: topics.control, fromBeginning: false }), log, 120);
  } catch (err) {
    await consumer.disconnect().catch(() => undefined);
    throw err;
  }
  // Offsets are committed as usual: after a rejoin (a long pause, a broker restart) the consumer
  // resumes from them, where without any it would start at the end and miss the requests in
  // between.
  const runConfig: ConsumerRunConfig = {
    eachMessage: ({ message }) => {
      received += 1;
      try {
        const request = decodeSyncRequest(message.value ?? Buffer.alloc(0));
        const woken = wakeups.trigger(request.tenant);
        log.info({ tenant: request.tenant, woken }, 'Sync request: polling the tenant now.');
      } catch (err) {
        log.warn({ err, offset: message.offset }, 'Control record is not a msgpipe.v1.SyncRequest; ignored.');
      }
      return Promise.resolve();
    },
  };
  // kafkajs restarting it for good is left alone: the listener is not worth the role.
  const supervisor = superviseConsumer(consumer, runConfig, log, undefined, false);
  // The sources poll on their own schedule without it: the ingest goes on.
  supervisor.crashed.catch(() => {
    log.error('The sync request listener stopped: POST /chat-msg/sync no longer wakes this process\'s sources before their next poll.');
  });
  await consumer.run(runConfig);
  return {
    received: () => received,
    async stop() {
      // A reconnect under way settles first: a run stopped before it joined would go on.
      await settledWithin(supervisor.stop(), 10_000);
      // Leaving the group and deleting it are courtesies (the broker expires the member, and the
      // group's offsets after a week): bounded, without the client's retries (minutes), so a
      // broker that is down does not hold the process's stop.
      await settledWithin(consumer.disconnect(), 5_000);
      const admin = kafka.admin({ retry: { retries: 0 } });
      await settledWithin(
        (async () => {
          try {
            await admin.connect();
            await admin.deleteGroups([groupId]);
          } finally {
            await admin.disconnect();
          }
        })(),
        3_000,
      );
    },
  };
}
