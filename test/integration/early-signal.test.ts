/**
 * A stop signal while the command line still loads (about 0.4 s of modules before a command
 * installs its lifecycle) stops a long-running command, exit 0, instead of killing the process
 * with the signal's default action; a command without a lifecycle still ends by the signal.
 *
 * The signal is sent when bin/msgpipe.js starts loading the CLI's main module (a resolve hook
 * preloaded into the process says so on stderr): the start of the ~0.4 s load, and the moment
 * the process used to die.
 */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { describe, expect, it } from 'vitest';

import { type MsgpipeProcess, ROOT, startMsgpipe, withTempDir, writeConfig } from '../helpers/msgpipe.ts';

const ANNOUNCE = pathToFileURL(join(ROOT, 'test', 'fixtures', 'lifecycle', 'announce-main-load.mjs')).href;
const LOADING = 'msgpipe-test: loading the main module';

/** `msgpipe <args>`, with SIGTERM sent the moment bin/msgpipe.js starts loading the CLI. */
async function termWhileLoading(args: readonly string[]): Promise<MsgpipeProcess> {
  const proc = startMsgpipe(args, { NODE_OPTIONS: `--import=${ANNOUNCE}` });
  const deadline = Date.now() + 30_000;
  while (!proc.stderr().includes(LOADING)) {
    if (proc.child.exitCode !== null || Date.now() > deadline) throw new Error(`msgpipe never started loading its main module\n${proc.stderr().slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 2));
  }
  proc.child.kill('SIGTERM');
  return proc;
}

describe('a stop signal while msgpipe loads', () => {
  it('stops `msgpipe demo`, exit 0, with the signal logged as held', async () => {
    await withTempDir('early-signal', async (dir) => {
      const proc = await termWhileLoading(['demo', '--data', join(dir, 'demo'), '--duration', '60', '--query-port', '0']);
      expect(await proc.exited, proc.stderr().slice(-2000)).toBe(0);
      expect(proc.stderr()).toContain('A stop signal came while msgpipe loaded.');
    });
  });

  it('still ends `msgpipe sql` by the signal, which has no drain of its own', async () => {
    await withTempDir('early-signal-sql', async (dir) => {
      const configFile = await writeConfig(dir, { clickhouse: { path: join(dir, 'ch') } });
      const proc = await termWhileLoading(['sql', '--config', configFile, 'SELECT 1']);
      expect(await proc.exited).toBe('SIGTERM');
    });
  });
});
