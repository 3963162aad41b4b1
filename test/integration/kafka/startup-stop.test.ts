/**
 * A stop while a distributed process is still starting its consumers: with `kafka.consumers: 2`
 * the first consumer of the sink already stores batches while the second waits to join its
 * group. The stop must let that batch finish (stored, offsets committed) before the store
 * closes; it closed the store under the running insert before.
 */
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { parseConfig } from '../../../src/core/config.ts';
import type { MessageRow, TransformOutput } from '../../../src/core/types.ts';
import { createIdempotentProducer, ensureTopics, type Kafka } from '../../../src/kafka/client.ts';
import { encodeMessage } from '../../../src/kafka/codec.ts';
import { startDistributed } from '../../../src/kafka/roles.ts';
import { sessionKey, topicNames, topicSpecs } from '../../../src/kafka/topics.ts';
import { openStore, wrapStore } from '../../../src/sink/clickhouse.ts';
import { migrate } from '../../../src/sink/migrate.ts';
import { type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { waitFor } from '../../helpers/msgpipe.ts';

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

const log = pino({ level: 'warn' });

const TEMPLATE = (JSON.parse(readFileSync(join(import.meta.dirname, '../../fixtures/text/plain.rows.json'), 'utf8')) as TransformOutput).messages[0]!;

function message(i: number): MessageRow {
  return { ...TEMPLATE, msgid: String(9_007_199_254_740_993n + BigInt(i)), content_text: `start-up ${i}`, msg_time: TEMPLATE.msg_time + i * 1000 };
}

describe('a stop during the start-up of the consumers', () => {
  it('lets the sink consumer already started finish and commit its batch before the store closes', async () => {
    const prefix = uniqueTopic('mpstart');
    const topics = topicNames(prefix);
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, topicSpecs(topics, 2));
    const rows = Array.from({ length: 40 }, (_v, i) => message(i));
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    await producer.send({ topic: topics.messages, messages: rows.map((m) => ({ key: sessionKey(m), value: encodeMessage(m, []) })) });
    await producer.disconnect();

    const dir = await mkdtemp(join(tmpdir(), 'msgpipe-startup-stop-'));
    const inner = await openStore({ path: dir, database: 'msgpipe' }, log);
    try {
      await migrate(inner, log);
      // Every insert into `messages` waits for the gate; `closedUnder` counts closes that came
      // while one was held.
      let release!: () => void;
      const gate = new Promise<void>((resolve) => { release = resolve; });
      let held = 0;
      let inserting = 0;
      let closes = 0;
      let closedUnder = 0;
      const store = wrapStore(inner, {
        insert: async (table, batch, options) => {
          if (table !== 'messages') {
            await inner.insert(table, batch, options);
            return;
          }
          held += 1;
          inserting += 1;
          try {
            await gate;
            await inner.insert(table, batch, options);
          } finally {
            inserting -= 1;
          }
        },
        // The test closes the real store itself.
        close: () => {
          closes += 1;
          if (inserting > 0) closedUnder += 1;
          return Promise.resolve();
        },
      });

      const config = parseConfig({
        clickhouse: { path: dir, database: 'msgpipe' },
        kafka: { brokers: [...broker.brokers], topicPrefix: prefix, partitions: 2, consumers: 2 },
      }, {});
      const stop = new AbortController();
      const started = startDistributed({ config, roles: ['sink'], log, signal: stop.signal, openStore: () => Promise.resolve(store) });
      const outcome = started.then(() => 'resolved', (err: unknown) => (err instanceof Error ? err.message : String(err)));
      try {
        // The first consumer holds its insert; the second cannot join until that batch returns.
        await waitFor(() => held > 0, 60_000, 'the first consumer to start its insert');
        stop.abort();
        const early = await Promise.race([outcome, new Promise((resolve) => setTimeout(resolve, 1500, 'pending'))]);
        expect(early).toBe('pending');
        expect(closes).toBe(0);
      } finally {
        release();
      }
      // A stop during start-up resolves with no roles left running.
      expect(await outcome).toBe('resolved');
      expect(closedUnder).toBe(0);
      expect(closes).toBe(1);
      const stored = await inner.query<{ n: string }>('SELECT toString(count()) AS n FROM messages');
      const [offsets] = await admin.fetchOffsets({ groupId: `${prefix}.sink`, topics: [topics.messages] });
      const committed = (offsets?.partitions ?? []).reduce((n, p) => n + Math.max(0, Number(p.offset)), 0);
      // The batch held at the stop was stored and committed, and nothing is committed unstored.
      expect(committed).toBeGreaterThan(0);
      expect(Number(stored[0]?.n)).toBeGreaterThanOrEqual(committed);
    } finally {
      await admin.disconnect();
      await inner.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
