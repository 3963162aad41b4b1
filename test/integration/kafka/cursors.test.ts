/**
 * Reading the cursors topic at start (src/kafka/cursors.ts): the last record per key wins, as
 * compaction keeps it, so a tombstone removes a stream's cursor; a record that is not the cursor
 * of its own key stops the start instead of moving a cursor without a word.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { type Kafka, topicConfigs } from '../../../src/kafka/client.ts';
import { cursorKey, readCursors } from '../../../src/kafka/cursors.ts';
import { encodeCursor } from '../../../src/kafka/codec.ts';
import { CURSOR_SEGMENT_MS, topicNames, topicSpecs } from '../../../src/kafka/topics.ts';
import { uniqueTopic, useTestBroker, createTopics } from '../../helpers/kafka.ts';

let kafka: Kafka;
useTestBroker((_broker, k) => {
  kafka = k;
});

const log = pino({ level: 'silent' });

function cursor(source: string, stream: string, value: string): { key: string; value: Buffer } {
  return { key: cursorKey(source, stream), value: encodeCursor({ source, stream, cursor: value, committed_at: 1 }) };
}

/** A fresh cursors topic holding `messages`, in order. */
async function cursorsTopic(messages: { key: string; value: Buffer | null }[], oneSendEach = false): Promise<string> {
  const topics = topicNames(uniqueTopic('cursors'));
  await createTopics(kafka, topicSpecs(topics, 1).filter((t) => t.topic === topics.cursors));
  const producer = kafka.producer();
  await producer.connect();
  try {
    if (oneSendEach) for (const m of messages) await producer.send({ topic: topics.cursors, acks: -1, messages: [m] });
    else await producer.send({ topic: topics.cursors, acks: -1, messages });
  } finally {
    await producer.disconnect();
  }
  return topics.cursors;
}

describe('the cursors topic', () => {
  it('is created compacted, with segments that close within the hour so that compaction keeps each start\'s read short', async () => {
    const topics = topicNames(uniqueTopic('cursors'));
    await createTopics(kafka, topicSpecs(topics, 1));
    const configs = await topicConfigs(kafka, [topics.cursors, topics.messages], ['cleanup.policy', 'segment.ms']);
    expect(Object.fromEntries(configs.get(topics.cursors) ?? [])).toEqual({ 'cleanup.policy': 'compact', 'segment.ms': String(CURSOR_SEGMENT_MS) });
    expect(CURSOR_SEGMENT_MS).toBeLessThanOrEqual(3_600_000);
    // The data topics keep the broker's defaults (a week's segment, deleted by retention).
    expect(configs.get(topics.messages)?.get('cleanup.policy')).toBe('delete');
  }, 60_000);
});

describe('readCursors', () => {
  it('keeps the last cursor per key, and a tombstone removes its key', async () => {
    const topic = await cursorsTopic([
      cursor('shopA', 'wx_a', 'kb-A-1'),
      cursor('shopB', 'wx_b', 'kb-B-1'),
      cursor('shopB', 'wx_b', 'kb-B-2'),
      { key: cursorKey('shopA', 'wx_a'), value: null },
      { key: cursorKey('shopC', 'wx_c'), value: null },
    ]);
    expect(await readCursors(kafka, topic, log)).toEqual(new Map([[cursorKey('shopB', 'wx_b'), 'kb-B-2']]));
  }, 60_000);

  it.each([
    ['a value that is not a Cursor', { key: cursorKey('shopB', 'wx_b'), value: Buffer.from('{"cursor":"x"}') }, /key "shopB:wx_b", at .* is not a msgpipe.v1.Cursor/],
    ['an empty value', { key: cursorKey('shopB', 'wx_b'), value: Buffer.alloc(0) }, /key "shopB:wx_b", at .* holds the cursor of ":"/],
    ['the cursor of another key', { key: cursorKey('shopB', 'wx_b'), value: cursor('shopA', 'wx_a', 'kb-A-9').value }, /holds the cursor of "shopA:wx_a"/],
  ])('stops on %s as the last record of its key, naming it, instead of keeping an older cursor', async (_name, bad, message) => {
    const topic = await cursorsTopic([cursor('shopB', 'wx_b', 'kb-B-1'), bad, cursor('shopC', 'wx_c', 'kb-C-1')]);
    const read = readCursors(kafka, topic, log);
    await expect(read).rejects.toMatchObject({ code: 'MSGPIPE_ERR_CURSOR_RECORD' });
    await expect(read).rejects.toThrow(message);
    await expect(read).rejects.toThrow(`${topic}/0@1`);
  }, 60_000);

  it('keeps the newer record of a key found in two partitions (partitions added to the topic), whichever is read last', async () => {
    const topics = topicNames(uniqueTopic('cursors'));
    await createTopics(kafka, topicSpecs(topics, 1).filter((t) => t.topic === topics.cursors).map((t) => ({ ...t, numPartitions: 2 })));
    const at = (m: { key: string; value: Buffer | null }, partition: number, timestamp: number): { key: string; value: Buffer | null; partition: number; timestamp: string } => ({ ...m, partition, timestamp: String(timestamp) });
    const producer = kafka.producer();
    await producer.connect();
    try {
      // Each key's older record in one partition and its newer one in the other, both ways round.
      await producer.send({
        topic: topics.cursors,
        acks: -1,
        messages: [
          at(cursor('shopA', 'wx_a', 'kb-A-old'), 0, 1_000),
          at(cursor('shopA', 'wx_a', 'kb-A-new'), 1, 2_000),
          at(cursor('shopB', 'wx_b', 'kb-B-new'), 0, 2_000),
          at(cursor('shopB', 'wx_b', 'kb-B-old'), 1, 1_000),
          at(cursor('shopC', 'wx_c', 'kb-C-old'), 0, 1_000),
          at({ key: cursorKey('shopC', 'wx_c'), value: null }, 1, 2_000),
        ],
      });
    } finally {
      await producer.disconnect();
    }
    expect(await readCursors(kafka, topics.cursors, log)).toEqual(
      new Map([
        [cursorKey('shopA', 'wx_a'), 'kb-A-new'],
        [cursorKey('shopB', 'wx_b'), 'kb-B-new'],
      ]),
    );
  }, 60_000);

  it('starts again once a cursor or a tombstone follows the bad record, as the error says', async () => {
    const bad = { key: cursorKey('shopB', 'wx_b'), value: Buffer.from('garbage') };
    const repaired = await cursorsTopic([cursor('shopB', 'wx_b', 'kb-B-1'), bad, cursor('shopB', 'wx_b', 'kb-B-2')]);
    expect(await readCursors(kafka, repaired, log)).toEqual(new Map([[cursorKey('shopB', 'wx_b'), 'kb-B-2']]));
    const reset = await cursorsTopic([cursor('shopB', 'wx_b', 'kb-B-1'), bad, { key: cursorKey('shopB', 'wx_b'), value: null }]);
    expect(await readCursors(kafka, reset, log)).toEqual(new Map());
  }, 60_000);

  it('holds no fetched record while it reads, so a start over an uncompacted topic does not pin it all', async () => {
    // 48 streams, each cursor fetched beside a 900 KB record of a key a tombstone removes at the
    // end: a kept value (a view of its fetch) would hold about 48 fetches of 1 MB at the end.
    const streams = 48;
    const messages: { key: string; value: Buffer | null }[] = [];
    for (let i = 0; i < streams; i++) messages.push(cursor('pad', 'wx_pad', 'p'.repeat(900_000)), cursor(`shop${String(i)}`, 'wx', `kb-${String(i)}`));
    messages.push({ key: cursorKey('pad', 'wx_pad'), value: null });
    const topic = await cursorsTopic(messages, true);

    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const before = process.memoryUsage().arrayBuffers;
    let peak = 0;
    const sample = (): void => {
      gc();
      peak = Math.max(peak, process.memoryUsage().arrayBuffers - before);
    };
    const sampler = setInterval(sample, 5);
    let cursors: Map<string, string>;
    try {
      cursors = await readCursors(kafka, topic, log);
    } finally {
      clearInterval(sampler);
    }
    expect(cursors).toEqual(new Map(Array.from({ length: streams }, (_v, i) => [cursorKey(`shop${String(i)}`, 'wx'), `kb-${String(i)}`])));
    // What a read holds at most, collected: the fetches in flight (1 MB per partition each).
    expect(peak).toBeLessThan(16 * 1024 * 1024);
  }, 120_000);
});
