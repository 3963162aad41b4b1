/**
 * Cursor storage of the distributed mode: the compacted `<p>.cursors` topic, key
 * `<source>:<stream>`, value `msgpipe.v1.Cursor` (docs/kafka.md).
 *
 * Contract: the ingest role commits a page's cursor only after every raw record of the page
 * (and its dead letters) was acknowledged by the broker, so a crash at any instant re-reads at
 * most the pages whose records may already be on the raw topic; the sink stores those twice as
 * once (ADR 0010). On start, the topic is read from the beginning up to its end and the last
 * record per key wins, as compaction keeps it: a tombstone (null value) removes the key's
 * cursor, so that stream starts from the beginning.
 */
import { randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import type { CursorReader, CursorUpdate } from '../core/pipeline.ts';
import type { Kafka, Producer } from './client.ts';
import { decodeCursor, encodeCursor } from './codec.ts';

/** The key of a cursor record. */
export function cursorKey(source: string, stream: string): string {
  return `${source}:${stream}`;
}

/**
 * What a record of the cursors topic says: its cursor, none for a tombstone, or what is wrong
 * with it. Compaction keeps the last record per key, so a record stands for its key alone: a
 * value holding another key's cursor would read back one way before the log cleaner runs and
 * another after it.
 */
function readCursorRecord(keyText: string, value: Buffer | null): { cursor: string | null; problem?: string } {
  if (value === null) return { cursor: null };
  let decoded: { source: string; stream: string; cursor: string };
  try {
    decoded = decodeCursor(value);
  } catch (err) {
    return { cursor: null, problem: `is not a msgpipe.v1.Cursor: ${err instanceof Error ? err.message : String(err)}` };
  }
  const own = cursorKey(decoded.source, decoded.stream);
  return own === keyText ? { cursor: decoded.cursor } : { cursor: null, problem: `holds the cursor of ${JSON.stringify(own)}` };
}

function cursorRecordError(topic: string, partition: number, offset: string, key: string | undefined, problem: string): MsgpipeError {
  const record = key === undefined ? 'A cursor record' : `The last cursor record of key ${JSON.stringify(key)}`;
  return new MsgpipeError(
    'MSGPIPE_ERR_CURSOR_RECORD',
    `${record}, at ${topic}/${String(partition)}@${offset}, ${problem}. Skipping it would move that stream's cursor without a word; ` +
      'write its cursor again, or a tombstone for its key to read the stream from the beginning (docs/kafka.md).',
  );
}

/** How long reading the cursors topic up to its end offsets may take before ingest gives up. */
export const READ_CURSORS_TIMEOUT_MS = 60_000;

/**
 * Reads `topic` from the beginning to the end offsets it has now and returns the last cursor
 * per key. Uses a throw-away consumer group (deleted afterwards) and commits nothing.
 *
 * @throws when the end offsets are not reached within `timeoutMs`
 */
export async function readCursors(kafka: Kafka, topic: string, log: Logger, timeoutMs = READ_CURSORS_TIMEOUT_MS): Promise<Map<string, string>> {
  const cursors = new Map<string, string>();
  // The last record of each key, judged once the whole topic is read: a bad record followed by a
  // good one (the operator's repair) is what compaction will drop anyway. Each record is read
  // as it comes and only its outcome kept: a kept value would pin its whole fetch buffer, and an
  // uncompacted topic is as large as its active segment.
  const last = new Map<string, { cursor: string | null; problem?: string; partition: number; offset: string; timestamp: number }>();
  const admin = kafka.admin();
  await admin.connect();
  try {
    const ends = await admin.fetchTopicOffsets(topic);
    const remaining = new Map(
      ends.filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)] as const),
    );
    if (remaining.size === 0) return cursors;
    const groupId = `${topic}.reader.${randomUUID()}`;
    const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false });
    await consumer.connect();
    try {
      await consumer.subscribe({ topic, fromBeginning: true });
      let timer: NodeJS.Timeout | undefined;
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => {
          const left = [...remaining].map(([partition, end]) => `${String(partition)} (end ${end.toString()})`).join(', ');
          reject(new Error(`Reading the cursors topic ${topic} did not reach its end offsets within ${String(timeoutMs)} ms; partitions left: ${left}.`));
        }, timeoutMs);
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              for (const message of batch.messages) {
                if (message.key === null) {
                  reject(cursorRecordError(topic, batch.partition, message.offset, undefined, 'has no key'));
                  return Promise.resolve();
                }
                const key = message.key.toString('utf8');
                const timestamp = Number(message.timestamp);
                // Within a partition the later record wins. A key in two partitions (partitions
                // added to the topic move its new records, and compaction never drops the old
                // one): the newer record wins, whichever partition is read last.
                const prev = last.get(key);
                if (prev !== undefined && prev.partition !== batch.partition && prev.timestamp > timestamp) continue;
                last.set(key, { ...readCursorRecord(key, message.value), partition: batch.partition, offset: message.offset, timestamp });
              }
              const end = remaining.get(batch.partition);
              if (end !== undefined && BigInt(batch.lastOffset()) + 1n >= end) remaining.delete(batch.partition);
              if (remaining.size === 0) resolve();
              return Promise.resolve();
            },
          })
          .catch(reject);
      }).finally(() => { clearTimeout(timer); });
    } finally {
      await consumer.disconnect();
      await admin.deleteGroups([groupId]).catch(() => undefined);
    }
    for (const [key, record] of last) {
      if (record.problem !== undefined) throw cursorRecordError(topic, record.partition, record.offset, key, record.problem);
      if (record.cursor !== null) cursors.set(key, record.cursor);
      else log.info({ topic, key, offset: record.offset }, 'Cursor removed by a tombstone: that stream starts from the beginning.');
    }
    return cursors;
  } finally {
    await admin.disconnect();
  }
}

/** A {@link CursorReader} over the cursors read at start (the ingest role is their only writer). */
export class TopicCursorReader implements CursorReader {
  private readonly cursors: ReadonlyMap<string, string>;

  constructor(cursors: ReadonlyMap<string, string>) {
    this.cursors = cursors;
  }

  load(source: string, stream: string): Promise<string | undefined> {
    return Promise.resolve(this.cursors.get(cursorKey(source, stream)));
  }
}

/**
 * Writes cursors to the topic one send at a time, in the order they were committed; while a
 * send is in flight, later cursors of a key replace earlier ones (only the last one matters).
 */
export class CursorCommitter {
  private readonly producer: Producer;
  private readonly topic: string;
  private readonly log: Logger;
  private readonly waiting = new Map<string, CursorUpdate>();
  private readonly written = new Map<string, string>();
  private running: Promise<void> | undefined;
  private failure: Error | undefined;
  private readonly onWritten: ((written: readonly CursorUpdate[]) => void) | undefined;

  constructor(
    producer: Producer,
    topic: string,
    log: Logger,
    initial: ReadonlyMap<string, string> = new Map(),
    onWritten?: (written: readonly CursorUpdate[]) => void,
  ) {
    this.producer = producer;
    this.topic = topic;
    this.log = log;
    this.onWritten = onWritten;
    for (const [k, v] of initial) this.written.set(k, v);
  }

  /**
   * Queues a cursor whose records are acknowledged. Never waits for the write.
   *
   * @throws the error that stopped an earlier write
   */
  commit(update: CursorUpdate): void {
    if (this.failure !== undefined) throw this.failure;
    const key = cursorKey(update.source, update.stream);
    if (this.written.get(key) === update.cursor && !this.waiting.has(key)) return;
    this.waiting.delete(key);
    this.waiting.set(key, update);
    this.running ??= this.drain();
  }

  /** Resolves once every queued cursor is written. @throws when a write failed */
  async flush(): Promise<void> {
    while (this.running !== undefined) await this.running;
    if (this.failure !== undefined) throw this.failure;
  }

  private async drain(): Promise<void> {
    try {
      while (this.waiting.size > 0 && this.failure === undefined) {
        const batch = [...this.waiting.values()];
        this.waiting.clear();
        const now = Date.now();
        await this.producer.send({
          topic: this.topic,
          acks: -1,
          messages: batch.map((u) => ({
            key: cursorKey(u.source, u.stream),
            value: encodeCursor({ source: u.source, stream: u.stream, cursor: u.cursor, committed_at: now }),
          })),
        });
        for (const u of batch) this.written.set(cursorKey(u.source, u.stream), u.cursor);
        this.onWritten?.(batch);
      }
    } catch (err) {
      this.failure = err instanceof Error ? err : new Error(String(err));
      this.log.error({ err }, 'Cursor commit failed; ingest stops (records already sent are re-read on restart).');
    } finally {
      this.running = undefined;
    }
  }
}
