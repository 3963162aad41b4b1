/** The writer's edit path on chDB: Yunhu transform outputs with edits, history and recalls, delivered again and again. */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import type { SinkUnit } from '../../../src/core/pipeline.ts';
import type { Origin, RawRecord } from '../../../src/core/types.ts';
import { encodeYunhu } from '../../../src/ingest/yunhu-proto.ts';
import { SinkWriter } from '../../../src/sink/writer.ts';
import { transformYunhuRecord } from '../../../src/transform/yunhu.ts';
import { openTempStore, silent, type TempStore } from './helpers.ts';

const ORIGIN: Origin = { source: 'yh1', sourceType: 'yunhu', tenant: 'corp1', staffId: '7311890' };
const NOW = 1_767_225_600_000;
const SEND = 1_731_059_400_000;

function msg(text: string, editTime: number, recallTime = 0, id = 'm1', seq = 1): Uint8Array {
  return encodeYunhu('Msg', {
    msg_id: id,
    sender: { chat_id: '7356214', chat_type: 1, name: '小林', avatar_url: 'https://a/x.jpg' },
    direction: 'left',
    content_type: 1,
    content: { text },
    send_time: String(SEND + seq),
    edit_time: String(editTime),
    recall_time: String(recallTime),
    msg_seq: String(seq),
  });
}

function entry(id: number, old: string, at: number): Uint8Array {
  return Buffer.from(JSON.stringify({ id, msgId: 'm1', contentType: 1, contentOld: JSON.stringify({ text: old }), createTime: SEND + 1, msgTime: at }));
}

function unit(records: Uint8Array[], cursor: string): SinkUnit {
  const outs = records.map((bytes, index) => transformYunhuRecord({ origin: ORIGIN, bytes, fetchedAt: NOW, cursor: `1:7356214@${cursor}`, index } satisfies RawRecord, NOW));
  return {
    output: {
      messages: outs.flatMap((o) => o.messages),
      events: [],
      deadLetters: outs.flatMap((o) => o.deadLetters),
      recalls: outs.flatMap((o) => o.recalls),
      edits: outs.flatMap((o) => o.edits ?? []),
      editHistory: outs.flatMap((o) => o.editHistory ?? []),
    },
    cursor: { source: 'yh1', stream: '1:7356214', cursor },
  };
}

describe('SinkWriter with Yunhu edits', () => {
  let t: TempStore;
  beforeEach(async () => {
    t = await openTempStore();
  });
  afterEach(async () => {
    await t.dispose();
  });

  it('shows the last edit, the history once and the recall, whatever is delivered again and in which batch', async () => {
    const w = new SinkWriter(t.store, silent, { maxAgeMs: 60_000 });
    // First read: original; second message later recalled.
    await w.add(unit([msg('v1', 0), msg('hello', 0, 0, 'm2', 2)], '0'));
    await w.flush();
    // Re-read: edited twice (history of two), then the same page again (a crash re-read).
    const edited = unit([msg('v3', SEND + 200), entry(11, 'v2', SEND + 200), entry(10, 'v1', SEND + 100)], '2');
    await w.add(edited);
    await w.add(edited);
    await w.flush();
    // Counted for the metrics: two earlier versions inserted, the latest content applied once.
    expect(w.stats.written).toMatchObject({ messages: 2, message_edits: 2, edits: 1 });
    // An older re-read arriving late changes nothing; the recall lands.
    await w.add(unit([msg('v2', SEND + 100), entry(10, 'v1', SEND + 100)], '2'));
    await w.add(unit([msg('', 0, SEND + 300, 'm2', 2)], '2'));
    await w.close();
    // The history was stored once: the late re-read inserted nothing more.
    expect(w.stats.written.message_edits).toBe(2);

    const rows = await t.store.query<{ msgid: string; content_text: string; edit_time: string | null; recalled: number; peer_name: string }>(
      "SELECT msgid, content_text, toString(toUnixTimestamp64Milli(edit_time)) AS edit_time, recalled, peer_name FROM messages ORDER BY msgid",
    );
    expect(rows).toEqual([
      { msgid: 'm1', content_text: 'v3', edit_time: String(SEND + 200), recalled: 0, peer_name: '小林' },
      { msgid: 'm2', content_text: 'hello', edit_time: null, recalled: 1, peer_name: '小林' },
    ]);
    const history = await t.store.query<{ edit_id: string; content_text_old: string }>(
      'SELECT edit_id, content_text_old FROM message_edits ORDER BY edit_time',
    );
    expect(history).toEqual([
      { edit_id: '10', content_text_old: 'v1' },
      { edit_id: '11', content_text_old: 'v2' },
    ]);
  });

  it('shows the edited text as the session\'s latest message, counting nothing twice', async () => {
    const w = new SinkWriter(t.store, silent, { maxAgeMs: 60_000 });
    await w.add(unit([msg('first', 0), msg('hello', 0, 0, 'm2', 2)], '0'));
    await w.flush();
    const latest = async (): Promise<unknown> =>
      (await t.store.query('SELECT last_msgid, last_content_text, toString(msg_count) AS msg_count FROM sessions'))[0];
    expect(await latest()).toEqual({ last_msgid: 'm2', last_content_text: 'hello', msg_count: '2' });

    // The latest message is edited twice; the second edit is delivered again, the first late.
    const second = unit([msg('hello v3', SEND + 300, 0, 'm2', 2)], '2');
    await w.add(unit([msg('hello v2', SEND + 200, 0, 'm2', 2)], '2'));
    await w.flush();
    expect(await latest()).toEqual({ last_msgid: 'm2', last_content_text: 'hello v2', msg_count: '2' });
    await w.add(second);
    await w.flush();
    await w.add(second);
    await w.add(unit([msg('hello v2', SEND + 200, 0, 'm2', 2)], '2'));
    await w.flush();
    expect(await latest()).toEqual({ last_msgid: 'm2', last_content_text: 'hello v3', msg_count: '2' });

    // An edit of an older message leaves the session's latest message as it is.
    await w.add(unit([msg('first, edited', SEND + 400)], '2'));
    await w.close();
    expect(await latest()).toEqual({ last_msgid: 'm2', last_content_text: 'hello v3', msg_count: '2' });
    const [m1] = await t.store.query<{ content_text: string }>("SELECT content_text FROM messages WHERE msgid = 'm1'");
    expect(m1?.content_text).toBe('first, edited');
  });

  it('keeps the stored text of a message edited and then recalled between two reads (listed with its content emptied), with the edit time', async () => {
    const w = new SinkWriter(t.store, silent, { maxAgeMs: 60_000 });
    await w.add(unit([msg('明天十点开会', 0), msg('只撤回', 0, 0, 'm2', 2)], '0'));
    await w.flush();
    // Next read: m1 was edited and then recalled, m2 only recalled; Yunhu lists both emptied.
    await w.add(unit([msg('', SEND + 100, SEND + 300), entry(10, '明天十点开会', SEND + 100), msg('', 0, SEND + 300, 'm2', 2)], '2'));
    await w.close();
    const rows = await t.store.query<{ msgid: string; content_text: string; edit_time: string | null; recalled: number }>(
      'SELECT msgid, content_text, toString(toUnixTimestamp64Milli(edit_time)) AS edit_time, recalled FROM messages ORDER BY msgid',
    );
    expect(rows).toEqual([
      { msgid: 'm1', content_text: '明天十点开会', edit_time: String(SEND + 100), recalled: 1 },
      { msgid: 'm2', content_text: '只撤回', edit_time: null, recalled: 1 },
    ]);
    // Search still finds the recalled message's text.
    const found = await t.store.query<{ n: string }>("SELECT toString(count()) AS n FROM messages WHERE content_text LIKE '%十点开会%'");
    expect(found[0]?.n).toBe('1');
  });

  it('stores a message first seen already edited with its edit time, in one batch', async () => {
    const w = new SinkWriter(t.store, silent);
    await w.add(unit([msg('v2', SEND + 100), entry(10, 'v1', SEND + 100)], '0'));
    await w.close();
    const rows = await t.store.query<{ content_text: string; edit_time: string }>(
      'SELECT content_text, toString(toUnixTimestamp64Milli(edit_time)) AS edit_time FROM messages',
    );
    expect(rows).toEqual([{ content_text: 'v2', edit_time: String(SEND + 100) }]);
  });

  it('applies an edit whose text is bound in pieces, and shows it as the session\'s latest message', async () => {
    const long = `${'长文🌙'.repeat(16_000)}'\\end`;
    const w = new SinkWriter(t.store, silent, { maxAgeMs: 60_000 });
    await w.add(unit([msg('short', 0)], '0'));
    await w.flush();
    await w.add(unit([msg(long, SEND + 100)], '1'));
    await w.close();
    const [row] = await t.store.query<{ content_text: string; last: string }>(
      "SELECT content_text, (SELECT last_content_text FROM sessions) AS last FROM messages WHERE msgid = 'm1'",
    );
    expect(row).toEqual({ content_text: long, last: long });
  });
});
