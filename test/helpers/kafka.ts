/**
 * A real Kafka broker for tests (docs/adr/0008-kafka-broker-for-dev-and-ci.md), chosen in order:
 *
 * 1. `KAFKA_BROKERS` (comma-separated `host:port`) when set: an existing broker, never stopped here;
 * 2. testcontainers with the `apache/kafka` image when a Docker engine answers quickly;
 * 3. `scripts/kafka.sh start` (Kafka jars from Maven Central, single-node KRaft on 127.0.0.1), on
 *    `KAFKA_PORT` or 19092, stopped again by `stop()` unless it was already running.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { pino } from 'pino';
import { afterAll, beforeAll } from 'vitest';

import type { MessageRow, TransformOutput } from '../../src/core/types.ts';
import { createIdempotentProducer, createKafka, ensureTopics, type Kafka, type TopicSpec } from '../../src/kafka/client.ts';
import { encodeMessage } from '../../src/kafka/codec.ts';
import { sessionKey } from '../../src/kafka/topics.ts';
import { ROOT } from './msgpipe.ts';

const execFileAsync = promisify(execFile);

/** The Kafka image testcontainers runs; the same version as tools/kafka/pom.xml. */
export const KAFKA_IMAGE = 'apache/kafka:4.1.1';
/** The port `scripts/kafka.sh` uses for tests unless `KAFKA_PORT` is set. */
export const DEFAULT_TEST_PORT = 19092;

/** A broker a test can use. */
export interface TestBroker {
  readonly brokers: string[];
  /** How the broker was obtained. */
  readonly source: 'env' | 'testcontainers' | 'script';
  stop(): Promise<void>;
}

const SCRIPT = join(ROOT, 'scripts', 'kafka.sh');

/** A topic name no other test (or earlier run) uses. */
export function uniqueTopic(prefix = 'test'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomUUID().slice(0, 8)}`;
}

/** Resolves to `undefined` when `promise` has not settled within `ms`. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      resolve(undefined);
    }, ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A free TCP port on the loopback interface. */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** The container runtime's host when a Docker engine answers within a few seconds. */
async function dockerHost(): Promise<string | undefined> {
  if (process.env['KAFKA_NO_DOCKER'] === '1') return undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const client = await within(getContainerRuntimeClient(), 5_000);
    return client?.info.containerRuntime.host;
  } catch {
    return undefined;
  }
}

async function startContainer(host: string): Promise<TestBroker> {
  const { GenericContainer, Wait } = await import('testcontainers');
  // The advertised listener must be the address clients use, so the host port is fixed up front.
  const port = await freePort();
  const container = await new GenericContainer(KAFKA_IMAGE)
    .withExposedPorts({ container: port, host: port })
    .withEnvironment({
      KAFKA_NODE_ID: '1',
      KAFKA_PROCESS_ROLES: 'broker,controller',
      KAFKA_LISTENERS: `PLAINTEXT://:${port},CONTROLLER://:9093`,
      KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT://${host}:${port}`,
      KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_OFFSETS_TOPIC_NUM_PARTITIONS: '1',
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR: '1',
      KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR: '1',
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'false',
      KAFKA_HEAP_OPTS: '-Xmx384m -Xms384m',
    })
    .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/))
    .withStartupTimeout(120_000)
    .start();
  return {
    brokers: [`${host}:${port}`],
    source: 'testcontainers',
    async stop() {
      await container.stop();
    },
  };
}

async function runScript(command: 'start' | 'stop' | 'status', env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await execFileAsync('bash', [SCRIPT, command], { env, cwd: ROOT, timeout: 180_000 });
    return true;
  } catch (error) {
    if (command === 'status') return false;
    const { stderr } = error as { stderr?: string };
    throw new Error(`scripts/kafka.sh ${command} failed${stderr ? `:\n${stderr}` : ''}`, { cause: error });
  }
}

async function startScript(): Promise<TestBroker> {
  const port = process.env['KAFKA_PORT'] ?? String(DEFAULT_TEST_PORT);
  const env = { ...process.env, KAFKA_PORT: port };
  // A broker someone else started (a developer's, or another test file's) is left running.
  const wasRunning = await runScript('status', env);
  if (!wasRunning) await runScript('start', env);
  return {
    brokers: [`127.0.0.1:${port}`],
    source: 'script',
    async stop() {
      if (!wasRunning) await runScript('stop', env);
    },
  };
}

/** A running broker: from `KAFKA_BROKERS`, else testcontainers, else `scripts/kafka.sh`. */
export async function getBroker(): Promise<TestBroker> {
  const fromEnv = process.env['KAFKA_BROKERS']
    ?.split(',')
    .map((b) => b.trim())
    .filter((b) => b !== '');
  if (fromEnv !== undefined && fromEnv.length > 0) {
    return { brokers: fromEnv, source: 'env', stop: () => Promise.resolve() };
  }
  const host = await dockerHost();
  if (host !== undefined) return startContainer(host);
  return startScript();
}

/**
 * Gets a broker (see {@link getBroker}) before the file's tests and a client for it, hands both
 * to `ready`, and stops the broker after them (a broker from `KAFKA_BROKERS` keeps running).
 */
export function useTestBroker(ready: (broker: TestBroker, kafka: Kafka) => void): void {
  let broker: TestBroker | undefined;
  beforeAll(async () => {
    broker = await getBroker();
    ready(broker, testKafka(broker.brokers));
  });
  afterAll(async () => {
    await broker?.stop();
  });
}

/** A kafkajs client (through src/kafka/client.ts) for test assertions, logging errors only. */
export function testKafka(brokers: readonly string[]): Kafka {
  return createKafka({ brokers, clientId: `msgpipe-test-${process.pid}`, logger: pino({ level: 'error' }) });
}

/**
 * Records a group has not committed yet over `topics` (end offset − committed offset, summed
 * over partitions; a partition the group never committed counts from its low offset).
 */
export async function groupLag(kafka: Kafka, groupId: string, topics: readonly string[]): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    let lag = 0n;
    const committed = await admin.fetchOffsets({ groupId, topics: [...topics] });
    for (const topic of topics) {
      const ends = await admin.fetchTopicOffsets(topic);
      const group = committed.find((c) => c.topic === topic)?.partitions ?? [];
      for (const end of ends) {
        const at = group.find((p) => p.partition === end.partition)?.offset ?? '-1';
        const from = at === '-1' ? BigInt(end.low) : BigInt(at);
        lag += BigInt(end.high) - from;
      }
    }
    return Number(lag);
  } finally {
    await admin.disconnect();
  }
}

/** One record read back from a topic; header values as UTF-8 text. */
export interface TopicRecord {
  readonly partition: number;
  readonly offset: string;
  readonly key: string;
  readonly value: Buffer;
  readonly headers: Readonly<Record<string, string>>;
}

/** Every record now on `topic` (all partitions, up to their current end offsets). */
export async function readTopic(kafka: Kafka, topic: string): Promise<TopicRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const ends = new Map((await admin.fetchTopicOffsets(topic)).filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)]));
  const out: TopicRecord[] = [];
  if (ends.size === 0) {
    await admin.disconnect();
    return out;
  }
  const groupId = uniqueTopic('reader');
  const consumer = kafka.consumer({ groupId, allowAutoTopicCreation: false });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    consumer
      .run({
        autoCommit: false,
        eachBatch: ({ batch }) => {
          for (const m of batch.messages) {
            const headers = Object.fromEntries(Object.entries(m.headers ?? {}).map(([k, v]) => [k, Buffer.isBuffer(v) ? v.toString('utf8') : String(v)]));
            out.push({ partition: batch.partition, offset: m.offset, key: m.key?.toString('utf8') ?? '', value: m.value ?? Buffer.alloc(0), headers });
          }
          const end = ends.get(batch.partition);
          if (end !== undefined && BigInt(batch.lastOffset()) + 1n >= end) ends.delete(batch.partition);
          if (ends.size === 0) resolve();
          return Promise.resolve();
        },
      })
      .catch(reject);
  });
  await consumer.disconnect();
  await admin.deleteGroups([groupId]).catch(() => undefined);
  await admin.disconnect();
  out.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
  return out;
}

/** A broker a test file runs for itself, to stop, kill and start again. */
export interface OwnBroker {
  /** `127.0.0.1:<port>`, once started. */
  readonly brokers: string[];
  /** `scripts/kafka.sh start`: its state is kept between stops. */
  start(): Promise<void>;
  /** `scripts/kafka.sh stop`: a controlled shutdown. */
  stop(): Promise<void>;
  /** SIGKILL to the broker's JVM, as a crash or the OOM killer would end it. */
  kill(): Promise<void>;
  /** SIGSTOP, then SIGCONT: a broker that is there but answers nothing (a hung host). */
  freeze(): Promise<void>;
  thaw(): Promise<void>;
}

/** A port where it and the next one (the controller) are free. */
async function freePortPair(): Promise<number> {
  const free = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const server = createServer();
      server.once('error', () => { resolve(false); });
      server.listen(port, '127.0.0.1', () => server.close(() => { resolve(true); }));
    });
  for (let port = 29_200 + 2 * Math.floor(Math.random() * 300); port < 29_900; port += 2) {
    if ((await free(port)) && (await free(port + 1))) return port;
  }
  throw new Error('no free port pair for the test broker');
}

/**
 * A broker of the file's own (scripts/kafka.sh on a free port, fresh state), started before its
 * tests and stopped and deleted after them, so a test can stop or kill it: the shared broker
 * of the other files is never touched.
 */
export function useOwnBroker(): OwnBroker {
  let port = 0;
  let env: NodeJS.ProcessEnv = {};
  let stateDir = '';
  const script = async (command: 'start' | 'stop'): Promise<void> => {
    await execFileAsync('bash', [SCRIPT, command], { env, cwd: ROOT, timeout: 180_000 });
  };
  const pid = async (): Promise<number> => Number((await readFile(join(stateDir, 'broker.pid'), 'utf8')).trim());
  const broker: OwnBroker = {
    get brokers() {
      return [`127.0.0.1:${String(port)}`];
    },
    start: () => script('start'),
    stop: () => script('stop'),
    async freeze() {
      process.kill(await pid(), 'SIGSTOP');
    },
    async thaw() {
      process.kill(await pid(), 'SIGCONT');
    },
    async kill() {
      const jvm = await pid();
      process.kill(jvm, 'SIGKILL');
      // Gone once signal 0 fails; the script's next start then finds no broker running.
      for (let i = 0; i < 100; i++) {
        try {
          process.kill(jvm, 0);
        } catch {
          return;
        }
        await new Promise((r) => setTimeout(r, 50));
      }
      throw new Error(`the broker (pid ${String(jvm)}) outlived SIGKILL for 5 s`);
    },
  };
  beforeAll(async () => {
    port = await freePortPair();
    env = { ...process.env, KAFKA_PORT: String(port), KAFKA_HEAP: '320m' };
    stateDir = join(process.env['KAFKA_CACHE_DIR'] ?? join(ROOT, '.cache', 'kafka'), `broker-${String(port)}`);
    await rm(stateDir, { recursive: true, force: true });
    await script('start');
  }, 240_000);
  afterAll(async () => {
    await script('stop').catch(() => undefined);
    await rm(stateDir, { recursive: true, force: true });
  }, 120_000);
  return broker;
}

/** Creates `specs` as msgpipe does (ensureTopics), with an admin client of its own. */
export async function createTopics(kafka: Kafka, specs: readonly TopicSpec[]): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    await ensureTopics(admin, specs);
  } finally {
    await admin.disconnect();
  }
}

/**
 * `count` text messages (test/fixtures/text/plain.rows.json, msgids above 2^53, a second apart,
 * text `<label> <i>`) produced to `topic` as the transform produces them, keyed by session.
 */
export async function produceTextMessages(kafka: Kafka, topic: string, count: number, label: string): Promise<MessageRow[]> {
  const template = (JSON.parse(await readFile(join(ROOT, 'test', 'fixtures', 'text', 'plain.rows.json'), 'utf8')) as TransformOutput).messages[0]!;
  const rows = Array.from({ length: count }, (_v, i): MessageRow => ({
    ...template,
    msgid: String(9_007_199_254_740_993n + BigInt(i)),
    content_text: `${label} ${String(i)}`,
    msg_time: template.msg_time + i * 1000,
  }));
  const producer = createIdempotentProducer(kafka);
  await producer.connect();
  try {
    await producer.send({ topic, messages: rows.map((m) => ({ key: sessionKey(m), value: encodeMessage(m, []) })) });
  } finally {
    await producer.disconnect();
  }
  return rows;
}
