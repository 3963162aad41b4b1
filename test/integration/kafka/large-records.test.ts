/**
 * Records near the broker's size limit (src/kafka/send.ts): a page whose items on one session
 * add up to more than a topic's max.message.bytes is produced in several requests, in order,
 * and its cursor is written; a single record over the limit fails with MSGPIPE_ERR_TOO_LARGE,
 * not kafkajs's bare protocol error.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { parseConfig } from '../../../src/core/config.ts';
import { Wakeups } from '../../../src/core/pipeline.ts';
import { createSource } from '../../../src/ingest/registry.ts';
import { newSourceStats, type Source } from '../../../src/ingest/source.ts';
import { createIdempotentProducer, ensureTopics, type Kafka } from '../../../src/kafka/client.ts';
import { cursorKey, readCursors } from '../../../src/kafka/cursors.ts';
import { runKafkaIngest } from '../../../src/kafka/ingest.ts';
import { decodeDeadLetter, decodeMessage } from '../../../src/kafka/codec.ts';
import { sendInChunks } from '../../../src/kafka/send.ts';
import { startKafkaTransform } from '../../../src/kafka/transform.ts';
import { MAX_RECORD_BATCH_BYTES, topicNames, topicSpecs, type Topics } from '../../../src/kafka/topics.ts';
import { readTopic, uniqueTopic, useTestBroker, createTopics } from '../../helpers/kafka.ts';
import { waitFor } from '../../helpers/msgpipe.ts';
import { itemText } from '../../unit/transform/support.ts';

let kafka: Kafka;
useTestBroker((_broker, k) => {
  kafka = k;
});

const log = pino({ level: 'warn' });

/** Runs the Kafka ingest with one gewe source that emits `items` as one page (cursor kb0 → kb1), then stops. */
async function ingestOnePage(topics: Topics, items: readonly Buffer[]): Promise<void> {
  const origin = { source: 'gw', sourceType: 'gewe' as const, tenant: 'corp1', staffId: 'wx_gw' };
  const controller = new AbortController();
  const source: Source = {
    name: 'gw',
    origin,
    stats: newSourceStats(),
    run: async (ctx) => {
      await ctx.emit({
        origin,
        stream: 'wx_gw',
        cursorBefore: 'kb0',
        cursorAfter: 'kb1',
        records: items.map((bytes, index) => ({ origin, bytes, fetchedAt: 1, cursor: 'kb0', index })),
        deadLetters: [],
      });
      controller.abort();
    },
  };
  const stats = { records: 0, pages: 0, deadLetters: 0, cursorsCommitted: 0 };
  await runKafkaIngest({ kafka, topics, sources: [source], accounts: new Map(), wakeups: new Wakeups(), signal: controller.signal, log }, stats);
}

describe('large records', () => {
  it('produces a page of large items on one session over several requests, in order, then its cursor', async () => {
    const topics = topicNames(uniqueTopic('large'));
    await createTopics(kafka, topicSpecs(topics, 2));
    // 12 items of 800 KB on one session: 9.6 MB for one partition, over the topics' 8 MiB.
    const items = Array.from({ length: 12 }, (_v, i) => Buffer.from(JSON.stringify({ msgSessionId: 'sess-big@findermsg', NewMsgId: String(i), ImgBuf: 'A'.repeat(800_000) })));
    expect(items.reduce((n, b) => n + b.length, 0)).toBeGreaterThan(MAX_RECORD_BATCH_BYTES);
    await ingestOnePage(topics, items);

    const raw = await readTopic(kafka, topics.raw('gewe'));
    expect(new Set(raw.map((r) => r.partition)).size).toBe(1);
    expect(raw.map((r) => (JSON.parse(r.value.toString('utf8')) as { NewMsgId: string }).NewMsgId)).toEqual(items.map((_b, i) => String(i)));
    expect(raw.every((r, i) => r.value.equals(items[i]!))).toBe(true);
    expect((await readCursors(kafka, topics.cursors, log)).get(cursorKey('gw', 'wx_gw'))).toBe('kb1');
  }, 120_000);

  it('produces a page into a raw topic created beforehand with the broker default size limit (1 MiB)', async () => {
    const topics = topicNames(uniqueTopic('deflimit'));
    const admin = kafka.admin();
    await admin.connect();
    // The raw topic as an operator might create it, without max.message.bytes; msgpipe makes the rest.
    await admin.createTopics({ waitForLeaders: true, topics: [{ topic: topics.raw('gewe'), numPartitions: 3 }] });
    await ensureTopics(admin, topicSpecs(topics, 3));
    await admin.disconnect();
    // 60 items of 20 KB on one session: 1.2 MB for one partition, each item far under the limit.
    const items = Array.from({ length: 60 }, (_v, i) => Buffer.from(JSON.stringify({ msgSessionId: 'sess-1@findermsg', NewMsgId: String(i), ImgBuf: 'A'.repeat(20_000) })));
    await ingestOnePage(topics, items);

    const raw = await readTopic(kafka, topics.raw('gewe'));
    expect(raw.map((r) => (JSON.parse(r.value.toString('utf8')) as { NewMsgId: string }).NewMsgId)).toEqual(items.map((_b, i) => String(i)));
    expect((await readCursors(kafka, topics.cursors, log)).get(cursorKey('gw', 'wx_gw'))).toBe('kb1');
  }, 120_000);

  it('dead-letters a raw item as large as its topic takes, with its bytes, and moves on', async () => {
    const topics = topicNames(uniqueTopic('bigitem'));
    await createTopics(kafka, topicSpecs(topics, 1));
    const headers = (index: number): Record<string, string> => ({ source: 'gw', account: 'wx_gw', 'fetched-at': '1', cursor: 'kb0', tenant: 'corp1', 'staff-id': 'wx_gw', index: String(index) });
    // Over the 1 MiB item cap, so a dead letter; its own fields make it a few hundred bytes
    // larger than the raw record, which is within 64 bytes of what the raw topic takes.
    const itemOf = (size: number): Buffer => {
      const head = Buffer.from('{"content":{"msgSessionId":"s@findermsg","ImgBuf":"');
      return Buffer.concat([head, Buffer.alloc(size - head.length - 3, 65), Buffer.from('"}}')]);
    };
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    let big: Buffer | undefined;
    try {
      for (let size = MAX_RECORD_BATCH_BYTES - 100; big === undefined; size -= 64) {
        const candidate = itemOf(size);
        try {
          await sendInChunks(producer, [{ topic: topics.raw('gewe'), messages: [{ key: 'gw:s', value: candidate, headers: headers(0) }] }], 1024 * 1024);
          big = candidate;
        } catch (err) {
          if ((err as { code?: string }).code !== 'MSGPIPE_ERR_TOO_LARGE') throw err;
        }
      }
      await sendInChunks(producer, [{ topic: topics.raw('gewe'), messages: [{ key: 'gw:s', value: Buffer.from(itemText({ newMsgId: '3876235366388279544' })), headers: headers(1) }] }], 1024 * 1024);
    } finally {
      await producer.disconnect();
    }
    const transform = await startKafkaTransform({ kafka, topics, consumers: 1, sessionTimeoutMs: 10_000, log });
    try {
      await waitFor(async () => (await readTopic(kafka, topics.messages)).length === 1, 60_000, 'the item after the large one to be transformed');
      const [letter] = (await readTopic(kafka, topics.dlq)).map((r) => decodeDeadLetter(r.value));
      expect(letter?.error_code).toBe('MSGPIPE_ERR_TOO_LARGE');
      expect(Buffer.from(letter!.original_base64, 'base64').equals(big)).toBe(true);
      expect(decodeMessage((await readTopic(kafka, topics.messages))[0]!.value).row.msgid).toBe('3876235366388279544');
    } finally {
      await transform.stop();
    }
  }, 120_000);

  it('ends without an error, and without reading the cursors, when stopped before it started', async () => {
    // The distributed ingest role stopped during start-up: as the embedded pipeline, not a failure.
    const topics = topicNames(uniqueTopic('early-stop'));
    const config = parseConfig({ tenants: [{ id: 'corp1', secret: 's' }], sources: [{ type: 'gewe', name: 'gw', tenant: 'corp1', baseUrl: 'http://127.0.0.1:9', token: 'x', appId: 'wx_gw' }] });
    const stop = new AbortController();
    stop.abort(new Error('stopped by SIGTERM'));
    const stats = { records: 0, pages: 0, deadLetters: 0, cursorsCommitted: 0 };
    await expect(
      runKafkaIngest({ kafka, topics, sources: [createSource(config.sources[0]!)], accounts: new Map(), wakeups: new Wakeups(), signal: stop.signal, log }, stats),
    ).resolves.toBeUndefined();
    expect(stats).toEqual({ records: 0, pages: 0, deadLetters: 0, cursorsCommitted: 0 });
  }, 60_000);

  it('fails a record larger than its topic takes with MSGPIPE_ERR_TOO_LARGE', async () => {
    const topic = uniqueTopic('small-limit');
    await createTopics(kafka, [{ topic, numPartitions: 1, config: { 'max.message.bytes': String(64 * 1024) } }]);
    const producer = createIdempotentProducer(kafka);
    await producer.connect();
    try {
      const sent: string[] = [];
      await sendInChunks(producer, [{ topic, messages: [{ key: 'k', value: Buffer.alloc(10_000) }] }], 1024 * 1024, (t) => sent.push(t));
      expect(sent).toEqual([topic]);
      await expect(sendInChunks(producer, [{ topic, messages: [{ key: 'k', value: Buffer.alloc(100_000) }] }], 1024 * 1024)).rejects.toMatchObject({
        code: 'MSGPIPE_ERR_TOO_LARGE',
      });
    } finally {
      await producer.disconnect();
    }
  }, 60_000);
});
