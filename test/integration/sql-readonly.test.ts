/**
 * `msgpipe sql` on the embedded store is read-only in the engine, not only by the statement's
 * first word: `WITH … INSERT …` starts like a read.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { BIN, ROOT, sql, withTempDir, writeConfig } from '../helpers/msgpipe.ts';

const execFileAsync = promisify(execFile);

describe('msgpipe sql', () => {
  it('refuses a write dressed as a read and still runs reads with settings', async () => {
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
    });
  }, 60_000);
});
