/**
 * Topic names, keys and headers of the distributed mode (DESIGN §4, docs/kafka.md).
 *
 * | topic | key | value |
 * |---|---|---|
 * | `<p>.raw.<source type>` | `<source name>:<session>` | exact upstream item bytes; headers below |
 * | `<p>.messages` | `<tenant>:<staff_id>:<session_id>` | `msgpipe.v1.Message` |
 * | `<p>.events` | `<tenant>:<staff_id>:<session_id>` | `msgpipe.v1.Event` |
 * | `<p>.dlq` | origin key | `msgpipe.v1.DeadLetter` |
 * | `<p>.cursors` (compacted) | `<source name>:<stream>` | `msgpipe.v1.Cursor` |
 * | `<p>.control` | tenant | `msgpipe.v1.SyncRequest` |
 */
import { SOURCE_TYPES, type SourceType } from '../core/types.ts';
import type { TopicSpec } from './client.ts';

/** The topic names under one prefix. */
export interface Topics {
  readonly prefix: string;
  raw(type: SourceType): string;
  readonly messages: string;
  readonly events: string;
  readonly dlq: string;
  readonly cursors: string;
  readonly control: string;
}

export function topicNames(prefix: string): Topics {
  return {
    prefix,
    raw: (type) => `${prefix}.raw.${type}`,
    messages: `${prefix}.messages`,
    events: `${prefix}.events`,
    dlq: `${prefix}.dlq`,
    cursors: `${prefix}.cursors`,
    control: `${prefix}.control`,
  };
}

/** The source type of a raw topic name, or undefined when `topic` is not one. */
export function rawTopicType(topics: Topics, topic: string): SourceType | undefined {
  const head = `${topics.prefix}.raw.`;
  if (!topic.startsWith(head)) return undefined;
  const type = topic.slice(head.length);
  return (SOURCE_TYPES as readonly string[]).includes(type) ? (type as SourceType) : undefined;
}

/** `max.message.bytes` of the data topics msgpipe creates: the largest record batch the broker takes. */
export const MAX_RECORD_BATCH_BYTES = 8 * 1024 * 1024;

/**
 * `max.message.bytes` of the dlq topic: a dead letter carries a raw record's bytes plus its
 * error and origin, so it is a little larger than the largest raw record, which must still fit.
 */
export const MAX_DEAD_LETTER_BATCH_BYTES = MAX_RECORD_BATCH_BYTES + 1024 * 1024;

/** `segment.ms` of the cursors topic: how long its records wait, at most, to be compacted. */
export const CURSOR_SEGMENT_MS = 60 * 60 * 1000;

/** Every topic msgpipe uses, as {@link ensureTopics} creates them. */
export function topicSpecs(topics: Topics, partitions: number): TopicSpec[] {
  // Room for a large upstream item (a long chat record, a big appmsg) and its dead letter.
  const data = { 'max.message.bytes': String(MAX_RECORD_BATCH_BYTES) };
  const dlq = { 'max.message.bytes': String(MAX_DEAD_LETTER_BATCH_BYTES) };
  return [
    ...SOURCE_TYPES.map((type) => ({ topic: topics.raw(type), numPartitions: partitions, config: data })),
    { topic: topics.messages, numPartitions: partitions, config: data },
    { topic: topics.events, numPartitions: partitions, config: data },
    { topic: topics.dlq, numPartitions: partitions, config: dlq },
    // Compacted: the latest cursor per key is all that must survive. Only closed segments are
    // compacted, and the broker's default segment (1 GiB, a week) would hold millions of cursor
    // records for every start to read (docs/kafka.md): an hour's segment keeps that read short.
    { topic: topics.cursors, numPartitions: 1, config: { 'cleanup.policy': 'compact', 'segment.ms': String(CURSOR_SEGMENT_MS) } },
    { topic: topics.control, numPartitions: 1 },
  ];
}

/** Headers of a raw record (all UTF-8 text). */
export const RAW_HEADERS = {
  /** The configured source name. */
  source: 'source',
  /** The upstream account: appId (gewe, videosapi), wId (syncfinder) or userId (yunhu). */
  account: 'account',
  /** When the page was fetched, unix ms as decimal text. */
  fetchedAt: 'fetched-at',
  /** The cursor (keyBuff) the page was requested with. */
  cursor: 'cursor',
  /** The tenant (`ext_corp_id`) of the source. */
  tenant: 'tenant',
  /** The staff identity (`ext_staff_id`). */
  staffId: 'staff-id',
  /** Position of the item in its page, from 0. */
  index: 'index',
} as const;

/** The key of a message or event record: one session's rows stay in order on one partition. */
export function sessionKey(row: { tenant: string; staff_id: string; session_id: string }): string {
  return `${row.tenant}:${row.staff_id}:${row.session_id}`;
}

/**
 * The session of a raw finder item, read without parsing the item (a source that knows the session
 * sets `RawRecord.session` instead): the top-level
 * `"msgSessionId":"…"`, as the transform reads it (UTF-8, JSON escapes undone). Inside `content`
 * (an escaped JSON string) the name is written `\"msgSessionId\"`, which this does not match.
 * '' when absent or not a JSON string (the item still goes to one stable partition).
 */
export function rawSession(bytes: Uint8Array): string {
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Searched in latin1, where a character is a byte: the name, the quotes and the backslashes are
  // ASCII, and no byte of a multi-byte UTF-8 sequence is, so the match is exact on the bytes.
  const match = /"msgSessionId"\s*:\s*"((?:[^"\\]|\\.)*)"/.exec(buffer.toString('latin1'));
  if (match === null) return '';
  const value = match[1] ?? '';
  if (!value.includes('\\') && /^[\x20-\x7e]*$/.test(value)) return value;
  const start = match.index + match[0].length - value.length - 1;
  try {
    const parsed: unknown = JSON.parse(`"${buffer.toString('utf8', start, start + value.length)}"`);
    return typeof parsed === 'string' ? parsed : '';
  } catch {
    return '';
  }
}
