/**
 * `msgpipe run` with nothing to do: no source, no query API, no operations listener. It runs
 * until it is stopped, as it says, and a distributed process left with no role refuses to start.
 */
import { describe, expect, it } from 'vitest';

import { startMsgpipe, waitFor, withTempDir, writeConfig } from '../helpers/msgpipe.ts';

const running = Symbol('running');

describe('msgpipe run with nothing to do', () => {
  it('runs until SIGTERM, then closes the store and exits 0', async () => {
    await withTempDir('idle-run', async (dir) => {
      const config = { clickhouse: { path: `${dir}/ch` }, metrics: { enabled: false } };
      const proc = startMsgpipe(['run', '--config', await writeConfig(dir, config)]);
      try {
        await waitFor(() => proc.stderr().includes('Transforming pages in ') || proc.child.exitCode !== null, 60_000, 'the pipeline to start');
        // Nothing holds the event loop but the wait for the stop: Node ended it with exit 13.
        const state = await Promise.race([proc.exited, new Promise((resolve) => setTimeout(resolve, 3000, running))]);
        expect(state, proc.stderr().slice(-2000)).toBe(running);
      } finally {
        proc.child.kill('SIGTERM');
      }
      expect(await proc.exited, proc.stderr().slice(-2000)).toBe(0);
      expect(proc.stderr()).toContain('Pipeline stopped; everything fetched is stored.');
    });
  });

  it('refuses distributed roles that would all sit idle: query without a tenant, ingest without a source (exit 2)', async () => {
    await withTempDir('idle-run-query', async (dir) => {
      // Refused before any broker is asked: the address is never used.
      const config = { kafka: { brokers: ['127.0.0.1:9'] }, clickhouse: { path: `${dir}/ch` }, metrics: { enabled: false } };
      const file = await writeConfig(dir, config);
      for (const roles of ['query', 'query,query', 'ingest,query']) {
        const proc = startMsgpipe(['run', '--config', file, '--role', roles]);
        expect(await proc.exited, roles).toBe(2);
        expect(proc.stderr()).toContain('nothing to run');
      }
      const both = startMsgpipe(['run', '--config', file, '--role', 'ingest,query']);
      await both.exited;
      expect(both.stderr()).toContain('the ingest role needs a source; the query role needs a tenant');
    });
  });
});
