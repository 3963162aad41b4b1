/**
 * The insert journal (src/sink/journal.ts) and the writer's re-sending of a failed insert: an
 * INSERT into `messages` whose part committed while `sessions_mv`'s did not (a process killed
 * between the two, or a view that failed) is sent again with its token, so `sessions` counts
 * those messages once.
 */
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { MsgpipeError } from '../../../src/core/errors.ts';
import { rangeScopedStore } from '../../../src/kafka/sink.ts';
import { JsonLines, openStore, type InsertOptions, type Store, wrapStore } from '../../../src/sink/clickhouse.ts';
import { journalDir, journaledStore, replayJournal } from '../../../src/sink/journal.ts';
import { encodeMessageLine, MESSAGE_COLUMNS, messageLineEnd } from '../../../src/sink/messages.ts';
import { migrate } from '../../../src/sink/migrate.ts';
import { SinkWriter } from '../../../src/sink/writer.ts';
import { openTempStore, realisticMessages, silent, type TempStore } from './helpers.ts';

const FAST_RETRY = { attempts: 5, minMs: 1, maxMs: 5, factor: 2 } as const;

async function counts(store: Store): Promise<{ messages: number; counted: number }> {
  const [row] = await store.query<{ messages: string; counted: string }>(
    'SELECT (SELECT count() FROM messages) AS messages, (SELECT sum(msg_count) FROM sessions) AS counted',
  );
  return { messages: Number(row?.messages), counted: Number(row?.counted) };
}

/** `inner` with its insert replaced. */
function withInsert(inner: Store, insert: Store['insert']): Store {
  return wrapStore(inner, { insert });
}

function lines(n: number, seed = 1): JsonLines {
  const rows = realisticMessages(n, { seed });
  return new JsonLines(Buffer.concat(rows.flatMap((r) => [encodeMessageLine(r), messageLineEnd(undefined)])), rows.length);
}

/**
 * `inner` whose inserts into `messages` commit the table's part without the view's, then fail,
 * or with `hang`, never answer: what a view that failed, or a process killed between the two
 * parts, leaves (`times` inserts; later ones pass).
 */
function viewMissingStore(inner: Store, times = 1, hang = false): Store {
  let left = times;
  return withInsert(inner, async (table: string, rows: readonly object[] | JsonLines, options?: InsertOptions) => {
    if (table !== 'messages' || left === 0) return inner.insert(table, rows, options);
    left -= 1;
    await inner.command('DETACH TABLE sessions_mv');
    try {
      await inner.insert(table, rows, options);
    } finally {
      await inner.command('ATTACH TABLE sessions_mv');
    }
    if (hang) await new Promise(() => undefined);
    throw new MsgpipeError('MSGPIPE_ERR_CLICKHOUSE', 'killed between the two parts', { retriable: true });
  });
}

describe('insert journal', () => {
  let temp: TempStore;
  let dir: string;
  beforeEach(async () => {
    temp = await openTempStore();
    dir = journalDir(temp.dir, 'msgpipe');
  });
  afterEach(async () => {
    await temp.dispose();
  });

  it('sends an insert the view missed again at the next start, and the view counts it once', async () => {
    const body = lines(300);
    const options = { columns: MESSAGE_COLUMNS, dedupToken: 'messages:t1' };
    // The process dies during the insert: it never answers, and the file stays.
    const inserted = (async () => {
      for (;;) {
        if ((await counts(temp.store)).messages === 300) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    void journaledStore(viewMissingStore(temp.store, 1, true), dir).insert('messages', body, options);
    await inserted;
    expect(await readdir(dir)).toHaveLength(1);
    expect(await counts(temp.store)).toEqual({ messages: 300, counted: 0 });

    expect(await replayJournal(temp.store, dir, silent)).toBe(1);
    expect(await counts(temp.store)).toEqual({ messages: 300, counted: 300 });
    expect(await readdir(dir)).toEqual([]);
    expect(await replayJournal(temp.store, dir, silent)).toBe(0);
  });

  it('counts nothing twice when the insert it sends again had completed', async () => {
    const body = lines(200, 2);
    const options = { columns: MESSAGE_COLUMNS, dedupToken: 'messages:t2' };
    // Both parts committed, then the process died before the file was removed.
    let committed!: () => void;
    const done = new Promise<void>((resolve) => (committed = resolve));
    const answerLost = withInsert(temp.store, async (table, rows, o) => {
      await temp.store.insert(table, rows, o);
      committed();
      await new Promise(() => undefined);
    });
    void journaledStore(answerLost, dir).insert('messages', body, options);
    await done;
    expect(await replayJournal(temp.store, dir, silent)).toBe(1);
    expect(await counts(temp.store)).toEqual({ messages: 200, counted: 200 });
  });

  it('keeps a failed insert until it is sent again or forgotten, and a start after a death in between sends it', async () => {
    const store = journaledStore(viewMissingStore(temp.store), dir);
    const options = { columns: MESSAGE_COLUMNS, dedupToken: 'messages:t7' };
    await expect(store.insert('messages', lines(30, 7), options)).rejects.toThrow('killed');
    // The process dies during the writer's backoff: the next start repairs the view.
    expect(await readdir(dir)).toHaveLength(1);
    expect(await replayJournal(temp.store, dir, silent)).toBe(1);
    expect(await counts(temp.store)).toEqual({ messages: 30, counted: 30 });

    const other = { columns: MESSAGE_COLUMNS, dedupToken: 'messages:t8' };
    const failing = journaledStore(viewMissingStore(temp.store), dir);
    await expect(failing.insert('messages', lines(10, 8), other)).rejects.toThrow('killed');
    expect(await readdir(dir)).toHaveLength(1);
    await failing.forget?.('messages', other);
    expect(await readdir(dir)).toEqual([]);
  });

  it('journals only token-bearing line inserts into messages, while they run', async () => {
    const seen: string[][] = [];
    const watching = withInsert(temp.store, async (table, rows, o) => {
      seen.push(await readdir(dir).catch(() => []));
      await temp.store.insert(table, rows, o);
    });
    const store = journaledStore(watching, dir);
    await store.insert('messages', lines(10, 3), { columns: MESSAGE_COLUMNS, dedupToken: 'messages:t3' });
    await store.insert('messages', lines(10, 4), { columns: MESSAGE_COLUMNS });
    await store.insert('messages', new JsonLines(Buffer.alloc(0), 0), { columns: MESSAGE_COLUMNS, dedupToken: 'messages:empty' });
    await store.insert('cursors', [{ source: 's', stream: 'main', cursor: 'c', updated_at: 1 }], { dedupToken: 'cursors:x' });
    expect(seen.map((files) => files.length)).toEqual([1, 0, 0, 0]);
    expect(await readdir(dir)).toEqual([]);
    expect((await counts(temp.store)).counted).toBe(20);
  });

  it('drops a file never renamed into place, and sets a damaged entry aside with an error', async () => {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'abc.insert.tmp'), '{"format":"msgpipe-insert-jour');
    expect(await replayJournal(temp.store, dir, silent)).toBe(0);
    expect(await readdir(dir)).toEqual([]);

    const body = lines(5, 5).body;
    const header = { format: 'msgpipe-insert-journal/1', table: 'messages', token: 'messages:t5', columns: MESSAGE_COLUMNS, rows: 5, bytes: body.length };
    // Cut short: the body is not the length the header gives.
    await writeFile(join(dir, 'def.insert'), Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), body.subarray(0, 100)]));
    const logged: string[] = [];
    const log = pino({ level: 'error' }, { write: (line: string) => void logged.push(line) });
    expect(await replayJournal(temp.store, dir, log)).toBe(0);
    expect(await readdir(dir)).toEqual(['def.insert.damaged']);
    expect(logged.join('')).toContain('is not whole');
    expect((await counts(temp.store)).messages).toBe(0);
  });

  it('refuses to start past a file whose rows it cannot read, naming it', async () => {
    await mkdir(dir, { recursive: true });
    const body = Buffer.from('{"not":"a message"}\n');
    const header = { format: 'msgpipe-insert-journal/1', table: 'messages', token: 'messages:bad', columns: MESSAGE_COLUMNS, rows: 1, bytes: body.length };
    await writeFile(join(dir, 'bad.insert'), Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), body]));
    await expect(replayJournal(temp.store, dir, silent, FAST_RETRY)).rejects.toThrow(/unfinished insert in .*bad\.insert: its rows cannot be read.*remove the file/s);
    expect(await readdir(dir)).toEqual(['bad.insert']);
  });

  it('journals the token the Kafka sink scopes to its offset range, and forgets it through the same scope', async () => {
    const scoped = rangeScopedStore(journaledStore(viewMissingStore(temp.store), dir), 'p.messages-0-10-20');
    const options = { columns: MESSAGE_COLUMNS, dedupToken: 'messages:t9' };
    await expect(scoped.insert('messages', lines(5, 9), options)).rejects.toThrow('killed');
    const [file] = await readdir(dir);
    const [header] = (await readFile(join(dir, file ?? ''), 'utf8')).split('\n');
    // The journal's own run prefix goes first: the token ClickHouse got.
    expect(JSON.parse(header ?? '')).toMatchObject({ token: expect.stringMatching(/^[0-9a-f]{12}\/p\.messages-0-10-20:messages:t9$/) as unknown, rows: 5 });
    await scoped.forget?.('messages', options);
    expect(await readdir(dir)).toEqual([]);
  });

  it('keeps forget through any wrapper, and adds none to a store without a journal', async () => {
    const wrapped = wrapStore(journaledStore(viewMissingStore(temp.store), dir), {});
    const options = { columns: MESSAGE_COLUMNS, dedupToken: 'messages:t10' };
    await expect(wrapped.insert('messages', lines(3, 10), options)).rejects.toThrow('killed');
    expect(await readdir(dir)).toHaveLength(1);
    await wrapped.forget?.('messages', options);
    expect(await readdir(dir)).toEqual([]);
    expect('forget' in wrapStore(temp.store, {})).toBe(false);
  });

  it('removes a file with a warning when the database has no view, hence no sessions to recount', async () => {
    await temp.store.command('DROP VIEW sessions_mv');
    await mkdir(dir, { recursive: true });
    const body = lines(5, 14).body;
    const header = { format: 'msgpipe-insert-journal/1', table: 'messages', token: 'messages:t14', columns: MESSAGE_COLUMNS, rows: 5, bytes: body.length };
    await writeFile(join(dir, 'left.insert'), Buffer.concat([Buffer.from(JSON.stringify(header) + '\n'), body]));
    const logged: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(line) });
    expect(await replayJournal(temp.store, dir, log)).toBe(0);
    expect(await readdir(dir)).toEqual([]);
    expect(logged.join('')).toContain('no sessions_mv');
  });

  it('is a no-op for a store that never journaled', async () => {
    expect(await replayJournal(temp.store, join(temp.dir, 'absent'), silent)).toBe(0);
  });
});

describe('a deduplication record a killed process left without its part', () => {
  // ClickHouse writes a part's deduplication record, then renames the part into place. A process
  // killed between the two leaves the record, and the next start drops the part's temporary
  // directory. Made here for real: the insert completes, the process "dies" before its journal
  // file goes, the store closes, and the part's directory is removed as the start would.
  const batch = (seed: number, firstId: bigint) => ({
    output: { messages: realisticMessages(100, { seed, firstId }), events: [], deadLetters: [], recalls: [] },
  });
  for (const table of ['messages', 'sessions_agg']) {
    it(`recounts the sessions, and the rows read again are stored and counted once (record left in ${table})`, async () => {
      const root = await mkdtemp(join(tmpdir(), 'msgpipe-phantom-'));
      const dir = journalDir(root, 'msgpipe');
      let store = await openStore({ path: root, database: 'msgpipe' }, silent);
      try {
        await migrate(store, silent);
        const first = new SinkWriter(journaledStore(store, dir), silent, { maxAgeMs: 60_000, failureEndsProcess: true });
        await first.add(batch(21, 7_000_000_000_000_000_000n));
        await first.close();
        // The second batch: ClickHouse takes the insert into messages, and the process dies before the answer.
        let committed!: () => void;
        const taken = new Promise<void>((resolve) => (committed = resolve));
        const dies = withInsert(store, async (t, rows, o) => {
          await store.insert(t, rows, o);
          if (t === 'messages') {
            committed();
            await new Promise(() => undefined);
          }
        });
        void new SinkWriter(journaledStore(dies, dir), silent, { maxAgeMs: 1 }).add(batch(22, 7_100_000_000_000_000_000n));
        await taken;
        const [part] = await store.query<{ path: string }>(
          `SELECT path FROM system.parts WHERE database = currentDatabase() AND table = {table:String} AND active
           ORDER BY max_block_number DESC LIMIT 1`,
          { table },
        );
        await store.close();
        await rm(part?.path ?? '', { recursive: true });
        store = await openStore({ path: root, database: 'msgpipe' }, silent);

        expect(await replayJournal(store, dir, silent)).toBe(1);
        const stored = table === 'messages' ? 100 : 200;
        expect(await counts(store)).toEqual({ messages: stored, counted: stored });
        // The pipeline reads the second batch again (its cursor was never saved) and stores it
        // with the same rows, hence the same token but for the run.
        const again = new SinkWriter(journaledStore(store, dir), silent, { maxAgeMs: 60_000, failureEndsProcess: true });
        await again.add(batch(22, 7_100_000_000_000_000_000n));
        await again.close();
        expect(await counts(store)).toEqual({ messages: 200, counted: 200 });
        expect(await readdir(dir)).toEqual([]);
      } finally {
        await store.close();
        await rm(root, { recursive: true, force: true });
      }
    });
  }
});

describe('SinkWriter retry after a view failed', () => {
  let temp: TempStore;
  beforeEach(async () => {
    temp = await openTempStore();
  });
  afterEach(async () => {
    await temp.dispose();
  });

  it('sends the failed insert again before it looks up what is stored, so sessions count every message once', async () => {
    const writer = new SinkWriter(viewMissingStore(temp.store), silent, { maxAgeMs: 60_000, retry: FAST_RETRY });
    await writer.add({ output: { messages: realisticMessages(400, { seed: 6 }), events: [], deadLetters: [], recalls: [] } });
    await writer.close();
    expect(writer.stats.retries).toBe(1);
    expect(await counts(temp.store)).toEqual({ messages: 400, counted: 400 });
  });

  it('forgets the journaled insert of a batch its signal gave up, and keeps the one of a batch that failed', async () => {
    const dir = journalDir(temp.dir, 'msgpipe');
    // Stopped by its signal during the backoff (the Kafka sink when the partitions moved): the
    // process goes on, so the file must not wait for a later start.
    const controller = new AbortController();
    const aborted = new SinkWriter(journaledStore(viewMissingStore(temp.store), dir), silent, {
      maxAgeMs: 60_000,
      retry: { attempts: 5, minMs: 5_000, maxMs: 5_000, factor: 1 },
      signal: controller.signal,
    });
    await aborted.add({ output: { messages: realisticMessages(50, { seed: 10 }), events: [], deadLetters: [], recalls: [] } });
    const closed = aborted.close();
    await vi.waitFor(() => { expect(aborted.stats.retries).toBe(1); });
    expect(await readdir(dir)).toHaveLength(1);
    controller.abort();
    await expect(closed).rejects.toThrow();
    expect(await readdir(dir)).toEqual([]);

    // Out of attempts, in a process that goes on (the default): the file goes too.
    const goesOn = new SinkWriter(journaledStore(viewMissingStore(temp.store, 10), dir), silent, { maxAgeMs: 60_000, retry: { ...FAST_RETRY, attempts: 2 } });
    await goesOn.add({ output: { messages: realisticMessages(20, { seed: 12, firstId: 6_000_000_000_000_000_000n }), events: [], deadLetters: [], recalls: [] } });
    await expect(goesOn.close()).rejects.toThrow();
    expect(await readdir(dir)).toEqual([]);

    // Out of attempts where the failure ends the process (the embedded pipeline): the next start
    // sends the insert again.
    const failing = new SinkWriter(journaledStore(viewMissingStore(temp.store, 10), dir), silent, {
      maxAgeMs: 60_000,
      retry: { ...FAST_RETRY, attempts: 2 },
      failureEndsProcess: true,
    });
    const last = realisticMessages(60, { seed: 11, firstId: 5_000_000_000_000_000_000n });
    await failing.add({ output: { messages: last, events: [], deadLetters: [], recalls: [] } });
    await expect(failing.close()).rejects.toThrow();
    expect(await readdir(dir)).toHaveLength(1);
    expect(await replayJournal(temp.store, dir, silent)).toBe(1);
    // The sessions of that insert are recounted whole: its 60 messages and the earlier ones
    // (given up above, uncounted) of the same sessions; the other sessions stay as they were.
    const [touched] = await temp.store.query<{ n: string }>(
      `SELECT count() AS n FROM messages
       WHERE (tenant, staff_id, session_type, session_id) IN (SELECT tenant, staff_id, session_type, session_id FROM messages WHERE msgid IN {ids:Array(String)})`,
      { ids: last.map((m) => m.msgid) },
    );
    expect(Number(touched?.n)).toBeGreaterThan(60);
    expect(await counts(temp.store)).toEqual({ messages: 130, counted: Number(touched?.n) });
  });

  it('does not send an insert again once its token may have left the deduplication window', async () => {
    const sends: number[] = [];
    let now = 1_000;
    const clock = vi.spyOn(performance, 'now').mockImplementation(() => now);
    try {
      const inner = viewMissingStore(temp.store);
      const store = withInsert(temp.store, async (table, rows, options) => {
        if (table === 'messages' && rows.length > 0) {
          sends.push(rows.length);
          // The failed attempt took longer than the resend bound.
          now += 121_000;
        }
        await inner.insert(table, rows, options);
      });
      const writer = new SinkWriter(store, silent, { maxAgeMs: 60_000, retry: FAST_RETRY });
      await writer.add({ output: { messages: realisticMessages(40, { seed: 13 }), events: [], deadLetters: [], recalls: [] } });
      await writer.close();
    } finally {
      clock.mockRestore();
    }
    // Sent once; the retry looked up what is stored instead, found every message, sent none.
    expect(sends).toEqual([40]);
    expect(await counts(temp.store)).toEqual({ messages: 40, counted: 0 });
  });
});
