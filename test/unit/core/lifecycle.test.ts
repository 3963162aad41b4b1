/**
 * The process lifecycle after the work is over: `finish` ends a process that something still
 * holds (a socket a library left open) with the run's exit code, instead of letting it hang,
 * and a drain that finished does not also hit the drain deadline.
 */
import { createServer, connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';

import pino from 'pino';
import { describe, expect, it, vi } from 'vitest';

import { installLifecycle } from '../../../src/core/lifecycle.ts';

function capture(): { log: pino.Logger; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      out.push(chunk.toString());
      done();
    },
  });
  return { log: pino({ level: 'info' }, stream), lines: () => out.join('').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('installLifecycle', () => {
  it('finish ends a process an open socket still holds, with the given code, and names what was open', async () => {
    // A connected socket left open, like a broker connection a client library forgot.
    const server = createServer(() => undefined);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    const socket: Socket = connect(address.port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const { log, lines } = capture();
    let listenersBefore = -1;
    const exited = new Promise<number>((resolve) => {
      const before = process.listenerCount('SIGTERM');
      const lifecycle = installLifecycle({ log, lingerMs: 50, exit: resolve });
      expect(process.listenerCount('SIGTERM')).toBe(before + 1);
      lifecycle.finish(3);
      // A repeated signal while it winds down is only logged (a handler is there, so a real
      // signal would not kill the process either); the handlers are gone once it exits.
      expect(process.listenerCount('SIGTERM')).toBe(before + 1);
      process.emit('SIGTERM');
      listenersBefore = before;
    });
    try {
      expect(await exited).toBe(3);
      expect(process.listenerCount('SIGTERM')).toBe(listenersBefore);
      expect(lines().some((l) => l['msg'] === 'Already finished; exiting.' && l['reason'] === 'SIGTERM')).toBe(true);
      const warning = lines().find((l) => l['msg'] === 'Work is over but open handles keep the process alive; exiting.');
      expect(warning?.['resources']).toContain('TCPSocketWrap');
    } finally {
      socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('finish never leaves a stop signal without a handler of its own, not even for a moment', async () => {
    // Removing the last listener restores the signal's default action: a SIGTERM arriving then
    // (npx forwarding one more) killed a process that had finished its work.
    const { log } = capture();
    const before = process.listenerCount('SIGTERM');
    const seen: number[] = [];
    const off = process.off.bind(process);
    const spy = vi.spyOn(process, 'off').mockImplementation((event, listener) => {
      off(event, listener);
      if (event === 'SIGTERM') seen.push(process.listenerCount('SIGTERM'));
      return process;
    });
    let exited: (code: number) => void = () => undefined;
    const done = new Promise<number>((resolve) => {
      exited = resolve;
    });
    try {
      const lifecycle = installLifecycle({ log, lingerMs: 20, exit: (code) => { exited(code); } });
      lifecycle.finish(0);
      expect(await done).toBe(0);
    } finally {
      spy.mockRestore();
    }
    // Each removal while it finished left one of msgpipe's own handlers in place; the last
    // came after the exit.
    expect(seen).toEqual([before + 1, before]);
  });

  it('finish after a stop signal cancels the drain deadline: the run code is the exit code, not 70', async () => {
    const { log } = capture();
    const codes: number[] = [];
    let settle: () => void = () => undefined;
    const both = new Promise<void>((resolve) => { settle = resolve; });
    const lifecycle = installLifecycle({
      log,
      drainTimeoutMs: 100,
      lingerMs: 20,
      exit: (code) => {
        codes.push(code);
        settle();
      },
    });
    lifecycle.stop('test');
    expect(lifecycle.signal.aborted).toBe(true);
    lifecycle.finish(0);
    await both;
    // Past the drain deadline too: only the finish exit came.
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(codes).toEqual([0]);
  });
});
