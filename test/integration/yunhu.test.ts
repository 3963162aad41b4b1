/**
 * Yunhu simulator → `msgpipe run` (a real child process) → embedded chDB, with edits and recalls
 * made through the API while the pipeline runs, hostile messages, error statuses, and kill -9.
 */
import { describe, expect, it } from 'vitest';

import { decodeYunhu, readListResponse } from '../../src/ingest/yunhu-proto.ts';
import { signUrl } from '../../src/query/index.ts';
import { yunhuClient } from '../../src/simulate/yunhu-client.ts';
import { startYunhuSimulator, type YunhuExpected, type YunhuSimulatorHandle } from '../../src/simulate/yunhu-server.ts';
import { type MsgpipeProcess, sql, startMsgpipe, waitFor, withTempDir, writeConfig } from '../helpers/msgpipe.ts';

const ACCOUNT = '7311890';
const GROUP = { chatId: '51309476', chatType: 2 };
const USER = { chatId: '7356214', chatType: 1 };
const BOT = { chatId: '82041957', chatType: 3 };

function config(dir: string, baseUrl: string): unknown {
  return {
    tenants: [{ id: 'corp1', secret: 'test-secret' }],
    sources: [
      { type: 'yunhu', name: 'yh1', tenant: 'corp1', baseUrl, token: 'tok-yh', userId: ACCOUNT, pollIntervalMs: 100, rereadWindow: 40, conversationRefreshMs: 1000 },
    ],
    clickhouse: { path: `${dir}/ch`, database: 'msgpipe' },
    sink: { maxAgeMs: 200 },
    query: { port: 0 },
    log: { level: 'info' },
  };
}

interface Envelope {
  code: number;
  data: { items: Record<string, unknown>[]; total: number } | null;
}

/** GETs a signed query API path from the running process (its URL is in the startup log). */
async function api(proc: MsgpipeProcess, path: string): Promise<Envelope> {
  const line = proc.stderr().split('\n').find((l) => l.includes('Query API listening.'));
  if (line === undefined) throw new Error('the query API has not said where it listens');
  const { url } = JSON.parse(line) as { url: string };
  const res = await fetch(`${url}${signUrl(path, 'test-secret', { tenant: 'corp1' })}`);
  expect(res.status, path).toBe(200);
  return (await res.json()) as Envelope;
}

async function stopGracefully(proc: MsgpipeProcess): Promise<void> {
  proc.child.kill('SIGTERM');
  const code = await proc.exited;
  if (code !== 0) throw new Error(`msgpipe exited with ${String(code)}\n${proc.stderr().slice(-4000)}`);
}

/** True once every chat was read from its last seq at least `rounds` times after `since` (ms). */
function settled(sim: YunhuSimulatorHandle, since: number, rounds = 3): boolean {
  const expected = sim.expected(ACCOUNT);
  const log = sim.received(ACCOUNT).filter((r) => r.at > since && r.path.endsWith('by-seq') && r.outcome === 'caught_up');
  const chats = [...new Set(expected.map((m) => m.chat))];
  return chats.every((chat) => {
    const last = Math.max(...expected.filter((m) => m.chat === chat).map((m) => m.seq));
    return log.filter((r) => r.chat === chat && r.msgStart === String(last)).length >= rounds;
  });
}

interface StoredRow {
  msgid: string;
  session_id: string;
  session_type: string;
  room_id: string;
  msg_type: string;
  wx_msg_type: number;
  content_text: string;
  recalled: number;
  edit_time: string | null;
  seq: string;
}

/** Asserts the store holds exactly the simulator's messages in their final state. */
async function expectExact(configFile: string, sim: YunhuSimulatorHandle): Promise<void> {
  const expected = sim.expected(ACCOUNT).filter((m) => m.hostile === undefined);
  const rows = await sql<StoredRow>(
    configFile,
    `SELECT msgid, session_id, session_type, room_id, msg_type, wx_msg_type, content_text, recalled,
            toString(toUnixTimestamp64Milli(edit_time)) AS edit_time, toString(seq) AS seq FROM messages`,
  );
  // Exactly once each.
  expect(rows.map((r) => r.msgid).sort()).toEqual(expected.map((m) => m.msgId).sort());
  const byId = new Map(rows.map((r) => [r.msgid, r]));
  for (const m of expected) {
    const row = byId.get(m.msgId)!;
    expect(row.session_id).toBe(m.chatId);
    expect(row.session_type).toBe(m.chatType === 2 ? 'group' : 'external');
    expect(row.room_id).toBe(m.chatType === 2 ? m.chatId : '');
    expect(row.seq).toBe(String(m.seq));
    expect(row.recalled).toBe(m.recallTime > 0 ? 1 : 0);
    if (m.recallTime > 0) expect([m.recalledText, '']).toContain(row.content_text);
    else if (m.contentType === 1 || m.contentType === 3) expect(row.content_text).toBe(m.text);
    expect(row.edit_time).toBe(m.editTime > 0 ? String(m.editTime) : null);
  }
  // The edit history, exactly once each.
  const history = await sql<{ msgid: string; edit_id: string; content_old: string; n: string }>(
    configFile,
    'SELECT msgid, edit_id, any(content_old) AS content_old, count() AS n FROM message_edits GROUP BY msgid, edit_id',
  );
  const expectedHistory = expected.flatMap((m) => m.edits.map((e) => `${m.msgId}/${e.id}/${e.contentOld}`)).sort();
  expect(history.map((h) => `${h.msgid}/${h.edit_id}/${h.content_old}`).sort()).toEqual(expectedHistory);
  expect(history.every((h) => h.n === '1')).toBe(true);
}

/** A listed message's msg_id, or its bytes in hex when it does not decode (a hostile one). */
function msgIdOf(bytes: Uint8Array): string {
  try {
    return String(decodeYunhu('Msg', bytes)['msg_id']);
  } catch {
    return Buffer.from(bytes).toString('hex');
  }
}

function ownText(sim: YunhuSimulatorHandle, chat: string): YunhuExpected[] {
  return sim.expected(ACCOUNT).filter((m) => m.chat === chat && m.contentType === 1 && m.recallTime === 0 && m.hostile === undefined);
}

describe('yunhu pipeline', () => {
  it('stores edits (last one and history) and recalls made during the run exactly once, and dead-letters bad input', async () => {
    await withTempDir('yunhu', async (dir) => {
      const sim = await startYunhuSimulator({
        accounts: [{ token: 'tok-yh', userId: ACCOUNT, pageSize: 20, chats: [{ ...GROUP, chatType: 2, messages: 60 }, { ...USER, chatType: 1, messages: 20 }, { ...BOT, chatType: 3, messages: 10 }] }],
        // Pages that list a message again, the one before them and one of their own: stored once.
        faults: { duplicateRate: 0.3 },
      });
      try {
        const configFile = await writeConfig(dir, config(dir, sim.url));
        const proc = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => settled(sim, 0, 1), 60_000, 'the pipeline to catch up');

        // Changes through the API while the pipeline runs.
        const client = yunhuClient(sim.url, 'tok-yh');
        const a = await client.send(USER, { content: { text: '第一版' } });
        const b = await client.send(USER, { content: { text: '要撤回的' } });
        // Group messages of the account's own: only the sender may edit a message.
        for (const text of ['周会改到三点', '记得带电脑', '会议室在 3 楼']) await client.send(GROUP, { content: { text } });
        const groupTop = String(Math.max(...sim.expected(ACCOUNT).filter((m) => m.chat === '2:51309476').map((m) => m.seq)));
        await waitFor(
          () =>
            sim.received(ACCOUNT).some((r) => r.chat === '1:7356214' && r.msgStart === '22' && r.outcome === 'caught_up') &&
            sim.received(ACCOUNT).some((r) => r.chat === '2:51309476' && r.msgStart === groupTop && r.outcome === 'caught_up'),
          30_000,
          'the new messages to be read',
        );
        await client.edit(USER, a, '第二版');
        await client.edit(USER, a, '**第三版**', 3);
        await client.recall(USER, b);
        const [g1, g2, g3] = ownText(sim, '2:51309476').filter((m) => m.senderId === ACCOUNT).slice(-3);
        await client.edit(GROUP, g1!.msgId, `${g1!.text}（已修改）`);
        await client.recallBatch(GROUP, [g2!.msgId, g3!.msgId]);
        sim.postAsPeer(ACCOUNT, 3, BOT.chatId, 1);
        sim.injectHostile(ACCOUNT, 2, GROUP.chatId, 'malformed');
        sim.injectHostile(ACCOUNT, 1, USER.chatId, 'oversized');
        await client.send(GROUP, { content: { text: '坏消息之后' } });
        // One fault after the other, each on every answer until seen: with both at a partial rate
        // a run of bad answers stretches the source's backoff, and 30 s could see only one kind.
        sim.setFaults(ACCOUNT, { errorStatusRate: 1 });
        await waitFor(() => sim.received(ACCOUNT).some((r) => r.outcome === 'error_status'), 30_000, 'an error status to be served');
        sim.setFaults(ACCOUNT, { errorStatusRate: 0, malformedRate: 1 });
        await waitFor(() => sim.received(ACCOUNT).some((r) => r.outcome === 'malformed'), 60_000, 'a malformed answer to be served');
        sim.clearFaults(ACCOUNT);
        const changed = Date.now();
        await waitFor(() => settled(sim, changed), 60_000, 'the changes to be read');

        // The query API (DESIGN §6): groups are `group` sessions with room_id, users and bots
        // `external` ones; the edited message reads as its last edit, the recalled one as recalled.
        const groups = await api(proc, `/api/v1/chat-msg/sessions?ext_staff_id=${ACCOUNT}&session_type=group`);
        expect(groups.data!.items.map((i) => [i['session_id'], i['room_id'], i['session_type']])).toEqual([[GROUP.chatId, GROUP.chatId, 'group']]);
        const external = await api(proc, `/api/v1/chat-msg/sessions?ext_staff_id=${ACCOUNT}&session_type=external`);
        expect(external.data!.items.map((i) => i['peer_ext_id']).sort()).toEqual([USER.chatId, BOT.chatId].sort());
        for (const item of external.data!.items) expect(item['room_id']).toBe('');
        // What the sources read is stored within the sink's batch age, not at once: wait for it.
        let byMsgid = new Map<unknown, Record<string, unknown>>();
        await waitFor(
          async () => {
            const conversation = await api(proc, `/api/v1/chat-msg/session-msgs?ext_staff_id=${ACCOUNT}&receiver_id=${USER.chatId}&page_size=100`);
            byMsgid = new Map(conversation.data!.items.map((i) => [i['msgid'], i]));
            return byMsgid.get(a)?.['content_text'] === '**第三版**';
          },
          30_000,
          'the last edit to be served by the query API',
        );
        expect(byMsgid.get(a)).toMatchObject({ content_text: '**第三版**', msg_type: 'text' });
        expect(byMsgid.has(b)).toBe(true);
        await stopGracefully(proc);

        await expectExact(configFile, sim);
        // The duplicates were served: pages that listed one message twice.
        const listedTwice = sim.received(ACCOUNT).filter((r) => r.path === '/v1/msg/list-message-by-seq' && r.outcome === 'page' && r.body !== undefined).filter((r) => {
          const ids = readListResponse(r.body!).spans.map((span) => msgIdOf(r.body!.subarray(span.start, span.end)));
          return new Set(ids).size < ids.length;
        });
        expect(listedTwice.length).toBeGreaterThan(0);
        const [edited] = await sql<{ content_text: string; wx_msg_type: number; msg_type: string }>(configFile, `SELECT content_text, wx_msg_type, msg_type FROM messages WHERE msgid = '${a}'`);
        expect(edited).toEqual({ content_text: '**第三版**', wx_msg_type: 3, msg_type: 'text' });
        const history = await sql<{ content_text_old: string }>(configFile, `SELECT content_text_old FROM message_edits WHERE msgid = '${a}' ORDER BY edit_time`);
        expect(history.map((h) => h.content_text_old)).toEqual(['第一版', '第二版']);
        const [recalled] = await sql<{ content_text: string; recalled: number }>(configFile, `SELECT content_text, recalled FROM messages WHERE msgid = '${b}'`);
        expect(recalled).toEqual({ content_text: '要撤回的', recalled: 1 });

        // Dead letters: the hostile messages with their exact bytes, error statuses and cut bodies with theirs.
        const letters = await sql<{ stage: string; error_code: string; original_base64: string }>(configFile, 'SELECT stage, error_code, original_base64 FROM dead_letters');
        const hostile = sim.expected(ACCOUNT).filter((m) => m.hostile !== undefined);
        expect(hostile).toHaveLength(2);
        expect(letters.filter((d) => d.stage === 'transform').map((d) => d.error_code).sort()).toEqual(['MSGPIPE_ERR_PROTOBUF', 'MSGPIPE_ERR_TOO_LARGE']);
        const served = sim.received(ACCOUNT).flatMap((r) => (r.body === undefined ? [] : [Buffer.from(r.body)]));
        for (const d of letters.filter((x) => x.stage === 'transform')) {
          const original = Buffer.from(d.original_base64, 'base64');
          expect(served.some((body) => body.includes(original))).toBe(true);
        }
        const ingest = letters.filter((d) => d.stage === 'ingest');
        expect(ingest.map((d) => d.error_code)).toContain('MSGPIPE_ERR_PROVIDER');
        expect(ingest.map((d) => d.error_code)).toContain('MSGPIPE_ERR_PAGE_MALFORMED');
        const badBodies = sim.received(ACCOUNT).flatMap((r) => ((r.outcome === 'error_status' || r.outcome === 'malformed') && r.body !== undefined ? [Buffer.from(r.body).toString('base64')] : []));
        for (const d of ingest) expect(badBodies).toContain(d.original_base64);

        // Cursors per chat: the last seq of each chat.
        const cursors = await sql<{ stream: string; cursor: string }>(configFile, "SELECT stream, argMax(cursor, updated_at) AS cursor FROM cursors WHERE source = 'yh1' AND stream != 'conversations' GROUP BY stream");
        const last = new Map<string, number>();
        for (const m of sim.expected(ACCOUNT)) last.set(m.chat, Math.max(last.get(m.chat) ?? 0, m.seq));
        expect(new Map(cursors.map((c) => [c.stream, Number(c.cursor)]))).toEqual(last);
      } finally {
        await sim.close();
      }
    });
  });

  it('survives kill -9 while messages, edits and recalls flow, resuming each chat without loss or duplicates', async () => {
    await withTempDir('yunhu-crash', async (dir) => {
      const sim = await startYunhuSimulator({
        accounts: [
          {
            token: 'tok-yh',
            userId: ACCOUNT,
            pageSize: 20,
            chats: [{ ...GROUP, chatType: 2, messages: 900 }, { ...USER, chatType: 1, messages: 400 }, { ...BOT, chatType: 3, messages: 200 }],
            faults: { latencyMs: 15 },
          },
        ],
      });
      try {
        const configFile = await writeConfig(dir, config(dir, sim.url));
        const client = yunhuClient(sim.url, 'tok-yh');
        let kills = 0;
        for (let i = 0; i < 16 && kills < 6; i++) {
          const before = sim.received(ACCOUNT).length;
          const runStart = Date.now();
          const proc = startMsgpipe(['run', '--config', configFile], { MSGPIPE_LOG_LEVEL: 'warn' });
          await waitFor(() => sim.received(ACCOUNT).length > before + 2, 30_000, 'the pipeline to poll');
          // Traffic while it runs: new messages, an edit and a recall of recent own messages.
          for (const chat of [GROUP, USER]) {
            const id = await client.send(chat, { content: { text: `run ${i}` } });
            await client.edit(chat, id, `run ${i} edited`);
            const key = `${chat.chatType}:${chat.chatId}`;
            const victim = ownText(sim, key).at(-3);
            if (victim !== undefined && i % 2 === 0) await client.recall(chat, victim.msgId);
          }
          sim.postAsPeer(ACCOUNT, 3, BOT.chatId, 1);
          await new Promise((r) => setTimeout(r, 100 + Math.floor(Math.random() * 500)));
          // Only a kill while messages still flow counts: some chat not yet read to its end.
          const flowing = !settled(sim, runStart, 1);
          proc.child.kill('SIGKILL');
          await proc.exited;
          if (flowing) kills++;
        }
        expect(kills).toBe(6);
        const last = startMsgpipe(['run', '--config', configFile]);
        const since = Date.now();
        await waitFor(() => settled(sim, since), 120_000, 'the last run to catch up');
        await stopGracefully(last);
        const [totals] = await sql<{ n: string; distinct: string }>(configFile, 'SELECT count() AS n, uniqExact(msgid) AS distinct FROM messages');
        const upstream = sim.expected(ACCOUNT).length;
        expect(upstream).toBeGreaterThan(1500);
        expect(Number(totals!.n)).toBe(upstream);
        expect(Number(totals!.distinct)).toBe(upstream);
        await expectExact(configFile, sim);
      } finally {
        await sim.close();
      }
    });
  });
});
