/**
 * Produce requests the broker takes. kafkajs puts the records of one `sendBatch` for one
 * partition into one record batch, and the broker refuses a batch above the topic's
 * `max.message.bytes` (MESSAGE_TOO_LARGE, which kafkajs does not retry): a page of large items
 * on one session, or a transform batch of long rows, would fail on every attempt. Records go out
 * in requests of about a given size, one after another, so their order per partition is kept.
 */
import { MsgpipeError } from '../core/errors.ts';
import type { Message, Producer } from './client.ts';

export interface TopicMessages {
  readonly topic: string;
  readonly messages: readonly Message[];
}

function bytesOf(value: Message['value'] | Message['key']): number {
  if (value === null || value === undefined) return 0;
  return typeof value === 'string' ? Buffer.byteLength(value) : value.length;
}

/** About the bytes a record takes in a record batch (value, key, headers, framing). */
export function recordBytes(m: Message): number {
  let n = 64 + bytesOf(m.value) + bytesOf(m.key);
  for (const [name, value] of Object.entries(m.headers ?? {})) {
    n += Buffer.byteLength(name) + 8;
    if (Array.isArray(value)) for (const v of value) n += bytesOf(v);
    else n += bytesOf(value);
  }
  return n;
}

/**
 * Sends `topicMessages` with acks from every in-sync replica, in requests of about `chunkBytes`
 * (a record larger than that goes alone), calling `onSent` per topic after each request.
 *
 * @throws {MsgpipeError} `MSGPIPE_ERR_TOO_LARGE` when the broker refuses a record as larger than
 *   the topic takes: no retry changes that.
 */
export async function sendInChunks(
  producer: Producer,
  topicMessages: readonly TopicMessages[],
  chunkBytes: number,
  onSent?: (topic: string, records: number) => void,
): Promise<void> {
  let chunk: { topic: string; messages: Message[] }[] = [];
  let size = 0;
  const send = async (): Promise<void> => {
    const request = chunk.filter((t) => t.messages.length > 0);
    chunk = [];
    size = 0;
    if (request.length === 0) return;
    try {
      await producer.sendBatch({ acks: -1, topicMessages: request });
    } catch (err) {
      if ((err as { type?: unknown }).type === 'MESSAGE_TOO_LARGE') {
        const largest = Math.max(...request.flatMap((t) => t.messages.map(recordBytes)));
        throw new MsgpipeError(
          'MSGPIPE_ERR_TOO_LARGE',
          `The broker refused a record of about ${String(largest)} bytes as larger than its topic takes; raise the topic's max.message.bytes.`,
          { details: { topics: request.map((t) => t.topic).join(','), bytes: largest }, cause: err },
        );
      }
      throw err;
    }
    for (const t of request) onSent?.(t.topic, t.messages.length);
  };
  for (const { topic, messages } of topicMessages) {
    let current: Message[] = [];
    chunk.push({ topic, messages: current });
    for (const m of messages) {
      const bytes = recordBytes(m);
      if (size > 0 && size + bytes > chunkBytes) {
        await send();
        current = [];
        chunk.push({ topic, messages: current });
      }
      current.push(m);
      size += bytes;
    }
  }
  await send();
}
