/**
 * How a distributed process ends: only a stop signal or a failing role ends it. A process
 * without sources (sink and query nodes run with the default roles) keeps running; a role that
 * fails stops the whole process with a non-zero exit, its query API closed, instead of leaving
 * it hanging.
 */
import { describe, expect, it } from 'vitest';

import type { Kafka } from '../../../src/kafka/client.ts';
import { topicNames } from '../../../src/kafka/topics.ts';
import { startSimulator } from '../../../src/simulate/index.ts';
import { type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { startMsgpipe, waitFor, withTempDir, writeConfig } from '../../helpers/msgpipe.ts';
import { accounts, kafkaConfig, waitReady } from './support.ts';

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

const running = Symbol('running');

describe('distributed process lifecycle', () => {
  it('stops at once, exit 0, when stopped while the broker cannot be reached at start-up', async () => {
    await withTempDir('kafka-unreachable', async (dir) => {
      // Port 1 on loopback refuses: kafkajs retries the connection for minutes.
      const config = { ...(kafkaConfig(dir, 'http://127.0.0.1:9', ['127.0.0.1:1'], uniqueTopic('mpu')) as object), query: { port: 0 } };
      const proc = startMsgpipe(['run', '--config', await writeConfig(dir, config), '--role', 'ingest,transform,sink']);
      await waitFor(() => proc.stderr().includes('ECONNREFUSED'), 30_000, 'a refused connection');
      const stoppedAt = Date.now();
      proc.child.kill('SIGTERM');
      // A repeated signal (npx forwards it once more) does not change the outcome.
      setTimeout(() => proc.child.kill('SIGTERM'), 200);
      expect(await proc.exited, proc.stderr().slice(-3000)).toBe(0);
      // Under the 30 s drain deadline (exit 70): kafkajs's retry timers hold the event loop
      // for at most the 5 s linger.
      expect(Date.now() - stoppedAt).toBeLessThan(15_000);
      expect(proc.stderr()).toContain('Stopped during start-up');
    });
  });

  it('keeps a process without sources (default roles) running until SIGTERM', async () => {
    await withTempDir('kafka-nosources', async (dir) => {
      const prefix = uniqueTopic('mpn');
      const config = { ...(kafkaConfig(dir, 'http://127.0.0.1:9', broker.brokers, prefix) as object), sources: [], query: { port: 0 } };
      // No --role: ingest, transform, sink and query.
      const proc = startMsgpipe(['run', '--config', await writeConfig(dir, config)]);
      try {
        await waitReady(proc, 90_000);
        const state = await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 5000, running))]);
        expect(state, proc.stderr().slice(-3000)).toBe(running);
        expect(proc.stderr()).toContain('the ingest role has nothing to poll');
      } finally {
        proc.child.kill('SIGTERM');
        expect(await proc.exited).toBe(0);
      }
    });
  });

  it('exits non-zero, with its query API closed, when a role fails', async () => {
    await withTempDir('kafka-rolefail', async (dir) => {
      const prefix = uniqueTopic('mpf');
      // A raw topic that takes no record of a real page: producing to it fails the ingest role.
      const admin = kafka.admin();
      await admin.connect();
      try {
        await admin.createTopics({
          waitForLeaders: true,
          topics: [{ topic: topicNames(prefix).raw('gewe'), numPartitions: 1, configEntries: [{ name: 'max.message.bytes', value: '100' }] }],
        });
      } finally {
        await admin.disconnect();
      }
      const sim = await startSimulator({ accounts: accounts(50) });
      try {
        const config = { ...(kafkaConfig(dir, sim.url, broker.brokers, prefix) as object), query: { port: 0 } };
        const proc = startMsgpipe(['run', '--config', await writeConfig(dir, config), '--role', 'ingest,query']);
        try {
          const code = await Promise.race([proc.exited, new Promise((r) => setTimeout(r, 150_000, running))]);
          expect(code, proc.stderr().slice(-3000)).not.toBe(running);
          expect(code).not.toBe(0);
          expect(proc.stderr()).toContain('A role failed; stopping this process.');
          expect(proc.stderr()).toContain('Query API listening.');
        } finally {
          if (proc.child.exitCode === null) proc.child.kill('SIGKILL');
        }
      } finally {
        await sim.close();
      }
    });
  });
});
