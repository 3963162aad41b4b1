/**
 * The ingest role of the distributed mode: runs the configured sources and puts each fetched
 * item, as its exact upstream bytes, on `<p>.raw.<source type>` (key `<source>:<session>`,
 * headers per {@link RAW_HEADERS}), page dead letters on `<p>.dlq`, and then the page's cursor
 * on `<p>.cursors`.
 *
 * Order per page: the raw records and dead letters are sent with the idempotent producer and
 * acknowledged by the broker (acks=all) before `emit` resolves; only then is the cursor queued
 * for the cursors topic. A crash before the cursor write re-fetches the page on restart, and
 * the sink stores the repeated records once (ADR 0010).
 */
import type { Logger } from 'pino';

import { type CursorUpdate, isStop, sourcesStop, type Wakeups } from '../core/pipeline.ts';
import type { Source, SourceContext, SourcePage } from '../ingest/source.ts';
import { sessionOfItemWithoutSession } from '../transform/finder.ts';
import type { Kafka, Message } from './client.ts';
import { createIdempotentProducer, retryKafka, smallestMessageLimit } from './client.ts';
import { encodeDeadLetter } from './codec.ts';
import { CursorCommitter, readCursors, TopicCursorReader } from './cursors.ts';
import { sendInChunks } from './send.ts';
import { MAX_RECORD_BATCH_BYTES, RAW_HEADERS, rawSession, type Topics } from './topics.ts';

/**
 * About how many bytes of records go into one produce request: a usual page goes in one, and a
 * page of large items on one session stays under the topics' max.message.bytes ({@link sendInChunks}).
 */
const SEND_CHUNK_BYTES = MAX_RECORD_BATCH_BYTES / 2;

export interface KafkaIngestOptions {
  readonly kafka: Kafka;
  readonly topics: Topics;
  readonly sources: readonly Source[];
  /** The upstream account (appId / wId) of each source name, for the `account` header. */
  readonly accounts: ReadonlyMap<string, string>;
  readonly wakeups: Wakeups;
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Called after records were produced and acknowledged. */
  readonly onProduced?: (topic: string, records: number) => void;
  /** Called after cursors were written to the cursors topic. */
  readonly onCursors?: (cursors: readonly CursorUpdate[]) => void;
}

/** The counters the metrics read. */
export interface IngestStats {
  records: number;
  pages: number;
  deadLetters: number;
  cursorsCommitted: number;
}

/**
 * The session of a raw finder item, as its rows will have it: `msgSessionId`, read from the bytes;
 * for the few items without one (server instructions, a revoke that names its session itself) the
 * item is parsed.
 */
function finderSession(bytes: Uint8Array): string {
  const session = rawSession(bytes);
  return session === '' ? sessionOfItemWithoutSession(bytes) : session;
}

/** The raw topic records of a page. */
export function rawMessages(page: SourcePage, account: string): Message[] {
  const { origin } = page;
  return page.records.map((record) => ({
    key: `${origin.source}:${record.session ?? finderSession(record.bytes)}`,
    value: Buffer.from(record.bytes.buffer, record.bytes.byteOffset, record.bytes.byteLength),
    headers: {
      [RAW_HEADERS.source]: origin.source,
      [RAW_HEADERS.account]: account,
      [RAW_HEADERS.fetchedAt]: String(record.fetchedAt),
      [RAW_HEADERS.cursor]: record.cursor,
      [RAW_HEADERS.tenant]: origin.tenant,
      [RAW_HEADERS.staffId]: origin.staffId,
      [RAW_HEADERS.index]: String(record.index),
    },
  }));
}

/**
 * The size of the produce requests of a page: {@link SEND_CHUNK_BYTES}, or less when a topic the
 * ingest writes takes smaller record batches. Topics made by msgpipe take 8 MiB; one an operator
 * created with the broker's default takes about 1 MiB, and a 4 MiB request of records on one
 * session would be refused on every attempt.
 */
async function sendChunkBytes(options: KafkaIngestOptions, signal: AbortSignal): Promise<number> {
  const { topics, log } = options;
  const names = [...new Set(options.sources.map((s) => topics.raw(s.origin.sourceType))), topics.dlq];
  let limit: number | undefined;
  try {
    limit = await retryKafka(() => smallestMessageLimit(options.kafka, names), log, 20, 500, undefined, signal);
  } catch (err) {
    if (!signal.aborted) log.warn({ err, topics: names }, 'Could not read the topics\' max.message.bytes; producing in requests of the default size.');
  }
  if (limit === undefined) return SEND_CHUNK_BYTES;
  // A record batch adds its header (61 bytes) to what recordBytes counts, which overstates each
  // record's own framing: 16 KiB of room is ample.
  return Math.min(SEND_CHUNK_BYTES, Math.max(64 * 1024, limit - 16 * 1024));
}

/**
 * Runs every source until `signal` aborts (or one fails), then waits for the cursors of every
 * acknowledged page to be written.
 *
 * @throws the first fatal error of a source, of a send, or of a cursor write
 */
export async function runKafkaIngest(options: KafkaIngestOptions, stats: IngestStats): Promise<void> {
  const { kafka, topics, log } = options;
  const { stop, release } = sourcesStop(options.signal);
  // Stopped before anything was fetched (reading the cursors joins a group: seconds).
  if (stop.signal.aborted) {
    release();
    return;
  }
  let cursors: Awaited<ReturnType<typeof readCursors>>;
  try {
    cursors = await retryKafka(() => readCursors(kafka, topics.cursors, log), log, undefined, undefined, undefined, stop.signal);
  } catch (err) {
    release();
    // A read given up because of the stop is the stop, not a failure.
    if (options.signal.aborted) return;
    throw err;
  }
  log.info({ cursors: cursors.size }, 'Cursors read from the cursors topic.');
  const reader = new TopicCursorReader(cursors);
  const chunkBytes = await sendChunkBytes(options, stop.signal);
  const producer = createIdempotentProducer(kafka);
  await producer.connect();
  const committer = new CursorCommitter(producer, topics.cursors, log, cursors, (written) => {
    options.onProduced?.(topics.cursors, written.length);
    options.onCursors?.(written);
  });

  let fatal: unknown;
  const runs = options.sources.map(async (source) => {
    const account = options.accounts.get(source.name) ?? source.name;
    const ctx: SourceContext = {
      signal: stop.signal,
      log,
      loadCursor: (stream) => reader.load(source.name, stream),
      wakeup: options.wakeups.waiter(source.origin.tenant),
      emit: async (page) => {
        const topicMessages = [];
        if (page.records.length > 0) topicMessages.push({ topic: topics.raw(page.origin.sourceType), messages: rawMessages(page, account) });
        if (page.deadLetters.length > 0) {
          topicMessages.push({
            topic: topics.dlq,
            messages: page.deadLetters.map((d) => ({ key: d.origin_key, value: encodeDeadLetter(d) })),
          });
        }
        await sendInChunks(producer, topicMessages, chunkBytes, options.onProduced);
        stats.records += page.records.length;
        stats.deadLetters += page.deadLetters.length;
        stats.pages += 1;
        // Every record of the page is acknowledged: the cursor may move.
        committer.commit({ source: source.name, stream: page.stream, cursor: page.cursorAfter });
        stats.cursorsCommitted += 1;
      },
    };
    try {
      await source.run(ctx);
    } catch (err) {
      if (isStop(err, options.signal)) return;
      fatal ??= err;
      log.error({ err, source: source.name }, 'Source failed; stopping ingest.');
      stop.abort(err);
    }
  });
  await Promise.all(runs);
  release();
  try {
    await committer.flush();
  } catch (err) {
    fatal ??= err;
  }
  await producer.disconnect();
  if (fatal !== undefined) throw fatal instanceof Error ? fatal : new Error('Ingest failed.', { cause: fatal });
}
