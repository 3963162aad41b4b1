/**
 * The drain deadline bounds a stop even while the embedded engine runs a statement: the process
 * ends with 70 (src/bin/main.ts), not with a crash in the engine's exit hook or after the
 * statement's minutes (both were seen with process.exit).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { ROOT, withTempDir } from '../helpers/msgpipe.ts';

describe('drain deadline', () => {
  it('ends the process with 70 while the engine runs a long statement', async () => {
    await withTempDir('deadline', async (dir) => {
      const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'fixtures', 'lifecycle', 'deadline-during-statement.ts'), join(dir, 'ch'), '500'], {
        cwd: ROOT,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let output = '';
      child.stdout.on('data', (c: Buffer) => { output += c.toString(); });
      child.stderr.on('data', (c: Buffer) => { output += c.toString(); });
      const started = Date.now();
      const ended = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
        child.on('exit', (code, signal) => { resolve({ code, signal }); });
      });
      const outcome = await Promise.race([ended, new Promise<'still running'>((resolve) => setTimeout(() => { resolve('still running'); }, 60_000))]);
      // A process the deadline did not end would run the engine for minutes more.
      if (outcome === 'still running') child.kill('SIGKILL');
      expect(outcome, output.slice(-2000)).toEqual({ code: 70, signal: null });
      expect(output).toContain('Drain deadline passed');
      // Start-up (module load, engine open) plus the 300 ms until the stop and the 500 ms deadline.
      expect(Date.now() - started).toBeLessThan(30_000);
    });
  }, 120_000);
});
