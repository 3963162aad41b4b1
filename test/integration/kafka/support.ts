/**
 * Shared pieces of the distributed-mode integration tests: simulator accounts, configuration,
 * role processes, and the checks of what reached ClickHouse and the topics.
 */
import { expect } from 'vitest';

import type { SimulatorAccountInput, SimulatorHandle } from '../../../src/simulate/index.ts';
import { decodeMessage } from '../../../src/kafka/codec.ts';
import type { Kafka } from '../../../src/kafka/client.ts';
import { topicNames } from '../../../src/kafka/topics.ts';
import { groupLag, readTopic } from '../../helpers/kafka.ts';
import { listenerUrl, type MsgpipeProcess, startMsgpipe, waitFor } from '../../helpers/msgpipe.ts';

export const TENANT = 'corp1';
export const IDS = ['g1', 'v1', 's1'] as const;

export function accounts(messages: number, extra: Partial<SimulatorAccountInput> = {}): SimulatorAccountInput[] {
  const common = { messages, sessions: 40, pageSize: 50, duplicateRate: 0.05, ...extra };
  return [
    { provider: 'gewe', id: 'g1', token: 'tok-g', appId: 'wx_app_g1', seed: 'g1', ...common },
    { provider: 'videosapi', id: 'v1', token: 'tok-v', appId: 'wx_app_v1', seed: 'v1', ...common },
    { provider: 'syncfinder', id: 's1', token: 'tok-s', wId: 'w-s1', seed: 's1', ...common },
  ] as SimulatorAccountInput[];
}

export function kafkaConfig(dir: string, baseUrl: string, brokers: readonly string[], prefix: string, extra: Record<string, unknown> = {}): unknown {
  return {
    tenants: [{ id: TENANT, secret: 'test-secret' }],
    sources: [
      { type: 'gewe', name: 'g1', tenant: TENANT, baseUrl, token: 'tok-g', appId: 'wx_app_g1', pollIntervalMs: 100 },
      { type: 'videosapi', name: 'v1', tenant: TENANT, baseUrl, token: 'tok-v', appId: 'wx_app_v1', pollIntervalMs: 100 },
      { type: 'syncfinder', name: 's1', tenant: TENANT, baseUrl, token: 'tok-s', wId: 'w-s1', pollIntervalMs: 100 },
    ],
    clickhouse: { path: `${dir}/ch`, database: 'msgpipe' },
    kafka: { brokers: [...brokers], topicPrefix: prefix, partitions: 4, consumers: 2, ...extra },
    sink: { maxAgeMs: 200 },
    metrics: { host: '127.0.0.1', port: 0 },
    log: { level: 'info' },
  };
}

/** Waits until the process answers `/readyz` with 200 (its consumers joined their groups). */
export async function waitReady(proc: MsgpipeProcess, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    async () => {
      const url = listenerUrl(proc);
      if (url === undefined) return false;
      return (await fetch(`${url}/readyz`).catch(() => undefined))?.status === 200;
    },
    timeoutMs,
    'the process to be ready',
  );
}


/** True once every account's latest request (after the first `since[id]` ones) was answered "caught up". */
export function caughtUp(sim: SimulatorHandle, since: Readonly<Record<string, number>> = {}): boolean {
  return IDS.every((id) => {
    const received = sim.received(id);
    return received.length > (since[id] ?? 0) && received.at(-1)?.outcome === 'caught_up';
  });
}

export function requestCounts(sim: SimulatorHandle): Record<string, number> {
  return Object.fromEntries(IDS.map((id) => [id, sim.received(id).length]));
}

/** `msgpipe run --role <roles>` with warn-level logs. */
export function startRole(configFile: string, roles: string, env: NodeJS.ProcessEnv = {}): MsgpipeProcess {
  return startMsgpipe(['run', '--config', configFile, '--role', roles], { MSGPIPE_LOG_LEVEL: 'warn', ...env });
}

export async function stopGracefully(proc: MsgpipeProcess): Promise<void> {
  proc.child.kill('SIGTERM');
  const code = await proc.exited;
  if (code !== 0) throw new Error(`msgpipe exited with ${String(code)}\n${proc.stderr().slice(-4000)}`);
}

/** Uncommitted records of the transform and sink groups together. */
export async function pipelineLag(kafka: Kafka, prefix: string): Promise<number> {
  const t = topicNames(prefix);
  const transform = await groupLag(kafka, `${prefix}.transform`, [t.raw('gewe'), t.raw('videosapi'), t.raw('syncfinder')]);
  const sink = await groupLag(kafka, `${prefix}.sink`, [t.messages, t.events, t.dlq]);
  return transform + sink;
}

/**
 * Asserts that on the messages topic every session's messages (first occurrence of each msgid)
 * come in upstream order.
 */
export async function expectSessionOrder(kafka: Kafka, prefix: string, sim: SimulatorHandle): Promise<void> {
  const records = await readTopic(kafka, topicNames(prefix).messages);
  const seen = new Set<string>();
  const topicOrder = new Map<string, string[]>();
  for (const r of records) {
    let row;
    try {
      row = decodeMessage(r.value).row;
    } catch {
      continue; // a poison record a test put there
    }
    const id = `${row.source}:${row.msgid}`;
    if (seen.has(id)) continue;
    seen.add(id);
    const session = `${row.source}:${row.session_id}`;
    topicOrder.set(session, [...(topicOrder.get(session) ?? []), row.msgid]);
  }
  let sessions = 0;
  for (const id of IDS) {
    const upstream = new Map<string, string[]>();
    for (const m of sim.expected(id)) {
      if (m.destination !== 'messages') continue;
      const session = `${id}:${m.msgSessionId}`;
      upstream.set(session, [...(upstream.get(session) ?? []), m.msgid]);
    }
    for (const [session, ids] of upstream) {
      expect(topicOrder.get(session), session).toEqual(ids);
      sessions++;
    }
  }
  expect(sessions).toBeGreaterThan(30);
}
