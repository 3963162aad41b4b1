/**
 * The hold of stop signals while the command line loads (src/core/early-signals.ts): a signal
 * that came while the process ran synchronous work, and had not yet reached its handler, still
 * ends a command without a lifecycle when the hold is released. Node 22 and 24 load msgpipe's
 * modules that way, and `msgpipe sql` went on after a SIGTERM there.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ROOT } from '../../helpers/msgpipe.ts';

const FIXTURE = join(ROOT, 'test', 'fixtures', 'lifecycle', 'held-during-sync-work.mts');

function runFixture(args: readonly string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.on('error', reject);
    child.on('close', (code, signal) => { resolve({ code, signal, stdout }); });
  });
}

describe('releaseStopSignalsToDefault', () => {
  it('ends the process by a signal that came during synchronous work and had not reached the hold yet', async () => {
    expect(await runFixture([])).toEqual({ code: null, signal: 'SIGTERM', stdout: '' });
  });

  it('lets the command go on when no signal came', async () => {
    expect(await runFixture(['--no-signal'])).toEqual({ code: 0, signal: null, stdout: 'went on\n' });
  });
});
