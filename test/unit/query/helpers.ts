/**
 * Test helpers for the query API: a migrated chDB store filled through the real SinkWriter, the
 * fastify app over it (requests through `inject`, i.e. real fastify routing, parsing and
 * serialisation), and request signing the way the seed's JavaScript example does it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';

import { parseConfig, type Config } from '../../../src/core/config.ts';
import type { MessageRow } from '../../../src/core/types.ts';
import { buildQueryApp } from '../../../src/query/app.ts';
import { sign as signWith } from '../../../src/query/signature.ts';
import { SinkWriter } from '../../../src/sink/writer.ts';
import { ROOT } from '../../helpers/msgpipe.ts';
import { message, openTempStore, type TempStore } from '../sink/helpers.ts';

export const SECRET_A = 'secret_key';
export const SECRET_B = 'another-tenants-secret';

export interface Fixture {
  readonly temp: TempStore;
  readonly app: FastifyInstance;
  readonly config: Config;
  readonly syncs: string[];
  dispose(): Promise<void>;
}

/** Stores rows through the real sink writer (dedup lookup, tokens, materialized views). */
export async function store(temp: TempStore, rows: readonly MessageRow[]): Promise<void> {
  const writer = new SinkWriter(temp.store, pino({ level: 'silent' }), { maxRows: 100_000 });
  await writer.add({ output: { messages: [...rows], events: [], deadLetters: [], recalls: [] } });
  await writer.close();
}

export function testConfig(query: Record<string, unknown> = {}): Config {
  return parseConfig({
    tenants: [
      { id: 'corp123', secret: SECRET_A },
      { id: 'corp999', secret: SECRET_B },
    ],
    // Names the source of the test rows, so `peer_type` knows it is a WeChat (gewe) account.
    sources: [{ type: 'gewe', name: 'shop-a', tenant: 'corp123', baseUrl: 'http://127.0.0.1:9', token: 't', appId: 'wx_shop_a' }],
    // Tests send hundreds of requests a second; the limit itself has its own test.
    query: { timezone: 'Asia/Shanghai', rateLimit: 1_000_000, ...query },
  });
}

export async function openFixture(
  rows: readonly MessageRow[],
  options: { query?: Record<string, unknown>; log?: Logger; clock?: () => number } = {},
): Promise<Fixture> {
  const temp = await openTempStore();
  await store(temp, rows);
  const config = testConfig(options.query);
  const syncs: string[] = [];
  const app = buildQueryApp({
    store: temp.store,
    config,
    log: options.log ?? pino({ level: 'silent' }),
    sync: { trigger: (tenant: string) => { syncs.push(tenant); return 1; } },
    ...(options.clock === undefined ? {} : { clock: options.clock }),
  });
  await app.ready();
  return {
    temp,
    app,
    config,
    syncs,
    dispose: async () => {
      await app.close();
      await temp.dispose();
    },
  };
}

/** A query string as the seed's JavaScript example builds it (URLSearchParams, signature last). */
export function signedQuery(params: Readonly<Record<string, string | number>>, secret: string): string {
  const raw: Record<string, string> = {};
  for (const [k, v] of Object.entries(params)) raw[k] = String(v);
  const url = new URLSearchParams(raw);
  url.append('signature', signWith(raw, secret));
  return url.toString();
}

export interface ApiResponse {
  readonly status: number;
  readonly body: { code: number; message: string; data: unknown };
  readonly text: string;
}

export async function get(app: FastifyInstance, path: string, query: string): Promise<ApiResponse> {
  const res = await app.inject({ method: 'GET', url: `${path}?${query}` });
  return { status: res.statusCode, body: JSON.parse(res.body) as ApiResponse['body'], text: res.body };
}

/** Every message row the transform's golden fixtures produce (every kind it writes). */
export function goldenMessages(): MessageRow[] {
  const base = join(ROOT, 'test', 'fixtures');
  const rows: MessageRow[] = [];
  for (const kind of readdirSync(base)) {
    for (const file of readdirSync(join(base, kind))) {
      if (!file.endsWith('.rows.json')) continue;
      const parsed = JSON.parse(readFileSync(join(base, kind, file), 'utf8')) as { messages?: MessageRow[] };
      rows.push(...(parsed.messages ?? []));
    }
  }
  return rows;
}

export const BASE = Date.UTC(2024, 0, 15, 2, 0, 0);

/** One conversation of `count` text messages, a second apart, ids ascending. */
export function conversation(count: number, overrides: Partial<MessageRow> = {}, start = BASE, firstId = 5_000_000_000_000_000_000n): MessageRow[] {
  return Array.from({ length: count }, (_, i) =>
    message({
      tenant: 'corp123',
      staff_id: 'staff123',
      session_id: 'sess_abc123',
      peer_id: 'customer456',
      from_id: i % 2 === 0 ? 'customer456' : 'staff123',
      tolist: [i % 2 === 0 ? 'staff123' : 'customer456'],
      is_sender: i % 2 === 0 ? 0 : 1,
      msgid: String(firstId + BigInt(i)),
      msg_time: start + i * 1000,
      seq: String(1000 + i),
      content_text: `消息${i}`,
      content: JSON.stringify({ content: `消息${i}` }),
      ...overrides,
    }),
  );
}
