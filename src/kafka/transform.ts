/**
 * The transform role of the distributed mode: consumer group `<p>.transform` on the raw topics
 * of every source type that has a transform (src/transform/registry.ts). Each record is
 * transformed exactly as in the embedded mode and the outputs go to `<p>.messages`,
 * `<p>.events` and `<p>.dlq` with the idempotent producer; the raw offsets are committed only
 * after the broker acknowledged every produced record.
 *
 * A raw record without the msgpipe headers, or one a transform throws on, becomes a dead letter
 * with its original bytes; the partition moves on.
 */
import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import type { RecordTransform } from '../core/pipeline.ts';
import {
  SOURCE_TYPES,
  type DeadLetterRow,
  type EditMark,
  type MessageEditRow,
  type RawRecord,
  type SourceType,
  type TransformOutput,
} from '../core/types.ts';
import type { TransformedRecords } from '../ops/metrics.ts';
import { transformForSource } from '../transform/registry.ts';
import type { Kafka, Message } from './client.ts';
import { createIdempotentProducer } from './client.ts';
import { type EditCarrier, encodeDeadLetter, encodeEditCarrier, encodeEvent, encodeMessage } from './codec.ts';
import { type ConsumerLoop, type PartitionBatch, startConsumerLoop, startConsumerLoops, untilStopped } from './consume.ts';
import { sendInChunks } from './send.ts';
import { RAW_HEADERS, rawTopicType, sessionKey, type Topics } from './topics.ts';

export interface KafkaTransformOptions {
  readonly kafka: Kafka;
  readonly topics: Topics;
  /** Consumers of the group in this process. */
  readonly consumers: number;
  readonly sessionTimeoutMs: number;
  readonly log: Logger;
  readonly clock?: () => number;
  readonly onCommitted?: (topic: string, partition: number, offset: string, records: number) => void;
  /** Called when a consumer kafkajs had ended is connected again (metrics). */
  readonly onReconnect?: () => void;
  /** Called after records were produced and acknowledged. */
  readonly onProduced?: (topic: string, records: number) => void;
  /** Called per source of a batch once its outputs were produced and acknowledged (metrics). */
  readonly onTransformed?: (t: TransformedRecords) => void;
  /**
   * Cuts the start-up short: the consumers already started drain what they hold, then the start
   * rejects with `StoppedDuringStartup`.
   */
  readonly signal?: AbortSignal;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** About how many bytes of records go into one produce request ({@link sendInChunks}). */
const SEND_CHUNK_BYTES = 512 * 1024;

/** The source types whose raw topics the transform role reads. */
export function transformedTypes(): SourceType[] {
  return SOURCE_TYPES.filter((t) => transformForSource(t) !== undefined);
}

type Headers = NonNullable<PartitionBatch['messages'][number]['headers']>;

function header(headers: Headers | undefined, name: string): string | undefined {
  const v = headers?.[name];
  const one = Array.isArray(v) ? v[0] : v;
  if (one === undefined) return undefined;
  return typeof one === 'string' ? one : one.toString('utf8');
}

function deadLetter(
  type: SourceType,
  source: string,
  tenant: string,
  code: string,
  message: string,
  bytes: Buffer | null,
  originKey: string,
  now: number,
): DeadLetterRow {
  return {
    tenant,
    source,
    source_type: type,
    stage: 'transform',
    error_code: code,
    error_message: message,
    original_base64: (bytes ?? Buffer.alloc(0)).toString('base64'),
    origin_key: originKey,
    occurred_at: now,
  };
}

/**
 * Transforms one raw topic record. Never throws: a record without headers, or a transform
 * failure, is a dead letter.
 */
export function transformRawMessage(
  type: SourceType,
  transform: RecordTransform,
  topic: string,
  partition: number,
  message: PartitionBatch['messages'][number],
  now: number,
): TransformOutput {
  const { headers } = message;
  const source = header(headers, RAW_HEADERS.source);
  const tenant = header(headers, RAW_HEADERS.tenant);
  const staffId = header(headers, RAW_HEADERS.staffId);
  const account = header(headers, RAW_HEADERS.account);
  const cursor = header(headers, RAW_HEADERS.cursor) ?? '';
  const index = Number(header(headers, RAW_HEADERS.index) ?? '0');
  const fetchedAt = Number(header(headers, RAW_HEADERS.fetchedAt) ?? '0');
  const where = `${topic}-${partition}@${message.offset}`;
  if (source === undefined || tenant === undefined || staffId === undefined) {
    const keySource = message.key?.toString('utf8').split(':')[0] ?? '';
    return {
      messages: [],
      events: [],
      deadLetters: [
        deadLetter(type, keySource, tenant ?? '', 'MSGPIPE_ERR_SHAPE', `Raw record ${where} lacks the source, tenant or staff-id header.`, message.value, `kafka:${where}`, now),
      ],
      recalls: [],
    };
  }
  const record: RawRecord = {
    origin: { source, sourceType: type, tenant, staffId, ...(account === undefined ? {} : { account }) },
    bytes: message.value ?? new Uint8Array(0),
    fetchedAt: Number.isFinite(fetchedAt) ? fetchedAt : 0,
    cursor,
    index: Number.isInteger(index) ? index : 0,
  };
  try {
    return transform(record, now);
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    const code = err instanceof MsgpipeError ? err.code : 'MSGPIPE_ERR_SHAPE';
    return {
      messages: [],
      events: [],
      deadLetters: [deadLetter(type, source, tenant, code, `Transform failed: ${text}`, message.value, `${source}:${cursor}#${index}`, now)],
      recalls: [],
    };
  }
}

/** One carrier record (empty `msgid`) per session of `marks` and `rows`, in order of first appearance. */
function carriers(marks: readonly EditMark[], rows: readonly MessageEditRow[]): Message[] {
  const bySession = new Map<string, { carrier: EditCarrier; marks: EditMark[]; rows: MessageEditRow[] }>();
  const entry = (carrier: EditCarrier): { carrier: EditCarrier; marks: EditMark[]; rows: MessageEditRow[] } => {
    const key = sessionKey(carrier);
    let e = bySession.get(key);
    if (e === undefined) bySession.set(key, (e = { carrier, marks: [], rows: [] }));
    return e;
  };
  for (const mark of marks) entry({ tenant: mark.tenant, source: '', source_type: '' as SourceType, staff_id: mark.staff_id, session_id: mark.session_id }).marks.push(mark);
  for (const row of rows) entry(row).rows.push(row);
  return [...bySession].map(([key, e]) => ({ key, value: encodeEditCarrier(e.carrier, e.marks, e.rows) }));
}

/**
 * The typed topic records of one output. Recall and edit marks ride on the message they belong
 * to (the revoke row; the edited row), edit history rows on the message they are a version of
 * when the output holds it; without a message to ride on they go on one carrier record per
 * session (empty `msgid`), keyed like that session's messages so they keep its order.
 */
export function outputMessages(topics: Topics, output: TransformOutput): { topic: string; messages: Message[] }[] {
  const out: { topic: string; messages: Message[] }[] = [];
  const edits = output.edits ?? [];
  const history = output.editHistory ?? [];
  const records: Message[] = [];
  if (output.messages.length > 0) {
    const recallsOf = new Map<number, typeof output.recalls>();
    for (const mark of output.recalls) {
      let i = output.messages.findIndex((m) => m.msg_type === 'revoke' && m.pre_msgid === mark.target_msgid);
      if (i < 0) i = 0;
      recallsOf.set(i, [...(recallsOf.get(i) ?? []), mark]);
    }
    const editsOf = new Map<number, EditMark[]>();
    for (const mark of edits) {
      let i = output.messages.findIndex((m) => m.msgid === mark.target_msgid);
      if (i < 0) i = 0;
      editsOf.set(i, [...(editsOf.get(i) ?? []), mark]);
    }
    const historyOf = new Map<number, MessageEditRow[]>();
    const carried: MessageEditRow[] = [];
    for (const row of history) {
      const i = output.messages.findIndex((m) => m.msgid === row.msgid && sessionKey(m) === sessionKey(row));
      if (i < 0) carried.push(row);
      else historyOf.set(i, [...(historyOf.get(i) ?? []), row]);
    }
    output.messages.forEach((row, i) => {
      records.push({ key: sessionKey(row), value: encodeMessage(row, recallsOf.get(i) ?? [], editsOf.get(i) ?? [], historyOf.get(i) ?? []) });
    });
    records.push(...carriers([], carried));
  } else {
    records.push(...carriers(edits, history));
  }
  if (records.length > 0) out.push({ topic: topics.messages, messages: records });
  if (output.events.length > 0) {
    out.push({ topic: topics.events, messages: output.events.map((row) => ({ key: sessionKey(row), value: encodeEvent(row) })) });
  }
  if (output.deadLetters.length > 0) {
    out.push({ topic: topics.dlq, messages: output.deadLetters.map((row) => ({ key: row.origin_key, value: encodeDeadLetter(row) })) });
  }
  return out;
}

/** The counters the metrics read. */
export interface TransformStats {
  records: number;
  messages: number;
  events: number;
  deadLetters: number;
}

/** A running transform role. */
export interface KafkaTransform {
  readonly stats: TransformStats;
  readonly crashed: Promise<never>;
  /** Drains the batches in flight, commits them and leaves the group. */
  stop(): Promise<void>;
}

export async function startKafkaTransform(options: KafkaTransformOptions): Promise<KafkaTransform> {
  const { kafka, topics, log } = options;
  const clock = options.clock ?? Date.now;
  const stats: TransformStats = { records: 0, messages: 0, events: 0, deadLetters: 0 };
  const types = transformedTypes();
  const producer = createIdempotentProducer(kafka);
  await untilStopped(producer.connect(), options.signal, () => producer.disconnect());

  const handle = async (batch: PartitionBatch): Promise<void> => {
    const type = rawTopicType(topics, batch.topic);
    const transform = type === undefined ? undefined : transformForSource(type);
    if (type === undefined || transform === undefined) throw new Error(`No transform for topic ${batch.topic}.`);
    const now = clock();
    const byTopic = new Map<string, Message[]>();
    // Per source (a raw topic carries every source of its type): what the metrics count.
    const bySource = new Map<string, Mutable<TransformedRecords>>();
    for (const message of batch.messages) {
      const started = performance.now();
      const output = transformRawMessage(type, transform, batch.topic, batch.partition, message, now);
      const records = outputMessages(topics, output);
      // The rows carry the source transformRawMessage read from the headers (a record without
      // headers is a dead letter named after its key's source); the header only for no rows.
      const source = output.messages[0]?.source ?? output.events[0]?.source ?? output.deadLetters[0]?.source ?? header(message.headers, RAW_HEADERS.source) ?? '';
      let counts = bySource.get(source);
      if (counts === undefined) bySource.set(source, (counts = { source, sourceType: type, records: 0, messages: 0, events: 0, deadLetters: 0, ms: 0 }));
      counts.records++;
      counts.messages += output.messages.length;
      counts.events += output.events.length;
      counts.deadLetters += output.deadLetters.length;
      counts.ms += performance.now() - started;
      for (const t of records) {
        const list = byTopic.get(t.topic);
        if (list === undefined) byTopic.set(t.topic, t.messages);
        else for (const m of t.messages) list.push(m);
      }
    }
    await sendInChunks(producer, [...byTopic].map(([topic, list]) => ({ topic, messages: list })), SEND_CHUNK_BYTES, options.onProduced);
    for (const t of bySource.values()) {
      stats.records += t.records;
      stats.messages += t.messages;
      stats.events += t.events;
      stats.deadLetters += t.deadLetters;
      options.onTransformed?.(t);
    }
  };

  let loops: ConsumerLoop[];
  try {
    loops = await startConsumerLoops(
      options.consumers,
      (i) =>
        startConsumerLoop({
          kafka,
          groupId: `${topics.prefix}.transform`,
          topics: types.map((t) => topics.raw(t)),
          log: log.child({ consumer: i }),
          maxRecords: 2000,
          // Smaller fetches than the sink's: a transform holds each record decoded and encoded
          // again, and 1 MiB / 4 MiB kept its peak RSS at 256 MB against 328 MB with 4 / 16 MiB
          // (300k-message bench, docs/benchmarks.md).
          maxBytesPerPartition: 1024 * 1024,
          maxBytes: 4 * 1024 * 1024,
          // A fetch waits (at most 250 ms) for 256 KiB: fewer, fuller fetches, for this process
          // and for the broker, which answered a stream of nearly empty fetches before.
          minBytes: 256 * 1024,
          sessionTimeoutMs: options.sessionTimeoutMs,
          handle,
          ...(options.onCommitted === undefined ? {} : { onCommitted: options.onCommitted }),
          ...(options.onReconnect === undefined ? {} : { onReconnect: options.onReconnect }),
        }),
      options.signal,
    );
  } catch (err) {
    // The loops already started are stopped: nothing in flight uses the producer now.
    await producer.disconnect();
    throw err;
  }
  const crashed = Promise.race(loops.map((l) => l.crashed));
  // Awaited later (by the roles), possibly after a crash: never an unhandled rejection.
  crashed.catch(() => undefined);
  return {
    stats,
    crashed,
    async stop() {
      await Promise.all(loops.map((l) => l.stop()));
      await producer.disconnect();
    },
  };
}
