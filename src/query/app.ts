/**
 * The query service: a fastify app serving the msg-server compatible API (DESIGN §6) over a
 * {@link Store}, and {@link startQueryService} which both modes use to run it.
 *
 * Every `/api/v1/chat-msg/*` request passes, in order:
 * 1. parameter collection (query string, or the JSON body of `POST /sync`); a repeated or
 *    non-scalar parameter is a 400, because its signed form would be ambiguous;
 * 2. the signature check with the tenant's own secret (401 for an unknown tenant, a missing,
 *    empty or wrong signature, all with the same message); in strict mode, or whenever a
 *    request carries them, `timestamp` (±300 s) and a single-use `nonce` are checked too;
 * 3. the tenant's rate limit (`query.rateLimit` requests per second; HTTP 429, code 429);
 * 4. the endpoint's zod schema (the seed's codes 1001–1006, else 400), then the handler.
 *
 * On the embedded store, whose engine runs one query at a time and is shared with the sink, store
 * reads run one at a time with a time limit ({@link READ_TIME_LIMIT_S}), and a read waits behind
 * at most {@link QueryServiceOptions.maxWaitingReads} others (429 beyond that): a burst of heavy
 * reads holds a sink insert for one read at most, not for all of them. A server runs reads side
 * by side under its own profile's limits.
 *
 * Internal failures answer `{code: 500, message: "internal server error"}`: no SQL, no stack.
 * Logs carry neither secrets nor signatures: request lines are logged without the query string.
 */
import { randomBytes } from 'node:crypto';

import rateLimit from '@fastify/rate-limit';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import pLimit from 'p-limit';
import type { Logger } from 'pino';

import type { Config } from '../core/config.ts';
import { type CallOptions, type QueryParams, type Store, wrapStore } from '../sink/clickhouse.ts';
import type { QueryContext } from './context.ts';
import { API_CODES, API_MESSAGES, ApiError, httpStatusOf, serializeEnvelope, type ApiCode } from './envelope.ts';
import { openApiDocument } from './openapi.ts';
import { parseParams, searchSchema, sessionMsgsSchema, sessionsSchema, syncSchema } from './params.ts';
import { searchMessages } from './search.ts';
import { listSessionMessages } from './session-msgs.ts';
import { listSessions } from './sessions.ts';
import { NonceCache, type Params, verifySignature } from './signature.ts';
import { type SyncTrigger, triggerSync } from './sync.ts';
import { closeServer, trackConnections } from '../core/close-server.ts';

/** Accepted distance between a strict-mode `timestamp` and the server clock. */
export const TIMESTAMP_WINDOW_S = 300;

export const API_PREFIX = '/api/v1/chat-msg';

/**
 * The longest one store read of the API may run (ClickHouse's `max_execution_time`); past it the
 * request answers 500 and the log says why. The API's reads take milliseconds; one that takes
 * seconds (a page 5 000 deep in a conversation of 500 000 messages takes 0.2–0.7 s) is an outlier.
 */
export const READ_TIME_LIMIT_S = 10;

/** A read refused because too many wait for the store: the request may be sent again as it is. */
class StoreBusyError extends ApiError {
  constructor() {
    super(API_CODES.TOO_MANY_REQUESTS, 'too many requests waiting for the store; try again shortly');
  }
}

/** Store reads that may wait for their turn on a serial store by default. */
export const MAX_WAITING_READS = 64;

export interface QueryServiceOptions {
  readonly store: Store;
  /** Reads `tenants`, `sources` (source types) and `query`. */
  readonly config: Pick<Config, 'tenants' | 'sources' | 'query'>;
  readonly log: Logger;
  /** Wakes a tenant's sources for `POST /sync`. */
  readonly sync: SyncTrigger;
  /** Unix ms; tests move it. */
  readonly clock?: () => number;
  /**
   * The store runs one query at a time for every user (the embedded engine, shared with the
   * sink): reads then go one at a time, each within {@link READ_TIME_LIMIT_S}. Default false.
   */
  readonly serialStore?: boolean;
  /** With `serialStore`, reads that may wait for their turn; more are refused with 429. Default {@link MAX_WAITING_READS}. */
  readonly maxWaitingReads?: number;
}

function send(reply: FastifyReply, code: ApiCode, message: string, data: unknown = null): FastifyReply {
  return reply
    .code(httpStatusOf(code))
    .type('application/json; charset=utf-8')
    .send(serializeEnvelope({ code, message, data }));
}

/** One string per parameter name, or a 400. */
function collectParams(request: FastifyRequest): Params {
  const source: unknown = request.method === 'POST' ? request.body : request.query;
  if (source === undefined || source === null) return {};
  if (typeof source !== 'object' || Array.isArray(source)) throw new ApiError(API_CODES.BAD_REQUEST);
  // Without a prototype, `__proto__` is a parameter like any other: on a plain object the
  // assignment would be dropped, and the parameter would escape the signature.
  const params = Object.create(null) as Record<string, string>;
  for (const [key, value] of Object.entries(source)) {
    if (typeof value === 'string') params[key] = value;
    else if (typeof value === 'number' && Number.isFinite(value)) params[key] = String(value);
    else throw new ApiError(API_CODES.BAD_REQUEST, `parameter ${key} must be given once, as a string`);
  }
  return params;
}

const NONCE = /^[A-Za-z0-9_-]{8,64}$/;
const TIMESTAMP = /^\d{1,12}$/;

/** Builds the app (not listening). */
export function buildQueryApp(options: QueryServiceOptions): FastifyInstance {
  const { store, config } = options;
  const log = options.log;
  const clock = options.clock ?? Date.now;
  const secrets = new Map(config.tenants.map((t) => [t.id, t.secret]));
  const sourceTypes = new Map<string, string>(config.sources.map((s) => [s.name, s.type]));
  const sourceType = (name: string): string => sourceTypes.get(name) ?? '';
  // Store calls in flight: closing the app waits for them, so the caller may close the store
  // right after (a client that hung up leaves its handler still reading).
  const inFlight = new Set<Promise<unknown>>();
  const serial = options.serialStore ?? false;
  const reads = pLimit(serial ? 1 : Number.POSITIVE_INFINITY);
  const maxWaiting = options.maxWaitingReads ?? MAX_WAITING_READS;
  const read = <T>(sql: string, params?: QueryParams, callOptions?: CallOptions): Promise<T[]> => {
    const limited = serial ? { ...callOptions, settings: { max_execution_time: READ_TIME_LIMIT_S, ...callOptions?.settings } } : callOptions;
    const call = reads(() => store.query<T>(sql, params, limited));
    inFlight.add(call);
    const done = (): void => { inFlight.delete(call); };
    call.then(done, done);
    return call;
  };
  /**
   * The store as one request sees it. The busy check is made at the request's first read only:
   * a request admitted then takes its later reads (the count beside a page, the page after its
   * anchor) whatever the queue holds, as one refused half-way would leave the reads it had
   * queued to run for nobody.
   */
  const requestContext = (): QueryContext => {
    let admitted = false;
    const admitting: Store = wrapStore(store, {
      query: <T>(sql: string, params?: QueryParams, callOptions?: CallOptions): Promise<T[]> => {
        if (!admitted && serial && reads.pendingCount >= maxWaiting) return Promise.reject(new StoreBusyError());
        admitted = true;
        return read<T>(sql, params, callOptions);
      },
    });
    return { store: admitting, timezone: config.query.timezone, sourceType };
  };
  // A nonce first used at the window's lower edge must still be known at its upper edge, which
  // the timestamp check accepts too (both ends are inclusive): one second past the whole window.
  // Nonces are recorded only for requests the rate limit let through, at most `rateLimit` per
  // 1 s window: the bound holds every nonce of honest traffic, however high the limit is set.
  const nonceTtlS = 2 * TIMESTAMP_WINDOW_S + 1;
  const nonces = new NonceCache(nonceTtlS * 1000, config.query.rateLimit * (nonceTtlS + 1));
  // Unknown tenants are checked against a random secret, so they take as long as known ones.
  const decoy = randomBytes(32).toString('hex');
  const verified = new WeakMap<FastifyRequest, { tenant: string; params: Params; nonce: string | undefined }>();

  const baseLog: FastifyBaseLogger = log;
  const app = Fastify({
    loggerInstance: baseLog,
    // fastify's request lines carry the URL, whose query string holds the signature; the
    // onResponse hook below logs the path alone.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    // A path fastify cannot decode (`/sessions%`): the envelope, as for every other refusal.
    frameworkErrors: (_err, _request, reply) => {
      void send(reply, API_CODES.BAD_REQUEST, API_MESSAGES[API_CODES.BAD_REQUEST]);
    },
    // A request Node's HTTP parser refuses before fastify sees it, such as raw UTF-8 bytes in the
    // query string (`?keyword=产品介绍` sent without percent-encoding): the envelope too.
    clientErrorHandler: (err, socket) => {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const body = serializeEnvelope({ code: API_CODES.BAD_REQUEST, message: API_MESSAGES[API_CODES.BAD_REQUEST], data: null });
      socket.end(
        `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${String(Buffer.byteLength(body))}\r\nConnection: close\r\n\r\n${body}`,
      );
    },
  });
  trackConnections(app);

  app.addHook('onResponse', (request, reply, done) => {
    request.log.debug(
      { method: request.method, path: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) },
      'Query request.',
    );
    done();
  });

  app.setErrorHandler((err: unknown, request, reply) => {
    if (err instanceof StoreBusyError) {
      // Refused like a rate limit: the nonce it spent is given back (docs/query-api.md).
      const auth = verified.get(request);
      if (auth?.nonce !== undefined) nonces.release(auth.tenant, auth.nonce);
    }
    if (err instanceof ApiError) return send(reply, err.apiCode, err.message);
    const status = (err as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      // fastify's own refusals: unparseable JSON, wrong content type, body too large.
      return send(reply, API_CODES.BAD_REQUEST, API_MESSAGES[API_CODES.BAD_REQUEST]);
    }
    request.log.error({ err, path: request.url.split('?')[0] }, 'Query failed.');
    return send(reply, API_CODES.INTERNAL, API_MESSAGES[API_CODES.INTERNAL]);
  });

  app.addHook('onClose', async () => {
    await Promise.allSettled([...inFlight]);
  });

  app.setNotFoundHandler((_request, reply) => send(reply, API_CODES.NOT_FOUND, API_MESSAGES[API_CODES.NOT_FOUND]));

  app.get('/openapi.json', (_request, reply) => reply.type('application/json; charset=utf-8').send(JSON.stringify(openApiDocument())));

  const authenticate = (request: FastifyRequest): void => {
    const params = collectParams(request);
    const tenant = params['ext_corp_id'] ?? '';
    if (tenant === '') throw new ApiError(API_CODES.INVALID_CORP);
    const secret = secrets.get(tenant);
    const good = verifySignature(params, secret ?? decoy) && secret !== undefined;
    if (!good) throw new ApiError(API_CODES.UNAUTHORIZED);
    const timestamp = params['timestamp'];
    const nonce = params['nonce'];
    if (config.query.strict || timestamp !== undefined || nonce !== undefined) {
      const now = clock();
      if (timestamp === undefined || !TIMESTAMP.test(timestamp) || Math.abs(now / 1000 - Number(timestamp)) > TIMESTAMP_WINDOW_S) {
        throw new ApiError(API_CODES.UNAUTHORIZED);
      }
      if (nonce === undefined || !NONCE.test(nonce) || nonces.used(tenant, nonce, now)) throw new ApiError(API_CODES.UNAUTHORIZED);
      verified.set(request, { tenant, params, nonce });
      return;
    }
    verified.set(request, { tenant, params, nonce: undefined });
  };

  /**
   * The request's verified parameters. Its nonce is spent here, in the handler, after the rate
   * limit: the same URL sent again after a 429 is still good.
   */
  const paramsOf = (request: FastifyRequest): Params => {
    const auth = verified.get(request);
    // The preValidation hook ran for every route of this scope; this is a programming error.
    if (auth === undefined) throw new Error('request reached a handler without authentication');
    if (auth.nonce !== undefined && !nonces.use(auth.tenant, auth.nonce, clock())) throw new ApiError(API_CODES.UNAUTHORIZED);
    return auth.params;
  };

  void app.register(
    async (api) => {
      api.addHook('preValidation', (request, _reply, done) => {
        try {
          authenticate(request);
          done();
        } catch (err) {
          done(err instanceof Error ? err : new Error(String(err)));
        }
      });
      await api.register(rateLimit, {
        global: true,
        hook: 'preHandler',
        max: config.query.rateLimit,
        timeWindow: 1000,
        keyGenerator: (request) => verified.get(request)?.tenant ?? request.ip,
        errorResponseBuilder: () => new ApiError(API_CODES.TOO_MANY_REQUESTS),
      });

      api.post('/sync', async (request, reply) => {
        const q = parseParams(syncSchema, paramsOf(request));
        await triggerSync(options.sync, q.ext_corp_id, (err: unknown) => {
          request.log.warn({ err, tenant: q.ext_corp_id }, 'A sync request that timed out failed later.');
        });
        request.log.info({ tenant: q.ext_corp_id }, 'Sync requested.');
        return send(reply, API_CODES.OK, '同步任务已启动');
      });

      api.get('/sessions', async (request, reply) => {
        const q = parseParams(sessionsSchema, paramsOf(request));
        return send(reply, API_CODES.OK, 'success', await listSessions(requestContext(), q));
      });

      api.get('/session-msgs', async (request, reply) => {
        const q = parseParams(sessionMsgsSchema, paramsOf(request));
        return send(reply, API_CODES.OK, 'success', await listSessionMessages(requestContext(), q));
      });

      api.get('/search', async (request, reply) => {
        const q = parseParams(searchSchema, paramsOf(request));
        return send(reply, API_CODES.OK, 'success', await searchMessages(requestContext(), q));
      });
    },
    { prefix: API_PREFIX },
  );

  return app;
}

/** A listening query service. */
export interface QueryService {
  readonly app: FastifyInstance;
  /** `http://host:port` it listens on (the real port when `query.port` is 0). */
  readonly url: string;
  /** Stops accepting requests and waits for those in flight. */
  close(): Promise<void>;
}

/**
 * Starts the query service on `query.host`:`query.port` over `store`. The caller keeps owning
 * the store and closes it after {@link QueryService.close}.
 */
export async function startQueryService(options: QueryServiceOptions): Promise<QueryService> {
  const app = buildQueryApp(options);
  const { host, port } = options.config.query;
  await app.listen({ host, port });
  const address = app.server.address();
  const bound = typeof address === 'object' && address !== null ? address.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
  options.log.info({ url, tenants: options.config.tenants.length, strict: options.config.query.strict }, 'Query API listening.');
  return {
    app,
    url,
    close: () => closeServer(app),
  };
}
