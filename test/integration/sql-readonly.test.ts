/**
 * `msgpipe sql` on the embedded store is read-only in the engine, not only by the statement's
 * first word: `WITH … INSERT …` starts like a read. `migrate` also sends an insert left in the
 * journal again, and `--rebuild-sessions` runs.
 */
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { JsonLines, openStore } from '../../src/sink/clickhouse.ts';

import { journalDir } from '../../src/sink/journal.ts';
import { encodeMessageLine, MESSAGE_COLUMNS, messageLineEnd } from '../../src/sink/messages.ts';
import { BIN, ROOT, sql, withTempDir, writeConfig } from '../helpers/msgpipe.ts';
import { realisticMessages } from '../unit/sink/helpers.ts';

const execFileAsync = promisify(execFile);

describe('msgpipe sql', () => {
  it('refuses a write dressed as a read and runs reads with settings, comments and semicolons in literals', async () => {
    await withTempDir('msgpipe-sql-', async (dir) => {
      const configFile = await writeConfig(dir, {
        tenants: [{ id: 'corp1', secret: 's3cret' }],
        sources: [{ type: 'gewe', name: 'g1', tenant: 'corp1', baseUrl: 'http://127.0.0.1:9', token: 't', appId: 'wx_g1' }],
        clickhouse: { path: `${dir}/ch` },
      });
      const env = { ...process.env, MSGPIPE_LOG_LEVEL: 'warn' };
      await execFileAsync(process.execPath, [BIN, 'migrate', '--config', configFile], { cwd: ROOT, env });
      const write = execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, "WITH 'x' AS t INSERT INTO cursors (source, cursor) SELECT 'sneaked', 'c'"], { cwd: ROOT, env });
      await expect(write).rejects.toMatchObject({ stderr: expect.stringContaining('readonly') as unknown });
      expect(await sql(configFile, "SELECT count() AS n FROM cursors WHERE source = 'sneaked' SETTINGS max_threads = 1")).toEqual([{ n: '0' }]);
      // A query that starts with a -- comment, holds ';' in a literal and ends in '; -- …' is one read.
      const { stdout } = await execFileAsync(
        process.execPath,
        [BIN, 'sql', "-- daily\nSELECT ';' AS semi, count() AS n FROM cursors; -- done", '--config', configFile, '--format', 'jsonl'],
        { cwd: ROOT, env },
      );
      expect(stdout).toBe('{"semi":";","n":"0"}\n');
      // Columns come out in the query's order, each of them.
      const ordered = await execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, '-f', 'jsonl', "SELECT 'a' AS x, 10, 5, 1, 1"], { cwd: ROOT, env });
      expect(ordered.stdout).toBe('{"x":"a","10":10,"5":5,"1":1,"1":1}\n');
      // Without a configuration and without a store at the default path, nothing is created.
      const bare = join(dir, 'bare');
      await mkdir(bare);
      const noConfig: NodeJS.ProcessEnv = { ...env };
      delete noConfig['MSGPIPE_CONFIG'];
      const none = execFileAsync(process.execPath, [BIN, 'sql', 'SELECT 1'], { cwd: bare, env: noConfig });
      await expect(none).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('clickhouse.path: no store at ./data/clickhouse') as unknown });
      expect(await readdir(bare)).toEqual([]);
      // `--config "$UNSET"` is a mistake, not the defaults: `migrate` makes no store here.
      const empty = execFileAsync(process.execPath, [BIN, 'migrate', '--config', ''], { cwd: bare, env: noConfig });
      await expect(empty).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--config: the path is empty') as unknown });
      expect(await readdir(bare)).toEqual([]);
      // A read that would write a file is refused before it runs.
      const outfile = join(dir, 'out.txt');
      const into = execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, `SELECT 1 INTO OUTFILE '${outfile}'`], { cwd: ROOT, env });
      await expect(into).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('INTO OUTFILE writes a file') as unknown });
      await expect(readFile(outfile)).rejects.toMatchObject({ code: 'ENOENT' });
      // A killed process left an insert in the journal whose messages were stored and not
      // counted: the next start (here `migrate`), before anything else writes, recounts the
      // sessions of its rows (src/sink/journal.ts).
      const bodyOf = (seed: number): Buffer => {
        const rows = realisticMessages(20, { seed, firstId: 5_000_000_000_000_000_000n + BigInt(seed) * 1000n });
        return Buffer.concat(rows.flatMap((r) => [encodeMessageLine(r), messageLineEnd(undefined)]));
      };
      const entry = (seed: number, token: string): Buffer => {
        const body = bodyOf(seed);
        const header = { format: 'msgpipe-insert-journal/1', table: 'messages', token, columns: MESSAGE_COLUMNS, rows: 20, bytes: body.length };
        return Buffer.concat([Buffer.from(`${JSON.stringify(header)}\n`), body]);
      };
      const killed = await openStore({ path: `${dir}/ch`, database: 'msgpipe' }, pino({ level: 'silent' }));
      try {
        await killed.command('DETACH TABLE sessions_mv');
        await killed.insert('messages', new JsonLines(bodyOf(9), 20), { columns: MESSAGE_COLUMNS, dedupToken: 'messages:left' });
        await killed.command('ATTACH TABLE sessions_mv');
      } finally {
        await killed.close();
      }
      expect(await sql(configFile, 'SELECT (SELECT count() FROM messages) AS m, (SELECT sum(msg_count) FROM sessions) AS s')).toEqual([{ m: '20', s: '0' }]);
      const journal = journalDir(`${dir}/ch`, 'msgpipe');
      // Another database on the same path has its own journal, which this start leaves alone.
      const otherJournal = journalDir(`${dir}/ch`, 'other');
      await mkdir(journal, { recursive: true });
      await mkdir(otherJournal, { recursive: true });
      await writeFile(join(journal, 'left.insert'), entry(9, 'messages:left'));
      await writeFile(join(otherJournal, 'theirs.insert'), entry(10, 'messages:theirs'));
      // A file an earlier build left where every database shared the journal: named, left alone.
      const legacy = join(`${dir}/ch`, 'msgpipe-insert-journal', 'old.insert');
      await writeFile(legacy, entry(11, 'messages:old'));
      const replayed = await execFileAsync(process.execPath, [BIN, 'migrate', '--config', configFile], { cwd: ROOT, env });
      expect(replayed.stderr).toContain('Recounted the sessions of an insert left unfinished by the last run');
      expect(replayed.stderr).toContain('name no database and are left alone');
      expect(replayed.stderr).toContain(legacy);
      expect(await readFile(legacy)).toEqual(entry(11, 'messages:old'));
      expect(await readdir(journal)).toEqual([]);
      expect(await readdir(otherJournal)).toEqual(['theirs.insert']);
      expect(await sql(configFile, 'SELECT (SELECT count() FROM messages) AS m, (SELECT sum(msg_count) FROM sessions) AS s')).toEqual([{ m: '20', s: '20' }]);
      // The repair of docs/operations.md: the rebuild runs, and the check finds nothing to repair.
      const rebuilt = await execFileAsync(process.execPath, [BIN, 'migrate', '--config', configFile, '--rebuild-sessions'], { cwd: ROOT, env });
      expect(rebuilt.stdout).toMatch(/^sessions rebuilt: \d+ sessions, 20 messages\n$/);
      const check = (/```sql\n(-- sessions whose count[\s\S]*?)```/.exec((await readFile(join(ROOT, 'docs', 'operations.md'), 'utf8'))))?.[1] ?? '';
      expect(check).toContain('LEFT JOIN sessions');
      expect(await sql(configFile, check)).toEqual([]);
      // A session whose view part was lost altogether is missing from sessions: the check finds it.
      const [lost] = await sql<{ session_id: string; n: string }>(configFile, 'SELECT session_id, count() AS n FROM messages GROUP BY session_id ORDER BY session_id LIMIT 1');
      const store = await openStore({ path: `${dir}/ch`, database: 'msgpipe' }, pino({ level: 'silent' }));
      try {
        await store.command('ALTER TABLE sessions_agg DELETE WHERE session_id = {sid:String} SETTINGS mutations_sync = 1', { sid: lost!.session_id });
      } finally {
        await store.close();
      }
      expect(await sql(configFile, check)).toEqual([{ session_id: lost!.session_id, msg_count: '0', n: lost!.n }]);
      await execFileAsync(process.execPath, [BIN, 'migrate', '--config', configFile, '--rebuild-sessions'], { cwd: ROOT, env });
      expect(await sql(configFile, check)).toEqual([]);
      // A mistyped log level is a usage error that names the variable, not a stack trace.
      const loud = execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, 'SELECT 1'], { cwd: ROOT, env: { ...env, MSGPIPE_LOG_LEVEL: 'loud' } });
      await expect(loud).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('MSGPIPE_LOG_LEVEL: "loud" is not a log level (use fatal, error,') as unknown });
      // What the engine refuses is one line, with its error name, and no stack.
      const unknown = await execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, 'SELECT * FROM nosuch'], { cwd: ROOT, env }).then(
        () => ({ code: 0, stderr: '' }),
        (err: unknown) => err as { code: number; stderr: string },
      );
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toMatch(/^msgpipe: ClickHouse query failed: Unknown table expression identifier 'nosuch'.*\(UNKNOWN_TABLE\)$/m);
      expect(unknown.stderr).not.toContain('"stack"');
      // A store directory that cannot be made says why.
      await writeFile(join(dir, 'file'), '');
      await writeFile(join(dir, 'under-file.yaml'), `clickhouse: {path: ${JSON.stringify(join(dir, 'file', 'ch'))}}\n`);
      const notDir = await execFileAsync(process.execPath, [BIN, 'migrate', '--config', join(dir, 'under-file.yaml')], { cwd: ROOT, env }).then(
        () => ({ code: 0, stderr: '' }),
        (err: unknown) => err as { code: number; stderr: string },
      );
      expect(notDir.code).toBe(1);
      expect(notDir.stderr).toContain("msgpipe: The embedded store's directory (clickhouse.path) cannot be used: ENOTDIR");
      // Listed with the file's own problems, not only once the file is right.
      await writeFile(join(dir, 'bad.yaml'), 'clickhouse: {database: "no-dashes"}\n');
      const both = execFileAsync(process.execPath, [BIN, 'sql', '--config', join(dir, 'bad.yaml'), 'SELECT 1'], { cwd: ROOT, env: { ...env, MSGPIPE_LOG_LEVEL: 'loud' } });
      const failed = (await both.then(() => ({ stderr: '' }), (err: unknown) => err)) as { stderr: string };
      expect(failed.stderr).toContain('clickhouse.database');
      expect(failed.stderr).toContain('MSGPIPE_LOG_LEVEL: "loud"');
      // A query refused is listed with them.
      const three = execFileAsync(process.execPath, [BIN, 'sql', '--config', join(dir, 'bad.yaml'), 'DROP TABLE messages'], { cwd: ROOT, env: { ...env, MSGPIPE_LOG_LEVEL: 'loud' } });
      const all = (await three.then(() => ({ stderr: '' }), (err: unknown) => err)) as { stderr: string };
      expect(all.stderr).toMatch(/- sql: only SELECT[^\n]*\n.*clickhouse\.database[\s\S]*MSGPIPE_LOG_LEVEL: "loud"/);
      // Nor does sql write to open the store: a mistyped database is an error, not a new one.
      await writeFile(join(dir, 'typo.yaml'), `clickhouse: {path: ${JSON.stringify(`${dir}/ch`)}, database: msgpipe_typo}\n`);
      await expect(sql(join(dir, 'typo.yaml'), 'SELECT 1')).rejects.toMatchObject({
        code: 2,
        stderr: expect.stringContaining('clickhouse.database: there is no database "msgpipe_typo"') as unknown,
      });
      expect(await sql(configFile, "SELECT count() AS n FROM system.databases WHERE name = 'msgpipe_typo'")).toEqual([{ n: '0' }]);
      // sql and migrate read the store's section alone: the secrets and tokens of a production
      // file need not be in their environment.
      await writeFile(
        join(dir, 'prod.yaml'),
        [
          'tenants: [{id: corp1, secret: "${MSGPIPE_TEST_UNSET_SECRET}"}]',
          'sources: [{type: gewe, name: g1, tenant: corp1, baseUrl: "${MSGPIPE_TEST_UNSET_URL}", token: "${MSGPIPE_TEST_UNSET_TOKEN}", appId: wx_g1}]',
          `clickhouse: {path: ${JSON.stringify(`${dir}/ch`)}}`,
          '',
        ].join('\n'),
      );
      await execFileAsync(process.execPath, [BIN, 'migrate', '--config', join(dir, 'prod.yaml')], { cwd: ROOT, env });
      expect(await sql(join(dir, 'prod.yaml'), 'SELECT count() AS m FROM messages')).toEqual([{ m: '20' }]);
    });
  }, 60_000);
});
