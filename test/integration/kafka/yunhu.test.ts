/**
 * Yunhu edits in the distributed mode: Yunhu simulator → ingest, transform and sink roles joined
 * through a real broker → chDB. A message read before it was edited is edited twice through the
 * API: the edit mark (on the re-read message) and both history rows (on edit carriers) must
 * reach the store, exactly as in the embedded mode.
 */
import { describe, expect, it } from 'vitest';

import type { Kafka } from '../../../src/kafka/client.ts';
import { topicNames } from '../../../src/kafka/topics.ts';
import { yunhuClient } from '../../../src/simulate/yunhu-client.ts';
import { startYunhuSimulator } from '../../../src/simulate/yunhu-server.ts';
import { groupLag, readTopic, type TestBroker, uniqueTopic, useTestBroker } from '../../helpers/kafka.ts';
import { sql, waitFor, withTempDir, writeConfig } from '../../helpers/msgpipe.ts';
import { kafkaConfig, startRole, stopGracefully, waitReady } from './support.ts';

const ACCOUNT = '7311890';
const USER = { chatId: '7356214', chatType: 1 } as const;

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

describe('distributed yunhu edits', () => {
  it('stores the last edit and the edit history of a message edited after it was read', async () => {
    await withTempDir('kafka-yunhu', async (dir) => {
      const prefix = uniqueTopic('mpy');
      const t = topicNames(prefix);
      const sim = await startYunhuSimulator({ accounts: [{ token: 'tok-yh', userId: ACCOUNT, pageSize: 20, chats: [{ ...USER, messages: 5 }] }] });
      try {
        const base = kafkaConfig(dir, sim.url, broker.brokers, prefix) as Record<string, unknown>;
        const source = { type: 'yunhu', name: 'yh1', tenant: 'corp1', baseUrl: sim.url, token: 'tok-yh', userId: ACCOUNT, pollIntervalMs: 100, rereadWindow: 40, conversationRefreshMs: 1000 };
        const configFile = await writeConfig(dir, { ...base, sources: [source] });
        const proc = startRole(configFile, 'ingest,transform,sink', { MSGPIPE_LOG_LEVEL: 'info' });
        let a = '';
        try {
          await waitReady(proc, 120_000);
          const client = yunhuClient(sim.url, 'tok-yh');
          a = await client.send(USER, { content: { text: '第一版' } });
          await waitFor(() => sim.received(ACCOUNT).some((r) => r.chat === '1:7356214' && r.msgStart === '6' && r.outcome === 'caught_up'), 60_000, 'the new message to be read');
          await client.edit(USER, a, '第二版');
          await client.edit(USER, a, '**第三版**', 3);
          const edited = Date.now();
          const reads = (): number => sim.received(ACCOUNT).filter((r) => r.at > edited && r.chat === '1:7356214' && r.msgStart === '6' && r.outcome === 'caught_up').length;
          await waitFor(() => reads() >= 3, 60_000, 'the edits to be read');
          const lag = async (): Promise<number> =>
            (await groupLag(kafka, `${prefix}.transform`, [t.raw('yunhu')])) + (await groupLag(kafka, `${prefix}.sink`, [t.messages, t.events, t.dlq]));
          await waitFor(async () => (await lag()) === 0, 60_000, 'the pipeline to drain');
        } finally {
          await stopGracefully(proc);
        }
        const [row] = await sql<{ content_text: string; wx_msg_type: number; n: string }>(
          configFile,
          `SELECT any(content_text) AS content_text, any(wx_msg_type) AS wx_msg_type, count() AS n FROM messages WHERE msgid = '${a}'`,
        );
        expect(row).toEqual({ content_text: '**第三版**', wx_msg_type: 3, n: '1' });
        const history = await sql<{ content_text_old: string }>(configFile, `SELECT content_text_old FROM message_edits WHERE msgid = '${a}' ORDER BY edit_time`);
        expect(history.map((h) => h.content_text_old)).toEqual(['第一版', '第二版']);
        const [rows] = await sql<{ n: string; empty: string }>(configFile, "SELECT count() AS n, countIf(msgid = '') AS empty FROM messages");
        expect(rows).toEqual({ n: '6', empty: '0' });
        expect(await sql(configFile, 'SELECT error_code FROM dead_letters')).toEqual([]);
        // DESIGN §4: raw records keyed <source name>:<session>, the account header the Yunhu user.
        const raw = await readTopic(kafka, t.raw('yunhu'));
        expect(raw.length).toBeGreaterThanOrEqual(6);
        expect(new Set(raw.map((r) => r.key))).toEqual(new Set([`yh1:${USER.chatId}`]));
        expect(new Set(raw.map((r) => r.headers['account']))).toEqual(new Set([ACCOUNT]));
      } finally {
        await sim.close();
      }
    });
  });
});
