import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import type { TransformOutput } from '../../../src/core/types.ts';
import { encodeEvent, encodeMessage } from '../../../src/kafka/codec.ts';
import type { PartitionBatch } from '../../../src/kafka/consume.ts';
import { decodeBatch, encodeBatch } from '../../../src/kafka/sink.ts';
import { identityOf } from '../../../src/sink/dead-letters.ts';
import { EncodedUnit } from '../../../src/sink/writer.ts';
import { topicNames } from '../../../src/kafka/topics.ts';

const topics = topicNames('t');
const parsed = JSON.parse(
  readFileSync(join(import.meta.dirname, '../../fixtures/seeds/gewe-page.rows.json'), 'utf8'),
) as TransformOutput | TransformOutput[];
const output = Array.isArray(parsed) ? parsed[0]! : parsed;
const eventRow = (JSON.parse(readFileSync(join(import.meta.dirname, '../../fixtures/control/dynacfg.rows.json'), 'utf8')) as TransformOutput).events[0]!;

function batch(topic: string, values: (Buffer | null)[]): PartitionBatch {
  const messages = values.map((value, i) => ({ key: Buffer.from('corp1:g1:s'), value, offset: String(10 + i) }));
  return {
    topic,
    partition: 3,
    messages: messages as unknown as PartitionBatch['messages'],
    firstOffset: '10',
    lastOffset: String(9 + values.length),
    heartbeat: () => Promise.resolve(),
    signal: new AbortController().signal,
  };
}

describe('sink decodeBatch', () => {
  it('dead-letters null and empty values on the messages and events topics instead of storing default rows', () => {
    const row = output.messages[0]!;
    const decoded = decodeBatch(topics, batch(topics.messages, [null, Buffer.from(encodeMessage(row)), Buffer.alloc(0)]), 1000);
    expect(decoded.messages.map((m) => m.msgid)).toEqual([row.msgid]);
    expect(decoded.deadLetters).toHaveLength(2);
    for (const [i, letter] of decoded.deadLetters.entries()) {
      expect(letter.stage).toBe('sink');
      expect(letter.error_code).toBe('MSGPIPE_ERR_SHAPE');
      expect(letter.error_message).toContain('empty');
      expect(letter.original_base64).toBe('');
      expect(letter.tenant).toBe('corp1');
      expect(letter.origin_key).toBe(`kafka:${topics.messages}-3@${String(10 + i * 2)}`);
    }

    const events = decodeBatch(topics, batch(topics.events, [Buffer.alloc(0)]), 1000);
    expect(events.events).toEqual([]);
    expect(events.deadLetters).toHaveLength(1);
    expect(events.deadLetters[0]!.error_message).toContain('empty');
  });

  it('leaves the tenant of an undecodable dlq record empty: its key is an origin_key, which starts with a source name', () => {
    const letters = decodeBatch(topics, { ...batch(topics.dlq, [Buffer.from('not protobuf')]), messages: [{ key: Buffer.from('shop-a:kb-9#3'), value: Buffer.from('not protobuf'), offset: '10' }] as unknown as PartitionBatch['messages'] }, 1000);
    expect(letters.deadLetters).toHaveLength(1);
    expect(letters.deadLetters[0]).toMatchObject({ tenant: '', stage: 'sink', origin_key: `kafka:${topics.dlq}-3@10` });
  });

  it('dead-letters an event or a mark the store would refuse with its record bytes and offset, and keeps the rest', () => {
    const bad = Buffer.from(encodeEvent({ ...eventRow, event_id: '' }));
    const good = Buffer.from(encodeEvent(eventRow));
    const events = decodeBatch(topics, batch(topics.events, [bad, good]), 1000);
    expect(events.events.map((e) => e.event_id)).toEqual([eventRow.event_id]);
    expect(events.deadLetters).toHaveLength(1);
    expect(events.deadLetters[0]).toMatchObject({
      tenant: eventRow.tenant,
      source: eventRow.source,
      source_type: eventRow.source_type,
      stage: 'sink',
      error_code: 'MSGPIPE_ERR_SHAPE',
      error_message: 'Row refused by the events sink: event_id is empty.',
      original_base64: bad.toString('base64'),
      origin_key: `kafka:${topics.events}-3@10`,
    });

    // A revoke's row goes on while its recall mark, without a target, is refused.
    const row = output.messages[0]!;
    const mark = { tenant: row.tenant, staff_id: row.staff_id, session_id: row.session_id, target_msgid: '', recall_time: row.msg_time };
    const value = Buffer.from(encodeMessage(row, [mark]));
    const messages = decodeBatch(topics, batch(topics.messages, [value]), 1000);
    expect(messages.messages.map((m) => m.msgid)).toEqual([row.msgid]);
    expect(messages.recalls).toEqual([]);
    expect(messages.deadLetters).toHaveLength(1);
    expect(messages.deadLetters[0]).toMatchObject({
      tenant: row.tenant,
      source: row.source,
      error_message: 'Row refused by the recalls sink: target_msgid is empty.',
      original_base64: value.toString('base64'),
      origin_key: `kafka:${topics.messages}-3@10`,
    });

    // The same row produced again (another offset, another ingested_at) is the same dead letter.
    const again = Buffer.from(encodeEvent({ ...eventRow, event_id: '', ingested_at: eventRow.ingested_at + 5000 }));
    const twice = decodeBatch(topics, batch(topics.events, [bad, again]), 1000).deadLetters;
    expect(twice.map((d) => d.origin_key)).toEqual([`kafka:${topics.events}-3@10`, `kafka:${topics.events}-3@11`]);
    expect(identityOf(twice[1]!)).toBe(identityOf(twice[0]!));
    expect(identityOf(twice[0]!)).not.toBe(identityOf(messages.deadLetters[0]!));
  });

  it('names the record of each row, so a refused row is dead-lettered with its bytes and offset', () => {
    const row = output.messages[0]!;
    const refused = Buffer.from(encodeMessage({ ...row, msgid: '42', msg_time: 1e15 }));
    const [only] = encodeBatch(topics, batch(topics.messages, [Buffer.from('not protobuf'), Buffer.from(encodeMessage(row)), refused]), 1000);
    expect(only!.messages.map((m) => m.msgid)).toEqual([row.msgid]);
    expect(only!.refused).toHaveLength(1);
    expect(only!.refused[0]).toMatchObject({ reason: 'msg_time is not a unix ms time', origin: { bytes: refused, originKey: `kafka:${topics.messages}-3@12` } });
  });

  it('encodes a batch in units of 500 records that together hold what the whole batch decodes to', () => {
    const rows = output.messages;
    expect(rows.length).toBeGreaterThan(0);
    // 1203 records: valid messages, and every 97th record is not a protobuf value.
    const values = Array.from({ length: 1203 }, (_, i) => (i % 97 === 0 ? Buffer.from('not protobuf') : encodeMessage({ ...rows[i % rows.length]!, msgid: String(10_000 + i) })));
    const whole = batch(topics.messages, values);
    const units = encodeBatch(topics, whole, 1000);
    expect(units.map((u) => u.messages.length + u.deadLetters.length + u.refused.length)).toEqual([500, 500, 203]);
    const expected = EncodedUnit.of({ output: decodeBatch(topics, whole, 1000) });
    expect(units.flatMap((u) => u.messages)).toEqual(expected.messages);
    expect(units.flatMap((u) => u.deadLetters)).toEqual(expected.deadLetters);
    expect(units.flatMap((u) => u.deadLetters.map((d) => d.origin_key))).toContain(`kafka:${topics.messages}-3@${String(10 + 97 * 12)}`);
    expect(encodeBatch(topics, batch(topics.messages, []), 1000)).toEqual([]);
  });
});
