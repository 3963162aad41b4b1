/**
 * Test helpers for the sink: a migrated chDB store in a fresh temp directory (one per test; libchdb
 * binds one directory per process, so each store must be closed before the next opens), row
 * builders, a realistic message generator and a store wrapper that injects failures.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pino, type Logger } from 'pino';

import { MsgpipeError } from '../../../src/core/errors.ts';
import type { DeadLetterRow, EventRow, MessageRow, RecallMark } from '../../../src/core/types.ts';
import { openStore, type CallOptions, type InsertOptions, type QueryParams, type Store } from '../../../src/sink/clickhouse.ts';
import { migrate } from '../../../src/sink/migrate.ts';

export const silent: Logger = pino({ level: 'silent' });

/** A store on a fresh temp directory; `dispose` closes it and removes the directory. */
export interface TempStore {
  readonly store: Store;
  readonly dir: string;
  dispose(): Promise<void>;
}

export async function openTempStore(options: { migrate?: boolean; database?: string } = {}): Promise<TempStore> {
  const dir = await mkdtemp(join(tmpdir(), 'msgpipe-sink-'));
  const store = await openStore({ path: dir, database: options.database ?? 'msgpipe' }, silent);
  if (options.migrate ?? true) await migrate(store, silent);
  return {
    store,
    dir,
    dispose: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The merge bound `messages` carries in its definition, or undefined. */
export async function mergeBound(store: Store): Promise<number | undefined> {
  const [row] = await store.query<{ definition: string }>(
    "SELECT create_table_query AS definition FROM system.tables WHERE database = currentDatabase() AND name = 'messages'",
  );
  const found = /max_bytes_to_merge_at_max_space_in_pool = (\d+)/.exec(row?.definition ?? '');
  return found === null ? undefined : Number(found[1]);
}

const BASE_TIME = Date.UTC(2024, 10, 8, 9, 48, 32);

export function message(overrides: Partial<MessageRow> = {}): MessageRow {
  return {
    tenant: 'corp123',
    source: 'shop-a',
    source_type: 'gewe',
    staff_id: 'staff-a',
    msgid: '3876235366388279544',
    legacy_msgid: '-12345',
    session_id: 'sess-1',
    session_type: 'external',
    room_id: '',
    action: 'send',
    from_id: 'wxid_peer1',
    tolist: ['staff-a'],
    peer_id: 'wxid_peer1',
    is_sender: 0,
    msg_time: BASE_TIME,
    seq: '18446744073709551615',
    msg_seq: 7,
    msg_type: 'text',
    wx_msg_type: 1,
    app_type: 0,
    sys_type: '',
    content_text: '您好，有什么可以帮助您的吗？',
    content: '{"content":"您好，有什么可以帮助您的吗？"}',
    raw_content: '您好，有什么可以帮助您的吗？',
    msg_source: '<msgsource><signature>v1_abc</signature></msgsource>',
    at_user_list: [],
    pre_msgid: '',
    sync_key_type: 3,
    item_type: 0,
    sub_type: 0,
    status: 3,
    img_status: 1,
    extinfo: '',
    peer_name: '张三',
    peer_avatar: 'https://example.com/a.jpg',
    ingested_at: BASE_TIME + 5_000,
    ...overrides,
  };
}

export function event(overrides: Partial<EventRow> = {}): EventRow {
  return {
    tenant: 'corp123',
    source: 'shop-a',
    source_type: 'gewe',
    staff_id: 'staff-a',
    event_id: '1767797523284146072',
    event_type: 'functionmsg',
    event_time: BASE_TIME,
    session_id: 'sess-1',
    payload: '{"cgi":"/cgi-bin/micromsg-bin/x"}',
    raw: '<sysmsg type="functionmsg"/>',
    ingested_at: BASE_TIME + 5_000,
    ...overrides,
  };
}

export function deadLetter(bytes: Uint8Array, overrides: Partial<DeadLetterRow> = {}): DeadLetterRow {
  return {
    tenant: 'corp123',
    source: 'shop-a',
    source_type: 'gewe',
    stage: 'transform',
    error_code: 'MSGPIPE_ERR_XML',
    error_message: 'Message XML is malformed.',
    original_base64: Buffer.from(bytes).toString('base64'),
    origin_key: 'shop-a:keybuff1#0',
    occurred_at: BASE_TIME + 6_000,
    ...overrides,
  };
}

export function recall(target: MessageRow, recallTime: number): RecallMark {
  return {
    tenant: target.tenant,
    staff_id: target.staff_id,
    session_id: target.session_id,
    target_msgid: target.msgid,
    recall_time: recallTime,
  };
}

/** Deterministic PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const PHRASES = [
  '您好，请问这款产品还有货吗？',
  '这是我们最新的产品介绍，请您查看',
  '好的，谢谢',
  '今天天气很好，我们下午发货',
  '请把地址发给我一下',
  '价格可以再优惠一点吗',
  '收到，马上处理',
  '视频号直播什么时候开始？',
];

/**
 * `count` realistic messages: 200 sessions of one staff, ~80 % text, ~15 % image (XML payload),
 * a few links; times one second apart from `start`, 19-digit msgids from `firstId`.
 */
export function realisticMessages(count: number, options: { seed?: number; start?: number; firstId?: bigint } = {}): MessageRow[] {
  const random = prng(options.seed ?? 1);
  const start = options.start ?? BASE_TIME;
  const firstId = options.firstId ?? 3_876_235_366_388_000_000n;
  const rows: MessageRow[] = [];
  for (let i = 0; i < count; i++) {
    const session = Math.floor(random() * 200);
    const peer = `wxid_peer${session.toString().padStart(4, '0')}`;
    const isSender = random() < 0.4 ? 1 : 0;
    const kind = random();
    const text = PHRASES[Math.floor(random() * PHRASES.length)] ?? '';
    let msgType: MessageRow['msg_type'] = 'text';
    let raw = text;
    let content = JSON.stringify({ content: text });
    let contentText = text;
    let wxType = 1;
    if (kind > 0.97) {
      msgType = 'link';
      wxType = 49;
      contentText = `产品链接 ${text}`;
      raw = `<msg><appmsg appid="" sdkver="0"><title>产品链接</title><des>${text}</des><type>5</type><url>https://example.com/p/${i}</url></appmsg></msg>`;
      content = JSON.stringify({ title: '产品链接', description: text, link_url: `https://example.com/p/${i}` });
    } else if (kind > 0.82) {
      msgType = 'image';
      wxType = 3;
      contentText = '';
      raw = `<?xml version="1.0"?><msg><img aeskey="${'a'.repeat(32)}" encryver="1" cdnthumbaeskey="${'b'.repeat(32)}" cdnthumburl="3057020100044b30490201000204${'c'.repeat(120)}" cdnthumblength="4567" cdnthumbheight="120" cdnthumbwidth="90" cdnmidheight="0" cdnmidwidth="0" cdnhdheight="0" cdnhdwidth="0" cdnmidimgurl="3057020100044b30490201000204${'d'.repeat(120)}" length="123456" md5="${'e'.repeat(32)}" /></msg>`;
      content = JSON.stringify({ md5sum: 'e'.repeat(32), filesize: 123456, aeskey: 'a'.repeat(32) });
    }
    rows.push(
      message({
        msgid: String(firstId + BigInt(i)),
        legacy_msgid: String(Math.floor(random() * 2 ** 31)),
        session_id: `sess-${session}`,
        peer_id: peer,
        from_id: isSender === 1 ? 'staff-a' : peer,
        tolist: [isSender === 1 ? peer : 'staff-a'],
        is_sender: isSender,
        msg_time: start + i * 1000,
        seq: String(100_000 + i),
        msg_seq: i,
        msg_type: msgType,
        wx_msg_type: wxType,
        content_text: contentText,
        content,
        raw_content: raw,
        peer_name: `客户${session}`,
        ingested_at: start + i * 1000 + 3000,
      }),
    );
  }
  return rows;
}

/** What a {@link FaultyStore} should do to matching inserts. */
export interface InsertFault {
  readonly table: string;
  /** How many matching inserts fail before they pass again (Infinity = always). */
  times: number;
  readonly retriable: boolean;
  /** Store the rows, then fail anyway (the answer was lost). */
  readonly afterWrite?: boolean;
}

/** Wraps a store; inserts into a faulted table fail as configured. */
export class FaultyStore implements Store {
  readonly backend: Store['backend'];
  readonly database: string;
  readonly faults: InsertFault[] = [];
  readonly inserts: { table: string; rows: number; token: string | undefined }[] = [];
  /** How many duplicate lookups on `messages` see an empty table (a replica lagging behind). */
  hideLookups = 0;
  /** When set, every insert waits for it first. */
  gate: Promise<void> | undefined;
  private readonly inner: Store;

  constructor(inner: Store) {
    this.inner = inner;
    this.backend = inner.backend;
    this.database = inner.database;
  }

  async query<T>(sql: string, params?: QueryParams, options?: CallOptions): Promise<T[]> {
    if (this.hideLookups > 0 && /FROM messages\s+WHERE/.test(sql) && /(?<!pre_)msgid IN \{?ids\b/.test(sql)) {
      this.hideLookups -= 1;
      return [];
    }
    return this.inner.query<T>(sql, params, options);
  }

  command(sql: string, params?: QueryParams, options?: CallOptions): Promise<void> {
    return this.inner.command(sql, params, options);
  }

  async insert(table: string, rows: readonly object[], options?: InsertOptions): Promise<void> {
    if (this.gate !== undefined) await this.gate;
    const fault = this.faults.find((f) => f.table === table && f.times > 0);
    if (fault !== undefined && rows.length > 0) {
      fault.times -= 1;
      if (fault.afterWrite === true) await this.inner.insert(table, rows, options);
      throw new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', `injected failure on ${table}`, { retriable: fault.retriable });
    }
    this.inserts.push({ table, rows: rows.length, token: options?.dedupToken });
    await this.inner.insert(table, rows, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
