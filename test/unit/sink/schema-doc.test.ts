/**
 * docs/schema.md is executable: every ```sql block runs on chDB against data written through the
 * sink and must return the rows expected here, and every column of every table is documented
 * with its exact type.
 */
import { readFile } from 'node:fs/promises';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { MessageRow } from '../../../src/core/types.ts';
import { SinkWriter } from '../../../src/sink/writer.ts';
import { deadLetter, event, message, openTempStore, recall, silent, type TempStore } from './helpers.ts';

const DOC = new URL('../../../docs/schema.md', import.meta.url);

/** The ```sql blocks of the doc, named by their first comment line. */
async function sqlBlocks(): Promise<{ name: string; sql: string }[]> {
  const text = await readFile(DOC, 'utf8');
  return [...text.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => {
    const sql = (m[1] ?? '').trim();
    return { name: /^--\s*(.+)$/m.exec(sql)?.[1]?.trim() ?? sql.slice(0, 60), sql };
  });
}

/** Documented columns per table: rows `| \`name\` | \`type\` | … |` under `### \`table\``. */
async function documentedColumns(): Promise<Map<string, Map<string, string>>> {
  const text = await readFile(DOC, 'utf8');
  const tables = new Map<string, Map<string, string>>();
  let current: Map<string, string> | undefined;
  for (const line of text.split('\n')) {
    const heading = /^### `([a-z_]+)`/.exec(line);
    if (heading) {
      current = new Map();
      tables.set(heading[1] ?? '', current);
      continue;
    }
    if (line.startsWith('## ')) current = undefined;
    const row = /^\| `([a-z_0-9]+)` \| `(.+?)` \|/.exec(line);
    if (row && current) current.set(row[1] ?? '', row[2] ?? '');
  }
  return tables;
}

const at = (iso: string): number => Date.parse(`${iso}Z`);

/** The data set the examples are written against. */
function dataset(): { batches: Parameters<SinkWriter['add']>[0][] } {
  const s1 = { session_id: 'sess-1', peer_id: 'wxid_peer1', peer_name: '张三' };
  const s2 = { session_id: 'sess-2', peer_id: 'wxid_peer2', peer_name: '李四', from_id: 'wxid_peer2' };
  const out = (m: Partial<MessageRow>): Partial<MessageRow> => ({ is_sender: 1, from_id: 'staff-a', ...m });
  const a = message({ ...s1, msgid: '3876235366388279544', msg_time: at('2024-11-08T01:00:00'), content_text: '您好，请问这款产品还有货吗？' });
  const b = message({ ...s1, ...out({ msgid: '3876235366388279545', msg_time: at('2024-11-08T01:01:00'), content_text: '这是我们最新的产品介绍，请您查看' }) });
  const c = message({ ...s1, msgid: '3876235366388279546', msg_time: at('2024-11-08T01:01:00'), msg_type: 'image', wx_msg_type: 3, content_text: '' });
  const d = message({ ...s1, ...out({ msgid: '3876235366388279547', msg_time: at('2024-11-08T01:03:00'), content_text: '今天天气很好' }) });
  const r = message({
    ...s1,
    ...out({ msgid: '3876235366388279548', msg_time: at('2024-11-08T01:04:30'), msg_type: 'revoke', action: 'recall', wx_msg_type: 10002, pre_msgid: d.msgid, content_text: '你撤回了一条消息' }),
  });
  const e = message({ ...s2, msgid: '1767797523284146072', msg_time: at('2024-11-09T02:00:00'), content_text: '产品介绍视频在哪里看？' });
  const f = message({
    ...s2,
    ...out({ msgid: '1767797523284146073', msg_time: at('2024-11-09T02:05:00'), msg_type: 'link', wx_msg_type: 49, app_type: 5, content_text: '产品介绍 视频号直播预告' }),
  });
  const g = message({ staff_id: 'staff-b', session_id: 'sess-3', peer_id: 'wxid_peer3', from_id: 'wxid_peer3', peer_name: '王五', msgid: '999', msg_time: at('2024-11-08T03:00:00'), content_text: '收到' });
  const otherTenant = message({ tenant: 'corp999', msgid: '5', content_text: '产品介绍' });
  const none = { messages: [], events: [], deadLetters: [], recalls: [] };
  return {
    batches: [
      { output: { ...none, messages: [a, b, c, otherTenant], events: [event({ event_id: 'e1', event_time: at('2024-11-08T01:00:05') })] }, cursor: { source: 'shop-a', stream: 'main', cursor: 'kb-1' } },
      { output: { ...none, messages: [d, g] }, cursor: { source: 'shop-a', stream: 'main', cursor: 'kb-2' } },
      {
        output: {
          messages: [r, e, f, a],
          events: [
            event({ event_id: 'e2', event_time: at('2024-11-09T02:00:05') }),
            event({ event_id: 'e3', event_type: 'statusnotify', event_time: at('2024-11-09T02:01:00') }),
            event({ event_id: 'e1', event_time: at('2024-11-08T01:00:05') }),
          ],
          deadLetters: [
            deadLetter(new Uint8Array(10).fill(0x3c), { origin_key: 'shop-a:kb-2#0' }),
            deadLetter(new Uint8Array(20).fill(0xff), { origin_key: 'shop-a:kb-2#1' }),
            deadLetter(Uint8Array.from([0x7b, 0x22, 0x72, 0x65, 0x74, 0x22, 0x3a]), {
              stage: 'ingest',
              error_code: 'MSGPIPE_ERR_PAGE_MALFORMED',
              origin_key: 'shop-a:kb-2',
            }),
          ],
          recalls: [recall(d, at('2024-11-08T01:04:30'))],
        },
        cursor: { source: 'shop-a', stream: 'main', cursor: 'kb-3' },
      },
      { output: none, cursor: { source: 'shop-b', stream: 'main', cursor: '42' } },
    ],
  };
}

/** What each example must return, by the example's first comment line. */
const EXPECTED: Record<string, unknown[]> = {
  'The session list of one staff member, newest first (GET /chat-msg/sessions)': [
    {
      session_id: 'sess-2',
      peer_id: 'wxid_peer2',
      peer_name: '李四',
      last_msgid: '1767797523284146073',
      last_msg_type: 'link',
      last_content_text: '产品介绍 视频号直播预告',
      msg_time: String(at('2024-11-09T02:05:00')),
      msg_count: '2',
    },
    {
      session_id: 'sess-1',
      peer_id: 'wxid_peer1',
      peer_name: '张三',
      last_msgid: '3876235366388279548',
      last_msg_type: 'revoke',
      last_content_text: '你撤回了一条消息',
      msg_time: String(at('2024-11-08T01:04:30')),
      msg_count: '5',
    },
  ],
  'Messages per day and kind (days in Asia/Shanghai)': [
    { day: '2024-11-08', msg_type: 'image', messages: '1' },
    { day: '2024-11-08', msg_type: 'revoke', messages: '1' },
    { day: '2024-11-08', msg_type: 'text', messages: '4' },
    { day: '2024-11-09', msg_type: 'link', messages: '1' },
    { day: '2024-11-09', msg_type: 'text', messages: '1' },
  ],
  'Busiest sessions: most messages, with the peer and the latest message': [
    { session_id: 'sess-1', peer_name: '张三', msg_count: '5', last_msg_type: 'revoke', last_content_text: '你撤回了一条消息' },
    { session_id: 'sess-2', peer_name: '李四', msg_count: '2', last_msg_type: 'link', last_content_text: '产品介绍 视频号直播预告' },
    { session_id: 'sess-3', peer_name: '王五', msg_count: '1', last_msg_type: 'text', last_content_text: '收到' },
  ],
  'Recall rate per staff member (revocation rows themselves excluded)': [
    { staff_id: 'staff-a', messages: '6', recalled_messages: '1', recall_rate: 0.167 },
    { staff_id: 'staff-b', messages: '1', recalled_messages: '0', recall_rate: 0 },
  ],
  'Chinese keyword search: LIKE reads the ngram text index and checks the exact phrase': [
    { msgid: '1767797523284146073', session_id: 'sess-2', content_text: '产品介绍 视频号直播预告' },
    { msgid: '1767797523284146072', session_id: 'sess-2', content_text: '产品介绍视频在哪里看？' },
    { msgid: '3876235366388279545', session_id: 'sess-1', content_text: '这是我们最新的产品介绍，请您查看' },
  ],
  'A one-character keyword has no bigram: the staff\'s messages are scanned': [
    { msgid: '3876235366388279544', content_text: '您好，请问这款产品还有货吗？' },
  ],
  'One conversation, a keyset page of messages newer than a known message': [
    { msgid: '3876235366388279546', msg_time_ms: String(at('2024-11-08T01:01:00')), msg_type: 'image', content_text: '', recalled: 0 },
    { msgid: '3876235366388279547', msg_time_ms: String(at('2024-11-08T01:03:00')), msg_type: 'text', content_text: '今天天气很好', recalled: 1 },
    { msgid: '3876235366388279548', msg_time_ms: String(at('2024-11-08T01:04:30')), msg_type: 'revoke', content_text: '你撤回了一条消息', recalled: 0 },
  ],
  'Recalled messages with how long after sending they were revoked': [
    { msgid: '3876235366388279547', content_text: '今天天气很好', seconds_to_recall: '90' },
  ],
  'Inbound vs outbound messages and distinct peers per day': [
    { day: '2024-11-08', inbound: '3', outbound: '2', peers: '2' },
    { day: '2024-11-09', inbound: '1', outbound: '1', peers: '1' },
  ],
  'Dead letters by error code and stage, with their total size': [
    { error_code: 'MSGPIPE_ERR_XML', stage: 'transform', letters: '2', bytes: '30' },
    { error_code: 'MSGPIPE_ERR_PAGE_MALFORMED', stage: 'ingest', letters: '1', bytes: '7' },
  ],
  'Server events per type': [
    { event_type: 'functionmsg', events: '2', latest: '2024-11-09 02:00:05.000' },
    { event_type: 'statusnotify', events: '1', latest: '2024-11-09 02:01:00.000' },
  ],
  'Where every source resumes': [
    { source: 'shop-a', stream: 'main', position: 'kb-3', saved_at: expect.any(String) as unknown },
    { source: 'shop-b', stream: 'main', position: '42', saved_at: expect.any(String) as unknown },
  ],
};

describe('docs/schema.md', () => {
  let temp: TempStore;
  beforeAll(async () => {
    temp = await openTempStore();
    const writer = new SinkWriter(temp.store, silent, { maxAgeMs: 60_000 });
    for (const batch of dataset().batches) {
      await writer.add(batch);
      await writer.flush();
    }
    await writer.close();
  });
  afterAll(async () => {
    await temp.dispose();
  });

  it('has an expectation for every SQL example and every example returns it', async () => {
    const blocks = await sqlBlocks();
    expect(blocks.length).toBeGreaterThanOrEqual(10);
    expect(blocks.map((b) => b.name).sort()).toEqual(Object.keys(EXPECTED).sort());
    for (const block of blocks) {
      const rows = await temp.store.query(block.sql);
      expect({ example: block.name, rows }).toEqual({ example: block.name, rows: EXPECTED[block.name] });
    }
  });

  it('answers the keyword example from the text index', async () => {
    const block = (await sqlBlocks()).find((b) => b.name.startsWith('Chinese keyword search'));
    const plan = await temp.store.query<{ explain: string }>(`EXPLAIN indexes = 1 ${block?.sql ?? ''}`);
    expect(plan.map((p) => p.explain).join('\n')).toMatch(/idx_content_text/);
  });

  it('documents every table and every column with its exact type', async () => {
    const documented = await documentedColumns();
    const columns = await temp.store.query<{ table: string; name: string; type: string; engine: string }>(
      `SELECT c.table AS table, c.name AS name, c.type AS type, t.engine AS engine
       FROM system.columns AS c INNER JOIN system.tables AS t ON t.database = c.database AND t.name = c.table
       WHERE c.database = currentDatabase() ORDER BY c.table, c.position`,
    );
    const actual = new Map<string, Map<string, string>>();
    for (const c of columns) {
      const table = actual.get(c.table) ?? new Map<string, string>();
      table.set(c.name, c.type);
      actual.set(c.table, table);
    }
    expect([...documented.keys()].sort()).toEqual([...actual.keys()].sort());
    for (const [table, cols] of actual) {
      if (table === 'sessions_mv') {
        // A materialized view's columns are its target's; the doc says so instead of repeating them.
        expect([...cols.keys()]).toEqual([...(actual.get('sessions_agg')?.keys() ?? [])]);
        continue;
      }
      expect({ table, columns: Object.fromEntries(documented.get(table) ?? []) }).toEqual({
        table,
        columns: Object.fromEntries(cols),
      });
    }
  });
});
