/**
 * The operations listener (DESIGN §8): `GET /metrics` (Prometheus text), `GET /healthz`
 * (the process is alive) and `GET /readyz` (started and not draining).
 *
 * It is its own small fastify server on `metrics.host:metrics.port`, so every role (ingest,
 * transform, sink, query) has it whether or not it serves the query API; the query server may
 * also mount the same routes with {@link registerOpsRoutes}. Metrics never stop data: when the
 * port is taken the failure is logged and the pipeline runs on without the listener.
 */
import { fastify, type FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

import type { MetricsConfig } from './config.ts';
import { Readiness } from './health.ts';
import { Metrics } from './metrics.ts';
import { closeServer, trackConnections } from '../core/close-server.ts';

export interface OpsDeps {
  readonly metrics: Metrics;
  readonly readiness: Readiness;
}

/** Adds `GET /metrics`, `/healthz` and `/readyz` to a fastify instance (own listener or the query server). */
export function registerOpsRoutes(app: FastifyInstance, deps: OpsDeps): void {
  const { metrics, readiness } = deps;
  app.get('/metrics', async (_request, reply) => {
    const text = await metrics.text();
    return reply.header('content-type', metrics.registry.contentType).send(text);
  });
  app.get('/healthz', (_request, reply) => reply.send({ status: 'ok' }));
  app.get('/readyz', async (_request, reply) => {
    const state = readiness.state();
    const status = state.ready ? 'ready' : state.draining ? 'draining' : 'starting';
    return reply.code(state.ready ? 200 : 503).send({ status, waiting: state.waiting });
  });
}

/** A running operations listener. */
const NO_SERVER: OpsServer = { url: undefined, close: () => Promise.resolve() };

/**
 * How long closing the listener waits for requests in flight. Its answers take milliseconds, and
 * it closes last, after the drain and the query API's close, within the same 30 s: a client
 * that sent half a request here must not hold the exit for the 10 s a query request gets.
 */
const OPS_CLOSE_GRACE_MS = 1000;

export interface OpsServer {
  /** `http://host:port` actually bound, `undefined` when disabled or the port was taken. */
  readonly url: string | undefined;
  close(): Promise<void>;
}

/**
 * Starts the listener described by `config`. Never throws for a busy port or a bad address:
 * it logs the failure and returns a server whose `url` is `undefined`.
 */
export async function startOpsServer(config: MetricsConfig, deps: OpsDeps, log: Logger): Promise<OpsServer> {
  if (!config.enabled) return NO_SERVER;
  const app = fastify({ logger: false });
  trackConnections(app);
  registerOpsRoutes(app, deps);
  try {
    await app.listen({ host: config.host, port: config.port });
  } catch (err) {
    log.error({ err, host: config.host, port: config.port }, 'Operations listener could not start; running without /metrics and health checks.');
    await app.close();
    return NO_SERVER;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `http://${host}:${String(port)}`;
  log.info({ url }, 'Operations listener started.');
  return { url, close: () => closeServer(app, OPS_CLOSE_GRACE_MS) };
}

/** Everything a command needs for operations: metrics, readiness and the listener serving them. */
export interface Ops extends OpsDeps {
  readonly server: OpsServer;
}

/** Creates the process's metrics and readiness and starts the listener (when enabled). */
export async function startOps(config: MetricsConfig, log: Logger): Promise<Ops> {
  const metrics = new Metrics();
  const readiness = new Readiness();
  const server = await startOpsServer(config, { metrics, readiness }, log.child({ component: 'ops' }));
  return { metrics, readiness, server };
}
