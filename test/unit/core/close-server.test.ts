import { connect } from 'node:net';

import Fastify, { type FastifyInstance } from 'fastify';
import { describe, expect, it } from 'vitest';

import { closeServer, trackConnections } from '../../../src/core/close-server.ts';

/**
 * A listening server with a 120 s keep-alive whose `GET /slow` answers only once `release()` is
 * called; `started` settles when that request arrives.
 */
async function slowServer(track: boolean): Promise<{ app: FastifyInstance; port: number; started: Promise<void>; release: () => void }> {
  const app = Fastify({ keepAliveTimeout: 120_000 });
  if (track) trackConnections(app);
  let releaseRequest: () => void = () => undefined;
  const started = new Promise<void>((resolveStarted) => {
    app.get('/slow', async () => {
      resolveStarted();
      await new Promise<void>((resolve) => {
        releaseRequest = resolve;
      });
      return { done: true };
    });
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;
  return { app, port, started, release: () => { releaseRequest(); } };
}

describe('closeServer', () => {
  it('lets a request in flight finish, then closes its keep-alive connection instead of waiting out the timeout', async () => {
    // A keep-alive timeout far longer than the test's: app.close() alone would wait for it.
    const { app, port, started, release } = await slowServer(false);

    const answer = fetch(`http://127.0.0.1:${String(port)}/slow`).then(async (r) => ({ status: r.status, body: await r.json() }));
    await started;
    let closed = false;
    const closing = closeServer(app).then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 200));
    // The request is still being served: the server waits for it.
    expect(closed).toBe(false);
    release();
    await expect(answer).resolves.toEqual({ status: 200, body: { done: true } });
    await closing;
    expect(app.server.listening).toBe(false);
    await new Promise<number>((resolve, reject) => {
      app.server.getConnections((err, count) => {
        if (err) reject(err);
        else resolve(count);
      });
    }).then((count) => {
      expect(count).toBe(0);
    });
  }, 10_000);

  it('closes a tracked connection that never sent a request, while a request in flight still finishes', async () => {
    // Node counts a fresh connection as busy until its headers timeout; the test's timeout is far shorter.
    const { app, port, started, release } = await slowServer(true);

    // A client that opened a connection and never wrote to it (an aborted request's pooled socket).
    const silent = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => silent.once('connect', () => { resolve(); }));
    const silentClosed = new Promise<void>((resolve) => silent.once('close', () => { resolve(); }));
    silent.on('error', () => undefined);
    const answer = fetch(`http://127.0.0.1:${String(port)}/slow`).then(async (r) => ({ status: r.status, body: await r.json() }));
    await started;

    const closing = closeServer(app);
    // The silent connection is closed by the server while the request is still being served.
    await silentClosed;
    release();
    await expect(answer).resolves.toEqual({ status: 200, body: { done: true } });
    await closing;
    expect(app.server.listening).toBe(false);
  }, 10_000);

  it('cuts a connection that sent half a request and went silent once the grace period is over', async () => {
    const app = Fastify();
    trackConnections(app);
    app.get('/', () => ({ ok: true }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    const cut = new Promise<void>((resolve) => socket.once('close', () => { resolve(); }));
    socket.on('error', () => undefined);
    // Headers begun, never finished: neither idle nor silent for the sweep.
    socket.write('GET / HTTP/1.1\r\nHost: x\r\n');
    await new Promise((resolve) => setTimeout(resolve, 100));
    let closed = false;
    const closing = closeServer(app, 500).then(() => {
      closed = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 250));
    // Within the grace period it is still waited for.
    expect(closed).toBe(false);
    await closing;
    await cut;
    expect(app.server.listening).toBe(false);
  }, 10_000);
});
