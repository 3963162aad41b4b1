import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import type { TransformOutput } from '../../../src/core/types.ts';
import { encodeMessage } from '../../../src/kafka/codec.ts';
import type { PartitionBatch } from '../../../src/kafka/consume.ts';
import { decodeBatch } from '../../../src/kafka/sink.ts';
import { topicNames } from '../../../src/kafka/topics.ts';

const topics = topicNames('t');
const parsed = JSON.parse(
  readFileSync(join(import.meta.dirname, '../../fixtures/seeds/gewe-page.rows.json'), 'utf8'),
) as TransformOutput | TransformOutput[];
const output = Array.isArray(parsed) ? parsed[0]! : parsed;

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

});
