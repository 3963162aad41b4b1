import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';

import { closeServer } from '../../../src/core/close-server.ts';

describe('closeServer', () => {
  it('lets a request in flight finish, then closes its keep-alive connection instead of waiting out the timeout', async () => {
    // A keep-alive timeout far longer than the test's: app.close() alone would wait for it.
    const app = Fastify({ keepAliveTimeout: 120_000 });
    let release: () => void = () => undefined;
    const started = new Promise<void>((resolveStarted) => {
      app.get('/slow', async () => {
        resolveStarted();
        await new Promise<void>((resolve) => {
          release = resolve;
        });
        return { done: true };
      });
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;

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
});
