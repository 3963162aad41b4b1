/**
 * The query role in the distributed mode: `msgpipe run --role query` with `kafka.brokers`
 * serves the API over the store and answers `POST /sync` by publishing a SyncRequest for the
 * tenant to `<prefix>.control`, over a real socket and a real broker.
 */
import { createServer } from 'node:net';

import { describe, expect, it } from 'vitest';

import type { Kafka } from '../../../src/kafka/client.ts';
import { decodeSyncRequest } from '../../../src/kafka/codec.ts';
import { topicNames } from '../../../src/kafka/topics.ts';
import { sign, signUrl } from '../../../src/query/signature.ts';
import { readTopic, type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { listenerUrl, startMsgpipe, waitFor, withTempDir, writeConfig } from '../../helpers/msgpipe.ts';
import { kafkaConfig, TENANT } from './support.ts';

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

describe('distributed query role', () => {
  it('serves signed queries and publishes POST /sync to the control topic', async () => {
    await withTempDir('kafka-query', async (dir) => {
      const prefix = uniqueTopic('mpq');
      const config = { ...(kafkaConfig(dir, 'http://127.0.0.1:9', broker.brokers, prefix) as object), query: { port: 0 }, metrics: { port: 0 } };
      const proc = startMsgpipe(['run', '--config', await writeConfig(dir, config), '--role', 'query']);
      try {
        await waitFor(() => proc.stderr().includes('Query API listening.'), 90_000, 'the query API to listen');
        const line = proc.stderr().split('\n').find((l) => l.includes('Query API listening.'))!;
        const url = (JSON.parse(line) as { url: string }).url;

        const sessions = await fetch(`${url}${signUrl('/api/v1/chat-msg/sessions?ext_staff_id=s1&session_type=external', 'test-secret', { tenant: TENANT })}`);
        expect(await sessions.json()).toMatchObject({ code: 0, data: { total: 0, items: [] } });

        const forged = await fetch(`${url}/api/v1/chat-msg/sync`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ext_corp_id: TENANT, signature: sign({ ext_corp_id: TENANT }, 'wrong') }),
        });
        expect(forged.status).toBe(401);
        const res = await fetch(`${url}/api/v1/chat-msg/sync`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ ext_corp_id: TENANT, signature: sign({ ext_corp_id: TENANT }, 'test-secret') }),
        });
        expect(await res.json()).toEqual({ code: 0, message: '同步任务已启动', data: null });
        // Exactly the one signed request reached the control topic.
        const records = await readTopic(kafka, topicNames(prefix).control);
        expect(records.map((r) => [r.key, decodeSyncRequest(r.value).tenant])).toEqual([[TENANT, TENANT]]);
      } finally {
        proc.child.kill('SIGTERM');
        expect(await proc.exited).toBe(0);
      }
    });
  });

  it('is not ready until the query API listens, and never says ready when it cannot listen', async () => {
    await withTempDir('kafka-query-ready', async (dir) => {
      // The query port is taken: the API cannot listen, and the role fails.
      const holder = createServer();
      await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
      const taken = (holder.address() as { port: number }).port;
      try {
        const prefix = uniqueTopic('mpqr');
        const config = { ...(kafkaConfig(dir, 'http://127.0.0.1:9', broker.brokers, prefix) as object), query: { port: taken }, metrics: { port: 0 } };
        const proc = startMsgpipe(['run', '--config', await writeConfig(dir, config), '--role', 'query']);
        let exited: number | string | undefined;
        void proc.exited.then((code) => {
          exited = code;
        });
        const answers: { http: number; waiting: string[] }[] = [];
        while (exited === undefined) {
          const url = listenerUrl(proc);
          if (url !== undefined) {
            const res = await fetch(`${url}/readyz`).catch(() => undefined);
            if (res !== undefined) answers.push({ http: res.status, waiting: ((await res.json()) as { waiting: string[] }).waiting });
          }
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        expect(exited).toBe(1);
        expect(proc.stderr()).toContain('EADDRINUSE');
        // Readiness waits for the API (it said ready once the store was open before).
        expect(answers.some((a) => a.http === 503 && a.waiting.includes('query'))).toBe(true);
        expect(answers.filter((a) => a.http === 200)).toEqual([]);
      } finally {
        holder.close();
      }
    });
  });
});
