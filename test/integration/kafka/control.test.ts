/**
 * The control topic: a sync request published for a tenant wakes that tenant's sleeping
 * sources in an ingest process at once.
 */
import { connect, type Socket } from 'node:net';

import { Kafka as KafkaClient, logLevel } from 'kafkajs';
import pino from 'pino';
import { describe, expect, it } from 'vitest';

import { Wakeups } from '../../../src/core/pipeline.ts';
import { createSyncPublisher, startSyncListener } from '../../../src/kafka/control.ts';
import { ensureTopics, ROLE_RETRY, type Kafka } from '../../../src/kafka/client.ts';
import { topicNames } from '../../../src/kafka/topics.ts';
import { sign } from '../../../src/query/index.ts';
import { startSimulator } from '../../../src/simulate/index.ts';
import { type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { waitFor, withTempDir, writeConfig } from '../../helpers/msgpipe.ts';
import { accounts, caughtUp, IDS, kafkaConfig, requestCounts, startRole, stopGracefully, TENANT, waitReady } from './support.ts';

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

describe('control topic', () => {
  it('a sync listener stops within seconds when the broker has gone away', async () => {
    // A client whose connections can be cut: after `down`, every socket closes and every new
    // connection goes to a port nobody listens on, as with a broker that is down.
    let down = false;
    const sockets = new Set<Socket>();
    const client = new KafkaClient({
      brokers: broker.brokers,
      clientId: 'control-test',
      logLevel: logLevel.NOTHING,
      retry: ROLE_RETRY,
      socketFactory: ({ host, port, onConnect }) => {
        const socket = down ? connect({ host: '127.0.0.1', port: 9 }, onConnect) : connect({ host, port }, onConnect);
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
        return socket;
      },
    });
    const topics = topicNames(uniqueTopic('ctl-down'));
    const admin = client.admin();
    await admin.connect();
    await ensureTopics(admin, [{ topic: topics.control, numPartitions: 1 }]);
    await admin.disconnect();
    const listener = await startSyncListener(client, topics, new Wakeups(), pino({ level: 'silent' }));
    down = true;
    for (const socket of sockets) socket.destroy();
    const started = Date.now();
    await listener.stop();
    // With the client's retries (60, up to 5 s apart) an admin call here waited minutes.
    expect(Date.now() - started).toBeLessThan(16_000);
  }, 60_000);

  it('wakes the sources of the tenant when a sync request is published', async () => {
    await withTempDir('kafka-control', async (dir) => {
      const prefix = uniqueTopic('ctl');
      const sim = await startSimulator({ accounts: accounts(60) });
      try {
        const config = kafkaConfig(dir, sim.url, broker.brokers, prefix) as { sources: { pollIntervalMs: number }[] };
        // Sources sleep a minute between empty polls unless woken.
        for (const s of config.sources) s.pollIntervalMs = 60_000;
        const configFile = await writeConfig(dir, config);
        const ingest = startRole(configFile, 'ingest', { MSGPIPE_LOG_LEVEL: 'info' });
        try {
          await waitReady(ingest);
          await waitFor(() => caughtUp(sim), 60_000, 'the sources to catch up');
          await new Promise((r) => setTimeout(r, 1500));
          const before = requestCounts(sim);
          expect(caughtUp(sim)).toBe(true);
          const publisher = await createSyncPublisher(kafka, topicNames(prefix));
          try {
            await publisher.trigger(TENANT);
          } finally {
            await publisher.close();
          }
          await waitFor(() => IDS.every((id) => sim.received(id).length > before[id]!), 20_000, 'every source of the tenant to poll again');
        } finally {
          await stopGracefully(ingest);
        }
        expect(ingest.stderr()).toContain('Sync request: polling the tenant now.');
      } finally {
        await sim.close();
      }
    });
  });

  it('POST /api/v1/chat-msg/sync on a query process wakes the ingest process through the control topic', async () => {
    await withTempDir('kafka-sync', async (dir) => {
      const prefix = uniqueTopic('sync');
      const sim = await startSimulator({ accounts: accounts(60) });
      try {
        const config = kafkaConfig(dir, sim.url, broker.brokers, prefix) as { sources: { pollIntervalMs: number }[]; query?: unknown };
        for (const s of config.sources) s.pollIntervalMs = 60_000;
        config.query = { host: '127.0.0.1', port: 0 };
        const configFile = await writeConfig(dir, config);
        const ingest = startRole(configFile, 'ingest', { MSGPIPE_LOG_LEVEL: 'info' });
        const query = startRole(configFile, 'sink,query', { MSGPIPE_LOG_LEVEL: 'info' });
        try {
          await waitReady(ingest);
          await waitFor(() => query.stderr().includes('Query API listening.'), 60_000, 'the query API to listen');
          const { url } = JSON.parse(query.stderr().split('\n').find((l) => l.includes('Query API listening.'))!) as { url: string };
          await waitFor(() => caughtUp(sim), 60_000, 'the sources to catch up');
          await new Promise((r) => setTimeout(r, 1500));
          const before = requestCounts(sim);
          const res = await fetch(`${url}/api/v1/chat-msg/sync`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ ext_corp_id: TENANT, signature: sign({ ext_corp_id: TENANT }, 'test-secret') }),
          });
          expect(await res.json()).toEqual({ code: 0, message: '同步任务已启动', data: null });
          await waitFor(() => IDS.every((id) => sim.received(id).length > before[id]!), 20_000, 'every source of the tenant to poll again');
        } finally {
          await stopGracefully(ingest);
          await stopGracefully(query);
        }
      } finally {
        await sim.close();
      }
    });
  });
});
