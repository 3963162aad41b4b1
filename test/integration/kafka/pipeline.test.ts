/**
 * Distributed mode on a real broker: simulator → ingest process → Kafka → two transform
 * processes → sink process (two consumers in its group) → chDB, plus poison records.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { decodeDeadLetter } from '../../../src/kafka/codec.ts';
import { createIdempotentProducer, type Kafka } from '../../../src/kafka/client.ts';
import { topicNames, topicSpecs } from '../../../src/kafka/topics.ts';
import { type ExpectedMessage, startSimulator } from '../../../src/simulate/index.ts';
import { expectExactContents } from '../../helpers/contents.ts';
import { readTopic, type TestBroker, uniqueTopic, useTestBroker, createTopics } from '../../helpers/kafka.ts';
import { parseMetrics, type Sample, sumSamples } from '../../helpers/metrics.ts';
import { listenerUrl, type MsgpipeProcess, ROOT, sql, waitFor, withTempDir, writeConfig } from '../../helpers/msgpipe.ts';
import {
  accounts,
  caughtUp,
  expectSessionOrder,
  IDS,
  kafkaConfig,
  waitReady,
  pipelineLag,
  startRole,
  stopGracefully,
  TENANT,
} from './support.ts';

const execFileAsync = promisify(execFile);

let broker: TestBroker;
let kafka: Kafka;
useTestBroker((b, k) => {
  broker = b;
  kafka = k;
});

describe('distributed pipeline', () => {
  it('stores exactly the upstream messages through Kafka, in session order, and dead-letters poison records', async () => {
    await withTempDir('kafka-e2e', async (dir) => {
      const prefix = uniqueTopic('mp');
      const topics = topicNames(prefix);
      const sim = await startSimulator({ accounts: accounts(400) });
      try {
        const configFile = await writeConfig(dir, kafkaConfig(dir, sim.url, broker.brokers, prefix));

        // Poison first, on partition 0 of a raw topic and of the messages topic: everything
        // after them on those partitions must still arrive.
        await createTopics(kafka, topicSpecs(topics, 4));
        const poisonRaw = Buffer.from([0x7b, 0xff, 0xfe, 0x6e, 0x6f, 0x74, 0x20, 0x6a, 0x73, 0x6f, 0x6e]);
        const poisonTyped = Buffer.from('this is not a protobuf Message \u00ff', 'latin1');
        const producer = createIdempotentProducer(kafka);
        await producer.connect();
        await producer.send({
          topic: topics.raw('gewe'),
          messages: [
            {
              partition: 0,
              key: 'g1:poison',
              value: poisonRaw,
              headers: { source: 'g1', account: 'wx_app_g1', 'fetched-at': '1', cursor: 'c0', tenant: TENANT, 'staff-id': 'wx_app_g1', index: '0' },
            },
          ],
        });
        await producer.send({ topic: topics.messages, messages: [{ partition: 0, key: `${TENANT}:x:y`, value: poisonTyped }] });
        await producer.disconnect();

        const sink = startRole(configFile, 'sink', { MSGPIPE_LOG_LEVEL: 'info' });
        const transforms = [startRole(configFile, 'transform', { MSGPIPE_LOG_LEVEL: 'info' }), startRole(configFile, 'transform', { MSGPIPE_LOG_LEVEL: 'info' })];
        // Both transform processes are in the group before records flow, so both get work.
        for (const p of [sink, ...transforms]) await waitReady(p);
        const ingest = startRole(configFile, 'ingest');
        const all = [ingest, ...transforms, sink];
        try {
          await waitFor(() => caughtUp(sim), 120_000, 'the sources to catch up');
          await waitFor(async () => (await pipelineLag(kafka, prefix)) === 0, 120_000, 'the consumer groups to commit everything');
        } catch (err) {
          for (const p of all) p.child.kill('SIGKILL');
          throw new Error(`${String(err)}\n${all.map((p) => p.stderr().slice(-2000)).join('\n---\n')}`, { cause: err });
        }
        // Lag and throughput at /metrics of the sink and of both transform processes.
        const scrape = async (proc: MsgpipeProcess): Promise<Sample[]> => {
          const url = listenerUrl(proc);
          expect(url).toBeDefined();
          return parseMetrics(await (await fetch(`${url!}/metrics`)).text());
        };
        const sinkSamples = await scrape(sink);
        const sinkLag = sinkSamples.filter((x) => x.name === 'msgpipe_kafka_consumer_lag' && x.labels['group'] === `${prefix}.sink`);
        expect(sinkLag).toHaveLength(12);
        expect(sinkLag.every((x) => x.value === 0)).toBe(true);
        const storedTotal = sumSamples(sinkSamples, 'msgpipe_sink_rows_total', { table: 'messages' });
        expect(sumSamples(sinkSamples, 'msgpipe_kafka_consumed_records_total', { topic: topics.messages })).toBeGreaterThanOrEqual(storedTotal);
        expect(storedTotal).toBeGreaterThan(1000);
        let transformed = 0;
        let transformRecords = 0;
        let transformLetters = 0;
        for (const t of transforms) {
          const samples = await scrape(t);
          expect(sumSamples(samples, 'msgpipe_kafka_consumer_lag', { group: `${prefix}.transform` })).toBe(0);
          transformed += sumSamples(samples, 'msgpipe_kafka_consumed_records_total', { group: `${prefix}.transform` });
          expect(sumSamples(samples, 'msgpipe_kafka_produced_records_total', { topic: topics.messages })).toBeGreaterThan(0);
          // The per-stage transform series count in the transform role too, per source.
          transformRecords += sumSamples(samples, 'msgpipe_transform_records_total', {});
          expect(sumSamples(samples, 'msgpipe_transform_rows_total', { table: 'messages' })).toBeGreaterThan(0);
          transformLetters += sumSamples(samples, 'msgpipe_transform_rows_total', { source: 'g1', source_type: 'gewe', table: 'dead_letters' });
        }
        expect(transformed).toBeGreaterThan(1000);
        // A batch is counted when its outputs are produced, its records when their offsets are
        // committed: a batch read again after a rebalance counts only in the first.
        expect(transformRecords).toBeGreaterThanOrEqual(transformed);
        expect(transformLetters).toBeGreaterThanOrEqual(1);

        for (const p of all) await stopGracefully(p);

        await expectExactContents(configFile, sim, IDS);
        await expectSessionOrder(kafka, prefix, sim);

        // The consumer example of docs/kafka.md reads the topic with nothing but kafkajs and the .proto files.
        const { stdout } = await execFileAsync(process.execPath, ['--import', 'tsx', join(ROOT, 'examples', 'kafka-consumer.ts')], {
          cwd: ROOT,
          env: { ...process.env, KAFKA_BROKERS: broker.brokers.join(','), MSGPIPE_TOPIC_PREFIX: prefix, MAX: '50', GROUP_ID: uniqueTopic('example') },
          timeout: 60_000,
        });
        const printed = stdout.trim().split('\n').map((line) => JSON.parse(line) as { source: string; msgid: string; session_id: string; msg_time: number; key: string });
        expect(printed).toHaveLength(50);
        const upstream = new Map<string, ExpectedMessage>(IDS.flatMap((id) => sim.expected(id).map((m) => [`${id}:${m.msgid}`, m] as const)));
        for (const m of printed) {
          const u = upstream.get(`${m.source}:${m.msgid}`);
          expect(u, m.msgid).toBeDefined();
          expect(m.session_id).toBe(u!.msgSessionId);
          expect(m.msg_time).toBe(u!.createTime * 1000);
          expect(m.key).toBe(`${TENANT}:${m.key.split(':')[1]!}:${m.session_id}`);
        }

        // The poison records: on the dlq topic and in dead_letters with their original bytes.
        const dlq = (await readTopic(kafka, topics.dlq)).map((r) => decodeDeadLetter(r.value));
        const rawLetter = dlq.find((d) => d.original_base64 === poisonRaw.toString('base64'));
        expect(rawLetter).toMatchObject({ stage: 'transform', source: 'g1', source_type: 'gewe', tenant: TENANT });
        const letters = await sql<{ stage: string; error_code: string; original_base64: string }>(
          configFile,
          'SELECT stage, error_code, original_base64 FROM dead_letters',
        );
        expect(letters.filter((l) => l.original_base64 === poisonRaw.toString('base64'))).toHaveLength(1);
        const typed = letters.filter((l) => l.original_base64 === poisonTyped.toString('base64'));
        expect(typed).toEqual([{ stage: 'sink', error_code: 'MSGPIPE_ERR_SHAPE', original_base64: poisonTyped.toString('base64') }]);
      } finally {
        await sim.close();
      }
    });
  });
});
