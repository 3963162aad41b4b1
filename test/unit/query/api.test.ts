/**
 * The query API end to end over real chDB (rows stored by the real SinkWriter) and real fastify
 * request handling: the seed's requests and shapes, every message kind, parameter codes,
 * tenant isolation, injection strings, dates in the configured zone, sync, rate limit, logs.
 */
import { connect } from 'node:net';
import { Writable } from 'node:stream';

import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { MSG_TYPES, type MessageRow } from '../../../src/core/types.ts';
import { buildQueryApp, READ_TIME_LIMIT_S } from '../../../src/query/app.ts';
import { searchSchema, sessionMsgsSchema, sessionsSchema } from '../../../src/query/params.ts';
import { type CallOptions, type QueryParams, type Store, toStoreError } from '../../../src/sink/clickhouse.ts';
import { message } from '../sink/helpers.ts';
import {
  BASE,
  conversation,
  type Fixture,
  get,
  goldenMessages,
  openFixture,
  SECRET_A,
  SECRET_B,
  signedQuery,
  testConfig,
} from './helpers.ts';

const SESSIONS = '/api/v1/chat-msg/sessions';
const MSGS = '/api/v1/chat-msg/session-msgs';
const SEARCH = '/api/v1/chat-msg/search';
const SYNC = '/api/v1/chat-msg/sync';

interface Page {
  items: Record<string, unknown>[];
  total: number;
}

// corp123/staff123 ↔ customer456: every kind the transform writes, plus seed-like texts.
const golden = goldenMessages().map((row, i) =>
  message({
    ...row,
    tenant: 'corp123',
    staff_id: 'staff123',
    session_id: 'sess_abc123',
    session_type: 'external',
    peer_id: 'customer456',
    peer_name: '张三',
    peer_avatar: 'https://example.com/avatar.jpg',
    from_id: row.is_sender === 1 ? 'staff123' : 'customer456',
    tolist: [row.is_sender === 1 ? 'customer456' : 'staff123'],
    msgid: String(7_000_000_000_000_000_000n + BigInt(i)),
    msg_time: BASE + i * 60_000,
  }),
);
const seedLike: MessageRow[] = [
  message({
    tenant: 'corp123', staff_id: 'staff123', session_id: 'sess_abc123', peer_id: 'customer456', peer_name: '张三',
    from_id: 'staff123', tolist: ['customer456'], is_sender: 1, msgid: '7100000000000000001', msg_time: BASE + 10_000_000,
    content_text: '这是我们最新的产品介绍，请您查看', content: '{"content":"这是我们最新的产品介绍，请您查看"}',
    seq: '18446744073709551615',
  }),
];
// The same staff and peer ids under another tenant, with a secret word.
const otherTenant = conversation(5, { tenant: 'corp999', content_text: '机密产品介绍', content: '{"content":"机密产品介绍"}', peer_name: '李四' });
// corp123/staff123: a second external peer and a group.
const others: MessageRow[] = [
  ...conversation(3, { peer_id: 'customer789', session_id: 'sess_789', peer_name: '王五', content_text: '王五的产品介绍' }, BASE, 6_000_000_000_000_000_000n),
  ...conversation(2, { peer_id: 'room1', session_id: 'room1', session_type: 'group', room_id: 'room1', peer_name: '销售群' }, BASE, 6_100_000_000_000_000_000n),
];

// corp123/staff_seq ↔ customer_seq: seqs of 1 to 3 digits, in another order than their times.
const seqOrder: MessageRow[] = ['100', '9', '10', '2'].map((seq, i) =>
  message({
    tenant: 'corp123', staff_id: 'staff_seq', session_id: 'sess_seq', peer_id: 'customer_seq', from_id: 'customer_seq',
    tolist: ['staff_seq'], msgid: String(6_200_000_000_000_000_000n + BigInt(i)), msg_time: BASE + i * 1000, seq,
  }),
);

let fx: Fixture;
beforeAll(async () => {
  fx = await openFixture([...golden, ...seedLike, ...otherTenant, ...others, ...seqOrder]);
});
afterAll(async () => {
  await fx.dispose();
});

const A = { ext_corp_id: 'corp123', ext_staff_id: 'staff123' };

/**
 * `real` with every read held until `open()`: `reads.entered` counts the reads the app sent,
 * `reads.passed` those let through the gate to the store.
 */
function gatedStore(real: Store): { store: Store; open: () => void; reads: { entered: number; passed: number } } {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => { open = resolve; });
  const reads = { entered: 0, passed: 0 };
  const store: Store = {
    backend: real.backend,
    database: real.database,
    query: async <T>(sql: string, params?: QueryParams, options?: CallOptions) => {
      reads.entered += 1;
      await gate;
      reads.passed += 1;
      return real.query<T>(sql, params, options);
    },
    command: (sql, params) => real.command(sql, params),
    insert: (table, rows, options) => real.insert(table, rows, options),
    close: () => Promise.resolve(),
  };
  return { store, open, reads };
}

describe('the seed requests', () => {
  it('lists sessions with the seed shape, newest first, paged', async () => {
    const res = await get(fx.app, SESSIONS, signedQuery({ ...A, session_type: 'external', page: 1, page_size: 20 }, SECRET_A));
    expect(res.status).toBe(200);
    expect(res.body.code).toBe(0);
    const data = res.body.data as Page & { page: number; page_size: number };
    expect(data).toMatchObject({ total: 2, page: 1, page_size: 20 });
    const [first, second] = data.items;
    expect(Object.keys(first!)).toEqual(expect.arrayContaining([
      'id', 'ext_corp_id', 'msgid', 'action', 'from', 'tolist', 'room_id', 'msg_time', 'msg_type', 'content_text', 'seq',
      'session_id', 'session_type', 'peer_avatar', 'peer_name', 'peer_ext_id', 'peer_type', 'group_chat_name',
    ]));
    expect(first).toMatchObject({
      id: '7100000000000000001', msgid: '7100000000000000001', ext_corp_id: 'corp123', session_id: 'sess_abc123',
      session_type: 'external', peer_name: '张三', peer_ext_id: 'customer456', peer_type: '1', from: 'staff123',
      tolist: ['customer456'], msg_time: BASE + 10_000_000, content_text: '这是我们最新的产品介绍，请您查看',
    });
    // The seq above 2^53 goes out with its exact digits.
    expect(res.text).toContain('"seq":18446744073709551615');
    expect(second).toMatchObject({ session_id: 'sess_789', peer_name: '王五' });
  });

  it('lists messages of a conversation with the seed shape and every kind rendered', async () => {
    const res = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer456', page: 1, page_size: 100 }, SECRET_A));
    expect(res.body.code).toBe(0);
    const data = res.body.data as Page;
    expect(data.total).toBe(golden.length + seedLike.length);
    expect(data.items).toHaveLength(golden.length + seedLike.length);
    const kinds = new Set(data.items.map((m) => m['msg_type']));
    // Every kind the transform produces is stored and renders (msg-server answered 500 for most).
    for (const kind of MSG_TYPES) expect(kinds, kind).toContain(kind);
    for (const item of data.items) {
      expect(Object.keys(item)).toEqual(expect.arrayContaining([
        'id', 'ext_corp_id', 'msgid', 'action', 'from', 'tolist', 'room_id', 'msg_time', 'msg_type', 'content_text', 'seq',
        'session_id', 'session_type', 'sender_name', 'sender_avatar', 'chat_msg_content', 'attachments',
      ]));
      expect(item['chat_msg_content']).toMatchObject({ id: item['id'], chat_msg_id: item['id'], content_type: item['msg_type'] });
    }
    // Newest first by default.
    const times = data.items.map((m) => m['msg_time'] as number);
    expect(times).toEqual([...times].sort((a, b) => b - a));
  });

  it('renders attachments with the seed keys per kind', async () => {
    const res = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer456', page_size: 100 }, SECRET_A));
    const items = (res.body.data as Page).items;
    const byKind = (kind: string): Record<string, unknown> => items.find((m) => m['msg_type'] === kind)!;
    const seedKeys: Record<string, string[]> = {
      image: ['md5sum', 'sdkfileid', 'filesize'],
      file: ['md5sum', 'filename', 'fileext', 'filesize'],
      voice: ['md5sum', 'voice_size', 'play_length', 'sdkfileid'],
      card: ['corpname', 'userid'],
      location: ['longitude', 'latitude', 'address', 'title', 'zoom'],
      emotion: ['type', 'width', 'height', 'imagesize', 'md5sum', 'sdkfileid'],
      link: ['title', 'description', 'link_url', 'image_url'],
      revoke: ['pre_msgid'],
    };
    for (const [kind, keys] of Object.entries(seedKeys)) {
      const attachments = byKind(kind)['attachments'] as Record<string, unknown>;
      expect(Object.keys(attachments).slice(0, keys.length), kind).toEqual(keys);
    }
    expect(byKind('text')['attachments']).toBeNull();
    expect((byKind('file')['chat_msg_content'] as Record<string, unknown>)['file_name']).toBe('报价单-2024Q3.xlsx');
    expect((byKind('location')['attachments'] as Record<string, unknown>)['title']).toBe('人民广场');
    expect((byKind('revoke')['attachments'] as Record<string, unknown>)['pre_msgid']).toBe('8412057736190466213');
    expect(byKind('card')['attachments']).toMatchObject({ userid: expect.stringMatching(/@stranger$/) as unknown });
    // Kinds outside the seed's table carry their payload as is.
    expect(byKind('video')['attachments']).toMatchObject({ play_length: 17 });
  });

  it('searches a conversation with the seed shape', async () => {
    const res = await get(fx.app, SEARCH, signedQuery({ keyword: '产品介绍', ...A, ext_peer_id: 'customer456', page: 1, page_size: 20 }, SECRET_A));
    expect(res.body.code).toBe(0);
    const data = res.body.data as Page;
    expect(data.total).toBe(1);
    expect(data.items[0]).toMatchObject({ msgid: '7100000000000000001', content_text: '这是我们最新的产品介绍，请您查看', sender_name: '' });
  });

  it('triggers a sync at once', async () => {
    const body = { ext_corp_id: 'corp123' };
    const res = await fx.app.inject({ method: 'POST', url: SYNC, payload: { ...body, signature: signedQuery(body, SECRET_A).split('signature=')[1] } });
    expect(JSON.parse(res.body)).toEqual({ code: 0, message: '同步任务已启动', data: null });
    expect(fx.syncs).toEqual(['corp123']);
    const forged = await fx.app.inject({ method: 'POST', url: SYNC, payload: { ext_corp_id: 'corp123', signature: 'a'.repeat(64) } });
    expect(forged.statusCode).toBe(401);
    expect(fx.syncs).toEqual(['corp123']);
  });

  it('refuses a sync posted with the parameters and signature of a read', async () => {
    const read = { ...A, session_type: 'external', page: 1, page_size: 20 };
    const captured = Object.fromEntries(new URLSearchParams(signedQuery(read, SECRET_A)));
    // The signature is good for those parameters: the read itself passes.
    expect((await get(fx.app, SESSIONS, signedQuery(read, SECRET_A))).body.code).toBe(0);
    const before = fx.syncs.length;
    const res = await fx.app.inject({ method: 'POST', url: SYNC, payload: captured });
    expect(res.statusCode).toBe(400);
    expect(JSON.parse(res.body)).toMatchObject({ code: 400, message: 'invalid request parameters' });
    expect(fx.syncs).toHaveLength(before);
  });
});

describe('parameter codes', () => {
  const cases: [string, string, Record<string, string | number>, number][] = [
    ['page_size 101', SESSIONS, { ...A, session_type: 'external', page_size: 101 }, 1006],
    ['page not a number', SEARCH, { ...A, ext_peer_id: 'customer456', keyword: '产品', page: 'abc' }, 1006],
    ['page_size not a number', MSGS, { ...A, receiver_id: 'customer456', page_size: '1e2' }, 1006],
    ['negative page', SESSIONS, { ...A, session_type: 'external', page: -1 }, 1006],
    ['unknown session type', SESSIONS, { ...A, session_type: 'room' }, 1003],
    ['missing session type', SESSIONS, { ...A }, 1003],
    ['unknown msg_type', MSGS, { ...A, receiver_id: 'customer456', msg_type: 'sticker' }, 1004],
    ['bad date', MSGS, { ...A, receiver_id: 'customer456', send_at_start: '2024-13-01' }, 1005],
    ['impossible date', MSGS, { ...A, receiver_id: 'customer456', send_at_end: '2024-02-30' }, 1005],
    ['datetime instead of date', MSGS, { ...A, receiver_id: 'customer456', send_at_start: '2024-01-01 00:00:00' }, 1005],
    ['start after end', MSGS, { ...A, receiver_id: 'customer456', send_at_start: '2024-02-01', send_at_end: '2024-01-01' }, 1005],
    ['missing staff', SESSIONS, { ext_corp_id: 'corp123', session_type: 'external' }, 1002],
    ['missing receiver', MSGS, { ...A }, 400],
    ['missing keyword', SEARCH, { ...A, ext_peer_id: 'customer456' }, 400],
    ['keyword of 101 characters', SEARCH, { ...A, ext_peer_id: 'customer456', keyword: '产'.repeat(101) }, 400],
    ['sort_field outside the whitelist', MSGS, { ...A, receiver_id: 'customer456', sort_field: 'content' }, 400],
    ['bad sort_type', MSGS, { ...A, receiver_id: 'customer456', sort_type: 'sideways' }, 400],
    ['unknown max_id', MSGS, { ...A, receiver_id: 'customer456', max_id: '123' }, 404],
    ['max_id of another conversation', MSGS, { ...A, receiver_id: 'customer456', max_id: '6000000000000000000' }, 404],
  ];
  it.each(cases)('%s', async (_name, path, params, code) => {
    const res = await get(fx.app, path, signedQuery(params, SECRET_A));
    expect(res.body.code).toBe(code);
    expect(res.body.data).toBeNull();
    expect(res.status).toBe(code >= 1000 ? 400 : code);
  });

  // msg-server's own client sends page=0 and page_size=0 for "not given"; msg-server used its defaults.
  it('reads page=0 and page_size=0 as the defaults (1 and 20)', async () => {
    for (const [path, params] of [
      [SESSIONS, { ...A, session_type: 'external', page: 0, page_size: 0 }],
      [MSGS, { ...A, receiver_id: 'customer456', page: '00', page_size: '' }],
      [SEARCH, { ...A, ext_peer_id: 'customer456', keyword: '产品', page: 0, page_size: 0 }],
    ] as const) {
      const res = await get(fx.app, path, signedQuery(params, SECRET_A));
      expect(res.body.code, path).toBe(0);
      const data = res.body.data as Page & { page?: number; page_size?: number };
      if (path === MSGS) expect(data.items).toHaveLength(20); // the conversation holds more than 20
      else if (path === SESSIONS) expect(data).toMatchObject({ page: 1, page_size: 20 });
      else expect(data.total).toBe(1);
    }
  });

  // zod counts code points, as docs/query-api.md's "1–100 characters" means.
  it('takes a keyword of 100 characters outside the BMP (200 UTF-16 units)', async () => {
    const res = await get(fx.app, SEARCH, signedQuery({ ...A, ext_peer_id: 'customer456', keyword: '😀'.repeat(100) }, SECRET_A));
    expect(res.body.code).toBe(0);
    expect(res.body.data).toMatchObject({ total: 0 });
  });

  it('answers a path it cannot decode and raw UTF-8 in the URL with the envelope too', async () => {
    const app = buildQueryApp({ store: fx.temp.store, config: testConfig(), log: pino({ level: 'silent' }), sync: { trigger: () => 0 } });
    try {
      await app.listen({ host: '127.0.0.1', port: 0 });
      const { port } = app.server.address() as { port: number };
      const badPath = await fetch(`http://127.0.0.1:${String(port)}${SESSIONS}%?ext_corp_id=corp123`);
      expect(badPath.status).toBe(400);
      expect(await badPath.json()).toEqual({ code: 400, message: 'invalid request parameters', data: null });
      // curl sends `?keyword=产品介绍` as it is typed; Node's parser refuses it before fastify.
      const raw = await new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => {
          socket.end(Buffer.from(`GET ${SEARCH}?ext_corp_id=corp123&keyword=产品介绍 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 'utf8'));
        });
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        socket.on('end', () => { resolve(Buffer.concat(chunks).toString('utf8')); });
        socket.on('error', reject);
      });
      expect(raw).toMatch(/^HTTP\/1\.1 400 /);
      expect(JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4))).toEqual({ code: 400, message: 'invalid request parameters', data: null });
    } finally {
      await app.close();
    }
  });

  it('answers unknown paths and a missing corp with envelopes', async () => {
    expect((await get(fx.app, '/api/v1/chat-msg/nothing', 'a=1')).body).toMatchObject({ code: 404, data: null });
    expect((await get(fx.app, SESSIONS, 'ext_staff_id=staff123&session_type=external')).body.code).toBe(1001);
  });

  it('refuses a repeated parameter', async () => {
    const q = `${signedQuery({ ...A, session_type: 'external' }, SECRET_A)}&session_type=group`;
    expect((await get(fx.app, SESSIONS, q)).body.code).toBe(400);
  });
});

describe('signatures', () => {
  const params = { ...A, session_type: 'external', page: 1, page_size: 20 };

  it('refuses a missing, empty, malformed or foreign signature with 401 and no data', async () => {
    const unsigned = new URLSearchParams({ ...params, page: '1', page_size: '20' }).toString();
    const bad = [
      unsigned,
      `${unsigned}&signature=`,
      `${unsigned}&signature=xyz`,
      signedQuery(params, SECRET_B),
      signedQuery(params, ''),
      signedQuery({ ...params, ext_corp_id: 'corp999' }, SECRET_A),
      signedQuery({ ...params, ext_corp_id: 'nobody' }, SECRET_A),
    ];
    for (const q of bad) {
      const res = await get(fx.app, SESSIONS, q);
      expect(res.status, q).toBe(401);
      expect(res.body).toEqual({ code: 401, message: 'signature verification failed', data: null });
    }
  });

  it('refuses a request with any one byte changed after signing', async () => {
    const signed = signedQuery({ ...A, receiver_id: 'customer456', msg_type: 'text', page: 1, page_size: 20 }, SECRET_A);
    const [query, signature] = signed.split('&signature=') as [string, string];
    const ok = await get(fx.app, MSGS, signed);
    expect(ok.body.code).toBe(0);
    const bytes = Buffer.from(decodeURIComponent(query));
    for (let i = 0; i < bytes.length; i++) {
      const changed = Buffer.from(bytes);
      changed[i] = changed[i]! ^ 0x01;
      const text = changed.toString('latin1');
      if (!text.includes('=') || text.split('&').some((kv) => !kv.includes('='))) continue;
      const res = await get(fx.app, MSGS, `${encodeURI(text)}&signature=${signature}`);
      expect(res.body.code, text).not.toBe(0);
      expect(res.body.data, text).toBeNull();
    }
    // And any changed signature byte.
    for (let i = 0; i < signature.length; i++) {
      const flipped = signature.slice(0, i) + (signature[i] === '0' ? '1' : '0') + signature.slice(i + 1);
      expect((await get(fx.app, MSGS, `${query}&signature=${flipped}`)).body.code).toBe(401);
    }
  });
});

describe('tenant isolation', () => {
  it("never returns another tenant's rows through any endpoint or parameter", async () => {
    const B = { ext_corp_id: 'corp999', ext_staff_id: 'staff123' };
    const requests: [string, Record<string, string | number>][] = [
      [SESSIONS, { ...B, session_type: 'external' }],
      [SESSIONS, { ...B, session_type: 'external', name: '张' }],
      [SESSIONS, { ...B, session_type: 'external', name: '李四' }],
      [MSGS, { ...B, receiver_id: 'customer456', page_size: 100 }],
      [MSGS, { ...B, receiver_id: 'customer789', page_size: 100 }],
      [SEARCH, { ...B, ext_peer_id: 'customer456', keyword: '产品介绍' }],
      [SEARCH, { ...B, ext_peer_id: 'customer456', keyword: '请您查看' }],
      [SEARCH, { ...B, ext_peer_id: 'customer789', keyword: '王五' }],
    ];
    for (const [path, p] of requests) {
      const res = await get(fx.app, path, signedQuery(p, SECRET_B));
      expect(res.body.code, path).toBe(0);
      for (const item of (res.body.data as Page).items) expect(item['ext_corp_id']).toBe('corp999');
      expect(res.text).not.toContain('请您查看');
      expect(res.text).not.toContain('王五');
      expect(res.text).not.toContain('张三');
    }
    // And tenant A does not see B's secret word, whatever it asks.
    for (const keyword of ['机密', '机密产品介绍']) {
      const res = await get(fx.app, SEARCH, signedQuery({ ...A, ext_peer_id: 'customer456', keyword }, SECRET_A));
      expect((res.body.data as Page).total).toBe(0);
    }
    const sessions = await get(fx.app, SESSIONS, signedQuery({ ...A, session_type: 'external', name: '李四' }, SECRET_A));
    expect((sessions.body.data as Page).total).toBe(0);
    // An anchor id of B's conversation is not found from A.
    const anchor = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer456', max_id: otherTenant[0]!.msgid }, SECRET_A));
    expect(anchor.body.code).toBe(404);
  });

  it('keeps group traffic out of a 1:1 conversation', async () => {
    const res = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer789' }, SECRET_A));
    const items = (res.body.data as Page).items;
    expect(items.map((m) => m['session_id'])).toEqual(['sess_789', 'sess_789', 'sess_789']);
  });
});

describe('hostile parameters', () => {
  const hostile = [
    "' OR 1=1 --",
    "corp123' OR tenant != '",
    '"; DROP TABLE messages; --',
    "\\' UNION SELECT * FROM system.tables --",
    '{tenant:String}',
    '%\' AND 1=1',
    '\u0000',
    '产品介绍\') OR (1=1',
  ];
  it('treats SQL in every parameter as data', async () => {
    for (const s of hostile) {
      const requests: [string, Record<string, string>, Record<string, string>][] = [
        [SESSIONS, { session_type: 'external' }, { ext_staff_id: s }],
        [SESSIONS, { session_type: 'external' }, { name: s }],
        [MSGS, { receiver_id: 'customer456' }, { receiver_id: s }],
        [MSGS, { receiver_id: 'customer456' }, { ext_staff_id: s }],
        [MSGS, { receiver_id: 'customer456' }, { max_id: s }],
        [MSGS, { receiver_id: 'customer456' }, { min_id: s }],
        [MSGS, { receiver_id: 'customer456' }, { sort_field: s }],
        [MSGS, { receiver_id: 'customer456' }, { sort_type: s }],
        [MSGS, { receiver_id: 'customer456' }, { msg_type: s }],
        [MSGS, { receiver_id: 'customer456' }, { send_at_start: s }],
        [SEARCH, { ext_peer_id: 'customer456', keyword: '产品' }, { keyword: s }],
        [SEARCH, { ext_peer_id: 'customer456', keyword: '产品' }, { ext_peer_id: s }],
      ];
      for (const [path, base, change] of requests) {
        const res = await get(fx.app, path, signedQuery({ ...A, ...base, ...change }, SECRET_A));
        expect(res.status, `${path} ${JSON.stringify(change)}`).not.toBe(500);
        if (res.body.code === 0) expect((res.body.data as Page).total, `${path} ${JSON.stringify(change)}`).toBe(0);
      }
      // A hostile corp id is just an unknown tenant.
      expect((await get(fx.app, SESSIONS, signedQuery({ ...A, ext_corp_id: s, session_type: 'external' }, SECRET_A))).status).toBe(401);
    }
    // Still all there.
    const after = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer456' }, SECRET_A));
    expect((after.body.data as Page).total).toBe(golden.length + seedLike.length);
  });
});

describe('filters and order', () => {
  it('filters by msg_type and sorts by seq ascending', async () => {
    const res = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer789', msg_type: 'text', sort_field: 'seq', sort_type: 'asc' }, SECRET_A));
    const items = (res.body.data as Page).items;
    expect(items.map((m) => m['seq'])).toEqual([1000, 1001, 1002]);
    const none = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer789', msg_type: 'image' }, SECRET_A));
    expect((none.body.data as Page).total).toBe(0);
  });

  it('sorts by seq as a number, not as its text', async () => {
    const order = async (sortType: string): Promise<unknown[]> => {
      const res = await get(fx.app, MSGS, signedQuery({ ext_corp_id: 'corp123', ext_staff_id: 'staff_seq', receiver_id: 'customer_seq', sort_field: 'seq', sort_type: sortType }, SECRET_A));
      return (res.body.data as Page).items.map((m) => m['seq']);
    };
    expect(await order('asc')).toEqual([2, 9, 10, 100]);
    expect(await order('desc')).toEqual([100, 10, 9, 2]);
    // msg-server took `DESC` and `Asc` as well (the value went into its ORDER BY).
    expect(await order('DESC')).toEqual([100, 10, 9, 2]);
    expect(await order('Asc')).toEqual([2, 9, 10, 100]);
  });

  it('reads dates as days in query.timezone with the end day included', async () => {
    // conversation 789 is at BASE = 2024-01-15 02:00 UTC = 10:00 in Shanghai.
    const day = async (start: string, end: string): Promise<number> => {
      const res = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer789', send_at_start: start, send_at_end: end }, SECRET_A));
      return (res.body.data as Page).total;
    };
    expect(await day('2024-01-15', '2024-01-15')).toBe(3);
    expect(await day('2024-01-14', '2024-01-14')).toBe(0);
    expect(await day('2024-01-16', '2024-01-20')).toBe(0);
    const onlyStart = await get(fx.app, MSGS, signedQuery({ ...A, receiver_id: 'customer789', send_at_start: '2024-01-15' }, SECRET_A));
    expect((onlyStart.body.data as Page).total).toBe(3);
  });

  it('filters sessions by type and by a substring of the peer name', async () => {
    const group = await get(fx.app, SESSIONS, signedQuery({ ...A, session_type: 'group' }, SECRET_A));
    expect((group.body.data as Page).items).toMatchObject([{ session_id: 'room1', group_chat_name: '销售群', peer_type: '' }]);
    const named = await get(fx.app, SESSIONS, signedQuery({ ...A, session_type: 'external', name: '五' }, SECRET_A));
    expect((named.body.data as Page).items.map((s) => s['peer_name'])).toEqual(['王五']);
    const paged = await get(fx.app, SESSIONS, signedQuery({ ...A, session_type: 'external', page: 2, page_size: 1 }, SECRET_A));
    expect(paged.body.data).toMatchObject({ total: 2, page: 2, page_size: 1, items: [{ session_id: 'sess_789' }] });
    const beyond = await get(fx.app, SESSIONS, signedQuery({ ...A, session_type: 'external', page: 9, page_size: 1 }, SECRET_A));
    expect(beyond.body.data).toMatchObject({ total: 2, items: [] });
  });
});

describe('openapi', () => {
  it('serves the OpenAPI document without a signature', async () => {
    const res = await fx.app.inject({ method: 'GET', url: '/openapi.json' });
    const doc = JSON.parse(res.body) as { openapi: string; paths: Record<string, unknown> };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual([SYNC, SESSIONS, MSGS, SEARCH]);
  });

  it('documents every parameter each read accepts', async () => {
    const res = await fx.app.inject({ method: 'GET', url: '/openapi.json' });
    const doc = JSON.parse(res.body) as { paths: Record<string, { get?: { parameters: { name: string }[] } }> };
    const documented = (path: string): string[] => (doc.paths[path]?.get?.parameters ?? []).map((p) => p.name).sort();
    for (const [path, schema] of [[SESSIONS, sessionsSchema], [MSGS, sessionMsgsSchema], [SEARCH, searchSchema]] as const) {
      expect(documented(path), path).toEqual(expect.arrayContaining(Object.keys(schema.shape)));
    }
  });
});

describe('internal errors, rate limits and logs', () => {
  it('answers 500 without SQL or stack, logs nothing secret, and limits each tenant', async () => {
    const lines: string[] = [];
    const sinkStream = new Writable({ write: (chunk: Buffer, _enc, cb) => { lines.push(chunk.toString()); cb(); } });
    const real = fx.temp.store;
    let broken = false;
    // The real store, failing on demand the way ClickHouse does: with the SQL in the message.
    const store: Store = {
      backend: real.backend,
      database: real.database,
      query: <T>(sql: string, params?: QueryParams) =>
        broken ? Promise.reject(toStoreError(new Error(`Code: 60. Unknown table: ${sql}`), 'query')) : real.query<T>(sql, params),
      command: (sql, params) => real.command(sql, params),
      insert: (table, rows, options) => real.insert(table, rows, options),
      close: () => Promise.resolve(),
    };
    const app = buildQueryApp({
      store,
      config: testConfig({ rateLimit: 5 }),
      log: pino({ level: 'debug' }, sinkStream),
      sync: { trigger: () => 0 },
    });
    try {
      // The rate limiter's window follows Date.now(): frozen, all eight requests fall in one
      // window however slowly a loaded machine answers (timers stay real).
      vi.useFakeTimers({ toFake: ['Date'] });
      const q = signedQuery({ ...A, receiver_id: 'customer456' }, SECRET_A);
      const signature = q.split('signature=')[1]!;
      const codes: number[] = [];
      for (let i = 0; i < 8; i++) codes.push((await get(app, MSGS, q)).body.code);
      expect(codes.slice(0, 5)).toEqual([0, 0, 0, 0, 0]);
      expect(codes.slice(5)).toEqual([429, 429, 429]);
      const limited = await get(app, MSGS, q);
      expect(limited.status).toBe(429);
      expect(limited.body).toEqual({ code: 429, message: 'too many requests', data: null });
      // Another tenant has its own budget.
      const other = signedQuery({ ext_corp_id: 'corp999', ext_staff_id: 'x', session_type: 'group' }, SECRET_B);
      expect((await get(app, SESSIONS, other)).body.code).toBe(0);
      broken = true;
      const failed = await get(app, SESSIONS, other);
      expect(failed.status).toBe(500);
      expect(failed.body).toEqual({ code: 500, message: 'internal server error', data: null });
      expect(failed.text).not.toContain('SELECT');
      const log = lines.join('');
      expect(log).toContain('Query failed.');
      expect(log).not.toContain(signature);
      expect(log).not.toContain(other.split('signature=')[1]!);
      expect(log).not.toContain(SECRET_A);
      expect(log).not.toContain(SECRET_B);
    } finally {
      vi.useRealTimers();
      await app.close();
    }
  });

  it('on a serial store, reads one at a time within a time limit, and refuses more than the queue holds', async () => {
    const real = fx.temp.store;
    let running = 0;
    let most = 0;
    const limits: (number | undefined)[] = [];
    let gate: Promise<void> = Promise.resolve();
    // The real store, held by a gate: what the app sends, and how many reads it has in flight.
    const store: Store = {
      backend: real.backend,
      database: real.database,
      query: async <T>(sql: string, params?: QueryParams, options?: CallOptions) => {
        running += 1;
        most = Math.max(most, running);
        limits.push(options?.settings?.max_execution_time);
        try {
          await gate;
          return await real.query<T>(sql, params, options);
        } finally {
          running -= 1;
        }
      },
      command: (sql, params) => real.command(sql, params),
      insert: (table, rows, options) => real.insert(table, rows, options),
      close: () => Promise.resolve(),
    };
    const app = buildQueryApp({ store, config: testConfig(), log: pino({ level: 'silent' }), sync: { trigger: () => 0 }, serialStore: true, maxWaitingReads: 2 });
    try {
      let open!: () => void;
      gate = new Promise((resolve) => { open = resolve; });
      const q = signedQuery({ ...A, receiver_id: 'customer456' }, SECRET_A);
      const first = [get(app, MSGS, q), get(app, MSGS, q), get(app, MSGS, q)];
      await vi.waitFor(() => { expect(running).toBe(1); });
      await new Promise((resolve) => setTimeout(resolve, 50));
      // The first read of one request runs, those of the two others wait: the queue is full, and
      // the next request is turned away at once.
      const refused = await get(app, MSGS, q);
      expect(refused.status).toBe(429);
      expect(refused.body).toEqual({ code: 429, message: 'too many requests waiting for the store; try again shortly', data: null });
      open();
      expect((await Promise.all(first)).map((r) => r.body.code)).toEqual([0, 0, 0]);
      expect(most).toBe(1);
      expect(new Set(limits)).toEqual(new Set([READ_TIME_LIMIT_S]));
      expect((await get(app, MSGS, q)).body.code).toBe(0);
    } finally {
      await app.close();
    }
  });

  it('on a serial store, turns a request away at its first read only, so no read runs for a request refused', async () => {
    const { store, open, reads } = gatedStore(fx.temp.store);
    const app = buildQueryApp({ store, config: testConfig(), log: pino({ level: 'silent' }), sync: { trigger: () => 0 }, serialStore: true, maxWaitingReads: 2 });
    try {
      // Each session list reads its page and its count together: two reads per request.
      const q = signedQuery({ ...A, session_type: 'external' }, SECRET_A);
      const requests = Array.from({ length: 6 }, () => get(app, SESSIONS, q));
      await new Promise((resolve) => setTimeout(resolve, 100));
      open();
      const codes = (await Promise.all(requests)).map((r) => r.body.code);
      expect(codes).toContain(429);
      expect(codes).toContain(0);
      // Every read that ran served a request answered: none was left queued by one refused.
      expect(reads.passed).toBe(2 * codes.filter((c) => c === 0).length);
    } finally {
      await app.close();
    }
  });

  it('gives back the nonce of a request refused because the store is busy, so the same URL can be sent again', async () => {
    const { store, open, reads } = gatedStore(fx.temp.store);
    const now = Date.now();
    const app = buildQueryApp({
      store,
      config: testConfig({ strict: true }),
      log: pino({ level: 'silent' }),
      sync: { trigger: () => 0 },
      clock: () => now,
      serialStore: true,
      maxWaitingReads: 1,
    });
    try {
      const url = (nonce: string): string =>
        signedQuery({ ...A, receiver_id: 'customer456', timestamp: Math.floor(now / 1000), nonce }, SECRET_A);
      // One read running, one waiting: the queue is full.
      const first = [get(app, MSGS, url('n-busy-00001')), get(app, MSGS, url('n-busy-00002'))];
      await vi.waitFor(() => { expect(reads.entered).toBe(1); });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const refused = url('n-busy-00003');
      expect((await get(app, MSGS, refused)).status).toBe(429);
      open();
      expect((await Promise.all(first)).map((r) => r.body.code)).toEqual([0, 0]);
      // Sent again as it was: answered, and only then spent.
      expect((await get(app, MSGS, refused)).body.code).toBe(0);
      expect((await get(app, MSGS, refused)).body.code).toBe(401);
    } finally {
      await app.close();
    }
  });
});
