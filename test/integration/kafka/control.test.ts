/**
 * The control topic: a sync request published for a tenant wakes that tenant's sleeping
 * sources in an ingest process at once.
 */
import { describe, expect, it } from 'vitest';

import { createSyncPublisher } from '../../../src/kafka/control.ts';
import type { Kafka } from '../../../src/kafka/client.ts';
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
