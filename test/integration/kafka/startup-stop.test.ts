/**
 * A stop while a distributed process is still starting its consumers: with `kafka.consumers: 2`
 * the first consumer of the sink already stores batches while the second waits to join its
 * group. The stop must let that batch finish (stored, offsets committed) before the store
 * closes; it closed the store under the running insert before.
 */

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { parseConfig } from '../../../src/core/config.ts';
import { ensureTopics, type Kafka } from '../../../src/kafka/client.ts';
import { startDistributed } from '../../../src/kafka/roles.ts';
import { topicNames, topicSpecs } from '../../../src/kafka/topics.ts';
import { wrapStore } from '../../../src/sink/clickhouse.ts';
import { produceTextMessages, type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { waitFor } from '../../helpers/msgpipe.ts';
import { openTempStore } from '../../unit/sink/helpers.ts';

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

const log = pino({ level: 'warn' });

describe('a stop during the start-up of the consumers', () => {
  it('lets the sink consumer already started finish and commit its batch before the store closes', async () => {
    const prefix = uniqueTopic('mpstart');
    const topics = topicNames(prefix);
    const admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, topicSpecs(topics, 2));
    await produceTextMessages(kafka, topics.messages, 40, 'start-up');

    const temp = await openTempStore();
    const inner = temp.store;
    try {
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
        clickhouse: { path: temp.dir, database: 'msgpipe' },
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
      await temp.dispose();
    }
  });
});
