/**
 * Closing a fastify server without waiting for its clients' keep-alive connections.
 */
import type { FastifyInstance } from 'fastify';

/** How often {@link closeServer} closes the connections that went idle since the last sweep. */
const SWEEP_MS = 50;

/**
 * Stops listening, lets the requests in flight finish, and closes every connection once it is
 * idle. `app.close()` alone closes only the connections idle at the moment it is called: one that
 * is serving a request then stays open for the keep-alive timeout (72 s in fastify) after its
 * answer, which would hold a drain far past its 30 s.
 */
export async function closeServer(app: FastifyInstance): Promise<void> {
  const sweep = setInterval(() => {
    app.server.closeIdleConnections();
  }, SWEEP_MS);
  try {
    await app.close();
  } finally {
    clearInterval(sweep);
  }
}
