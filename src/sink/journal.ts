/**
 * The insert journal of the embedded store: every INSERT into `messages` is on disk until
 * ClickHouse has taken it, so a restart after a crash knows which sessions it may have left
 * counted wrongly (ADR 0019).
 *
 * Why: an INSERT into `messages` commits the table's part before `sessions_mv` commits the part
 * it derives for `sessions_agg`; the two are not one transaction. A process killed between the
 * two (kill -9, the OOM killer) left those messages stored but not counted, and the restarted
 * writer, finding them stored, never sent them again: the session's `msg_count` stayed low.
 * Within a process, the writer repairs a failed insert by sending it again with its token (the
 * table's part is a duplicate, the view's part goes in if missing). Across a kill that is not
 * enough: ClickHouse writes a part's deduplication record before renaming the part, so a kill
 * between the two keeps a record without its part, and the token then drops the rows it should
 * store. {@link replayJournal} therefore recounts the sessions of the rows kept here.
 *
 * Each insert is one file, `<database>/<sha256 of table and token>.insert`: a JSON header line (table,
 * token, columns, rows, bytes), then the body as sent. It is written to a temporary name and
 * renamed, so a file under its final name is whole. It goes when the insert succeeds, or when
 * the writer gives it up while the process goes on ({@link Store.forget}); after a failed insert
 * it stays, because the writer sends the same rows again after its backoff, and a process that
 * dies in the meantime leaves it to {@link replayJournal} at the next start. The body is kept
 * as sent; the replay reads only the sessions of its rows.
 *
 * Durability is that of the engine's own parts: no fsync (ClickHouse does not fsync a part by
 * default either), so a power cut may lose both, or leave a file that is not whole; a killed
 * process loses neither.
 */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';

import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import { retry, type RetryPolicy } from '../core/retry.ts';
import { type InsertOptions, JsonLines, type Store, wrapStore } from './clickhouse.ts';
import { MESSAGES_TABLE } from './messages.ts';
import { recountSessions, type SessionKey } from './sessions-rebuild.ts';

/** Tables whose inserts are journaled: those a materialized view reads. */
const JOURNALED = new Set([MESSAGES_TABLE]);

const FORMAT = 'msgpipe-insert-journal/1';
const SUFFIX = '.insert';
const TEMP_SUFFIX = '.tmp';
const DAMAGED_SUFFIX = '.damaged';

/** File system errors that may pass on their own (a full disk, too many open files). */
const TRANSIENT_IO = new Set(['ENOSPC', 'EDQUOT', 'EMFILE', 'ENFILE', 'EAGAIN', 'EBUSY', 'EIO']);

/** Where the journals of an embedded store's data directory live, one directory per database. */
function journalRoot(dataPath: string): string {
  return join(dataPath, 'msgpipe-insert-journal');
}

/**
 * The journal of one database inside an embedded store's data directory. Each database has its
 * own: a start configured for another database on the same path must not send an insert there,
 * nor take it away from the database it was made for.
 */
export function journalDir(dataPath: string, database: string): string {
  return join(journalRoot(dataPath), database);
}

/**
 * Journal files an earlier build left directly in `msgpipe-insert-journal/`, before each database
 * had a directory of its own: which database they belong to is not written in them, so they are
 * not sent anywhere; the caller says so.
 */
export async function legacyJournalFiles(dataPath: string): Promise<string[]> {
  const root = journalRoot(dataPath);
  try {
    const entries = await readdir(root, { withFileTypes: true });
    return entries.filter((e) => e.isFile() && e.name.endsWith(SUFFIX)).map((e) => join(e.parentPath, e.name));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw journalError(err, 'read', root);
  }
}

interface Header {
  readonly format: typeof FORMAT;
  readonly table: string;
  readonly token: string;
  readonly columns: readonly string[];
  readonly rows: number;
  readonly bytes: number;
}

function fileName(table: string, token: string): string {
  return createHash('sha256').update(table).update('\n').update(token).digest('hex') + SUFFIX;
}

/** The insert's journal file, or undefined for an insert the journal leaves alone. */
function entryName(table: string, rows: readonly object[] | JsonLines, options: InsertOptions): string | undefined {
  const token = options.dedupToken ?? '';
  // Without a token, sending the rows again would insert them twice; without rows, nothing is sent.
  if (!JOURNALED.has(table) || !(rows instanceof JsonLines) || rows.length === 0 || token === '' || options.columns === undefined) {
    return undefined;
  }
  return fileName(table, token);
}

function journalError(err: unknown, action: string, path: string): MsgpipeError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const reason = err instanceof Error ? err.message : String(err);
  return new MsgpipeError('MSGPIPE_ERR_JOURNAL', `Could not ${action} the insert journal file ${path}: ${reason}`, {
    retriable: TRANSIENT_IO.has(code),
    cause: err,
  });
}

/** Writes all of `bytes` to `fd`: one write(2) may take fewer bytes than it was given. */
function writeAll(fd: number, bytes: Uint8Array): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done);
}

/** A token of this process: 12 random hex digits. */
function newRun(): string {
  return randomBytes(6).toString('hex');
}

/**
 * `store` with every journaled insert on disk in `dir` until ClickHouse has taken it. Only
 * inserts of {@link JsonLines} with rows and a deduplication token are journaled (the writer's
 * inserts into `messages`).
 *
 * Every insert token, into any table, is prefixed with `run` (one per process start): the same
 * insert sent again by this process is still recognised, but a deduplication record a killed
 * process left without its part (see {@link replayJournal}) can never drop an insert of a later
 * run, which would otherwise lose the rows read again with the same token.
 */
export function journaledStore(store: Store, dir: string, run: string = newRun()): Store {
  const scoped = (options: InsertOptions): InsertOptions =>
    options.dedupToken === undefined || options.dedupToken === '' ? options : { ...options, dedupToken: `${run}/${options.dedupToken}` };
  return wrapStore(store, {
    insert: async (table, rows, given = {}) => {
      const options = scoped(given);
      const name = entryName(table, rows, options);
      if (name === undefined || !(rows instanceof JsonLines)) return store.insert(table, rows, options);
      const path = join(dir, name);
      const temp = path + TEMP_SUFFIX;
      const header: Header = { format: FORMAT, table, token: options.dedupToken ?? '', columns: options.columns ?? [], rows: rows.length, bytes: rows.body.length };
      // Synchronous: an 8 MiB batch is one write into the page cache, about 4 ms of this thread.
      // The promise API writes it in 512 KiB pieces through libuv's four threads, each piece
      // queued behind the engine's queries there: about 200 ms per batch on the critical path,
      // which took the e2e bench from 20k to 15k messages/s (docs/benchmarks.md).
      try {
        mkdirSync(dir, { recursive: true });
        const fd = openSync(temp, 'w');
        try {
          writeAll(fd, Buffer.from(JSON.stringify(header) + '\n', 'utf8'));
          writeAll(fd, rows.body);
        } finally {
          closeSync(fd);
        }
        renameSync(temp, path);
      } catch (err) {
        try {
          rmSync(temp, { force: true });
        } catch {
          // The write's error is the one to report; a temporary file left is dropped at the next start.
        }
        throw journalError(err, 'write', path);
      }
      await store.insert(table, rows, options);
      try {
        rmSync(path, { force: true });
      } catch (err) {
        throw journalError(err, 'remove', path);
      }
    },
    forget: (table, given = {}) => {
      const token = scoped(given).dedupToken ?? '';
      if (!JOURNALED.has(table) || token === '') return Promise.resolve();
      const path = join(dir, fileName(table, token));
      try {
        rmSync(path, { force: true });
      } catch (err) {
        return Promise.reject(journalError(err, 'remove', path));
      }
      return Promise.resolve();
    },
  });
}

async function fileOp<T>(op: Promise<T>, action: string, path: string): Promise<T> {
  try {
    return await op;
  } catch (err) {
    throw journalError(err, action, path);
  }
}

function readEntry(data: Buffer): { header: Header; body: Buffer } | undefined {
  const newline = data.indexOf(0x0a);
  if (newline < 0) return undefined;
  let header: Partial<Header>;
  try {
    header = JSON.parse(data.subarray(0, newline).toString('utf8')) as Partial<Header>;
  } catch {
    return undefined;
  }
  const body = data.subarray(newline + 1);
  const whole =
    header.format === FORMAT &&
    typeof header.table === 'string' &&
    typeof header.token === 'string' &&
    header.token !== '' &&
    Array.isArray(header.columns) &&
    typeof header.rows === 'number' &&
    header.bytes === body.length;
  return whole ? { header: header as Header, body } : undefined;
}

/** The sessions the rows of an entry belong to, or undefined when its body cannot be read as rows. */
function sessionsOf(header: Header, body: Buffer): SessionKey[] | undefined {
  const at = (name: string): number => header.columns.indexOf(name);
  const [tenant, staff, type, session] = [at('tenant'), at('staff_id'), at('session_type'), at('session_id')];
  if (tenant < 0 || staff < 0 || type < 0 || session < 0) return undefined;
  const keys: SessionKey[] = [];
  for (const line of body.toString('utf8').split('\n')) {
    if (line === '') continue;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      return undefined;
    }
    if (!Array.isArray(row)) return undefined;
    const values: readonly unknown[] = row;
    const [t, s, y, i] = [values[tenant], values[staff], values[type], values[session]];
    if (typeof t !== 'string' || typeof s !== 'string' || typeof y !== 'string' || typeof i !== 'string') return undefined;
    keys.push({ tenant: t, staff_id: s, session_type: y, session_id: i });
  }
  return keys.length === header.rows ? keys : undefined;
}

/**
 * Repairs what each insert left in `dir` may have left wrong, and removes it: the sessions its
 * rows belong to are recounted from the messages stored ({@link recountSessions}). Run before
 * the migrations and before anything writes: a message inserted while a session is recounted
 * could be counted twice, and a migration that replaced `sessions_mv` could no longer match the
 * file's columns.
 *
 * Why not send the insert again with its token: a process killed between ClickHouse writing a
 * part's deduplication record and renaming the part into place leaves the record without the
 * part. The same token sent again is then dropped as a duplicate (its messages are not stored,
 * yet the view counts them), and a view part lost that way can never be repaired by a token.
 * Messages of the insert that are not stored are not inserted here: their cursor was never
 * saved, so the pipeline reads them again and inserts them under a token of the new run.
 *
 * A file that is not a whole entry (a power cut can leave one: nothing is fsynced) is renamed
 * to `….damaged` with an error in the log, and `sessions` may need
 * `msgpipe migrate --rebuild-sessions`.
 *
 * @returns how many entries were repaired
 * @throws MsgpipeError MSGPIPE_ERR_CLICKHOUSE when ClickHouse refuses the recount after retries
 *   (the file is left in place); MSGPIPE_ERR_JOURNAL when a file cannot be read or removed, or
 *   its rows cannot be read as messages (left in place too)
 */
export async function replayJournal(store: Store, dir: string, log: Logger, policy?: RetryPolicy): Promise<number> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw journalError(err, 'read', dir);
  }
  let replayed = 0;
  for (const name of names) {
    const path = join(dir, name);
    // A temporary file was never renamed, so its insert was never sent.
    if (name.endsWith(TEMP_SUFFIX)) {
      await fileOp(rm(path, { force: true }), 'remove', path);
      continue;
    }
    if (!name.endsWith(SUFFIX)) continue;
    const entry = readEntry(await fileOp(readFile(path), 'read', path));
    if (entry === undefined) {
      await fileOp(rename(path, path + DAMAGED_SUFFIX), 'set aside', path);
      log.error(
        { file: path + DAMAGED_SUFFIX },
        'An insert journal file is not whole (a power cut?) and cannot be repaired: its messages may be stored without being counted in sessions. Check sessions (docs/operations.md) and run msgpipe migrate --rebuild-sessions if they disagree.',
      );
      continue;
    }
    const { header, body } = entry;
    const failure = (code: 'MSGPIPE_ERR_JOURNAL' | 'MSGPIPE_ERR_CLICKHOUSE', reason: string, cause?: unknown): MsgpipeError =>
      new MsgpipeError(
        code,
        `Could not repair the sessions of the unfinished insert in ${path}: ${reason}. It holds ${header.rows} rows of ${header.table}; ` +
          'to start without it, remove the file, then check sessions (docs/operations.md).',
        cause === undefined ? {} : { cause },
      );
    const sessions = header.table === MESSAGES_TABLE ? sessionsOf(header, body) : undefined;
    if (sessions === undefined) throw failure('MSGPIPE_ERR_JOURNAL', 'its rows cannot be read as messages');
    let recounted: number;
    try {
      recounted = await retry(() => recountSessions(store, sessions), policy === undefined ? {} : { policy });
    } catch (err) {
      if (!(err instanceof MsgpipeError && err.code === 'MSGPIPE_ERR_MIGRATION')) {
        throw failure('MSGPIPE_ERR_CLICKHOUSE', err instanceof Error ? err.message : String(err), err);
      }
      // No view, so no session to recount (a database dropped and made anew on the same path):
      // the migrations that follow create it, and what it counts from then on is right.
      await fileOp(rm(path, { force: true }), 'remove', path);
      log.warn({ file: path }, 'Removed an insert journal file: the database has no sessions_mv, so there are no sessions to recount.');
      continue;
    }
    await fileOp(rm(path, { force: true }), 'remove', path);
    replayed += 1;
    log.warn(
      { table: header.table, rows: header.rows, sessions: recounted, file: path },
      'Recounted the sessions of an insert left unfinished by the last run; its messages not stored are read again.',
    );
  }
  return replayed;
}
