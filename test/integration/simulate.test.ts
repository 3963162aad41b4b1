/** `msgpipe simulate`: what it prints is a configuration that loads, and a failed start ends the process. */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

import { parseConfig } from '../../src/core/config.ts';
import { BIN, ROOT, startMsgpipe, waitFor } from '../helpers/msgpipe.ts';

describe('msgpipe simulate', () => {
  it('prints sources that load as configuration as they are, and stops with exit 0', async () => {
    const proc = startMsgpipe(['simulate', '--port', '0', '--messages', '10'], { MSGPIPE_LOG_LEVEL: 'warn' });
    try {
      await waitFor(() => proc.stdout().includes('Press Ctrl-C to stop.'), 20_000, 'the simulators to start');
      const text = proc.stdout();
      const block = text.slice(text.indexOf('sources:'), text.indexOf('Press Ctrl-C to stop.'));
      const config = parseConfig({ tenants: [{ id: 'demo', secret: 's' }], ...(parse(block) as object) });
      expect(config.sources.map((s) => s.type)).toEqual(['gewe', 'videosapi', 'syncfinder', 'yunhu']);
    } finally {
      proc.child.kill('SIGTERM');
    }
    expect(await proc.exited).toBe(0);
  }, 40_000);

  it('stops with exit 0 when the stop signal comes again and again while it ends', async () => {
    const proc = startMsgpipe(['simulate', '--port', '0', '--messages', '10'], { MSGPIPE_LOG_LEVEL: 'warn' });
    await waitFor(() => proc.stdout().includes('Press Ctrl-C to stop.'), 20_000, 'the simulators to start');
    // As npx forwarding a Ctrl-C once more, or a group signal followed by a supervisor's.
    for (let i = 0; i < 40 && proc.child.exitCode === null && proc.child.signalCode === null; i++) {
      proc.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(await proc.exited).toBe(0);
  }, 40_000);

  /**
   * `msgpipe simulate` under `sh -c <script>` (its "$0" "$@" the command) with npm's environment,
   * its output (both pipes) collected; `closed` settles once every process holding them ended.
   */
  function underNpmShell(script: string): { child: ChildProcess; out: () => string; closed: Promise<unknown> } {
    const child = spawn('sh', ['-c', script, process.execPath, BIN, 'simulate', '--port', '0', '--messages', '10'], {
      cwd: ROOT,
      env: { ...process.env, npm_command: 'exec', MSGPIPE_LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { out += c.toString(); });
    return { child, out: () => out, closed: Promise.all([once(child.stdout, 'close'), once(child.stderr, 'close')]) };
  }

  it('started through npm, stops when the shell npm started for it ends', async () => {
    // npx runs `sh -c msgpipe …` and passes a stop signal to that shell only, which dies of it.
    const { child, out, closed } = underNpmShell('"$0" "$@"; true');
    await waitFor(() => out().includes('Press Ctrl-C to stop.'), 20_000, 'the simulators to start');
    child.kill('SIGTERM');
    const outcome = await Promise.race([closed.then(() => 'ended'), new Promise((resolve) => setTimeout(() => { resolve('still running'); }, 15_000))]);
    expect(outcome).toBe('ended');
    expect(out()).toMatch(/"reason":"parent exited".*Stopping: draining in-flight work/);
  }, 40_000);

  it('started through npm but detached by setsid, goes on after the shell ends', async () => {
    const { child, out, closed } = underNpmShell('setsid "$0" "$@" & echo "pid $!"; sleep 1');
    await waitFor(() => out().includes('Press Ctrl-C to stop.') && /pid \d+/.test(out()), 20_000, 'the simulators to start');
    const pid = Number(/pid (\d+)/.exec(out())?.[1]);
    await once(child, 'exit');
    // The shell is gone; two parent checks later the detached process still runs.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(() => process.kill(pid, 0)).not.toThrow();
    expect(out()).not.toContain('parent exited');
    process.kill(pid, 'SIGTERM');
    await closed;
  }, 40_000);

  it('exits 1 when the second simulator cannot listen, instead of staying up with the first', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const taken = (blocker.address() as AddressInfo).port;
    try {
      // The Yunhu simulator takes the port after --port.
      const proc = startMsgpipe(['simulate', '--port', String(taken - 1), '--messages', '10'], { MSGPIPE_LOG_LEVEL: 'warn' });
      const outcome = await Promise.race([proc.exited, new Promise((resolve) => setTimeout(() => { resolve('still running'); }, 15_000))]);
      if (outcome === 'still running') proc.child.kill('SIGKILL');
      expect(outcome).toBe(1);
      expect(proc.stderr()).toContain('EADDRINUSE');
    } finally {
      blocker.close();
    }
  }, 40_000);
});
