/**
 * `msgpipe sql` on the embedded store is read-only in the engine, not only by the statement's
 * first word: `WITH … INSERT …` starts like a read.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { BIN, ROOT, sql, withTempDir, writeConfig } from '../helpers/msgpipe.ts';

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
      // The repair of docs/operations.md: the rebuild runs, and the check finds nothing to repair.
      const rebuilt = await execFileAsync(process.execPath, [BIN, 'migrate', '--config', configFile, '--rebuild-sessions'], { cwd: ROOT, env });
      expect(rebuilt.stdout).toBe('sessions rebuilt: 0 sessions, 0 messages\n');
      const check = (/```sql\n(-- sessions whose count[\s\S]*?)```/.exec((await readFile(join(ROOT, 'docs', 'operations.md'), 'utf8'))))?.[1] ?? '';
      expect(check).toContain('FROM sessions');
      expect(await sql(configFile, check)).toEqual([]);
      // A mistyped log level is a usage error that names the variable, not a stack trace.
      const loud = execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, 'SELECT 1'], { cwd: ROOT, env: { ...env, MSGPIPE_LOG_LEVEL: 'loud' } });
      await expect(loud).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('MSGPIPE_LOG_LEVEL: "loud" is not a log level (use fatal, error,') as unknown });
    });
  }, 60_000);
});
