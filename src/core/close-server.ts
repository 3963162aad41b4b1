/**
 * Closing a fastify server without waiting for its clients' keep-alive connections.
 */
import type { Socket } from 'node:net';

import type { FastifyInstance } from 'fastify';

/** How often {@link closeServer} closes the connections that went idle since the last sweep. */
const SWEEP_MS = 50;

/** The open connections of each tracked server. */
const connections = new WeakMap<FastifyInstance['server'], Set<Socket>>();

/**
 * Remembers the connections of `app`'s server, so {@link closeServer} can also close those that
 * never sent a request. Node counts a connection as busy from the moment it opens (its headers
 * timeout is running), so `closeIdleConnections()` leaves it open until `headersTimeout` (60 s):
 * a client pool that opened a socket for a request it then aborted held a close that long. Call
 * right after creating the app, before it listens.
 */
export function trackConnections(app: FastifyInstance): void {
  const open = new Set<Socket>();
  connections.set(app.server, open);
  app.server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
}

/**
 * How long {@link closeServer} waits for requests in flight before it cuts every connection left:
 * a client that sent half a request and went silent would hold the close for ever (Node stops
 * enforcing its headers timeout once the server closes), and a drain has 30 s in all.
 */
export const CLOSE_GRACE_MS = 10_000;

/**
 * Stops listening, lets the requests in flight finish, and closes every connection once it is
 * idle. `app.close()` alone closes only the connections idle at the moment it is called: one that
 * is serving a request then stays open for the keep-alive timeout (72 s in fastify) after its
 * answer, which would hold a drain far past its 30 s. With {@link trackConnections}, connections
 * that never sent a byte are closed too (nothing of theirs is in flight). After `graceMs`, every
 * connection still open is closed, whatever it is doing.
 */
export async function closeServer(app: FastifyInstance, graceMs: number = CLOSE_GRACE_MS): Promise<void> {
  const open = connections.get(app.server);
  const sweep = setInterval(() => {
    app.server.closeIdleConnections();
    for (const socket of open ?? []) if (socket.bytesRead === 0) socket.destroy();
  }, SWEEP_MS);
  sweep.unref();
  const cut = setTimeout(() => {
    app.server.closeAllConnections();
  }, graceMs);
  cut.unref();
  try {
    await app.close();
  } finally {
    clearInterval(sweep);
    clearTimeout(cut);
  }
}
