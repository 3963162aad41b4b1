/**
 * The simulators' HTTP surface: the three provider endpoints and the `/_sim` admin API, on one
 * fastify server.
 *
 * Provider routes parse the body themselves (every content type is read as bytes) so that a
 * bad body gets the provider's own error envelope, as a real provider would answer, rather than
 * fastify's. Admin routes speak plain JSON.
 */

import { Buffer } from 'node:buffer';
import { setTimeout as sleep } from 'node:timers/promises';

import Fastify from 'fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { z } from 'zod';

import { trackConnections } from '../core/close-server.ts';
import type { SimAccount } from './account.ts';
import { HOSTILE_KINDS } from './hostile.ts';
import { simulatorFaultsSchema } from './options.ts';
import type { SimulatorFaults } from './options.ts';
import type { SimProvider } from './stream.ts';
import { errorEnvelope, PROVIDER_TEXTS } from './wire.ts';

/** Paths of the provider endpoints (DESIGN §2). */
export const PROVIDER_PATHS: Readonly<Record<SimProvider, string>> = {
  gewe: '/gewe/v2/api/finder/syncPrivateLetterMsg',
  videosapi: '/finder/v2/api/finder/syncPrivateLetterMsg',
  syncfinder: '/syncFinder',
};

/** What the routes act on: the simulator's accounts and global faults. */
export interface SimulatorState {
  readonly accounts: ReadonlyMap<string, SimAccount>;
  /** Finds an account by provider login (appId / wId). */
  byLogin(provider: SimProvider, login: string): SimAccount | undefined;
  globalFaults(): SimulatorFaults | undefined;
  setFaults(target: string, patch: SimulatorFaults | undefined): void;
  now(): number;
}

const JSON_TYPE = 'application/json; charset=utf-8';

export function parseJsonObject(body: unknown): Record<string, unknown> | undefined {
  if (!Buffer.isBuffer(body) || body.length === 0) return undefined;
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function headerValue(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

async function providerRoute(
  provider: SimProvider,
  state: SimulatorState,
  req: FastifyRequest,
  reply: FastifyReply,
  log: Logger | undefined,
): Promise<FastifyReply> {
  const texts = PROVIDER_TEXTS[provider];
  const token = headerValue(req, texts.tokenHeader);
  const body = parseJsonObject(req.body);
  const loginKey = provider === 'syncfinder' ? 'wId' : 'appId';
  const login = body?.[loginKey];
  const keyBuff = body?.['keyBuff'];
  const send = (text: string): FastifyReply => reply.code(200).type(JSON_TYPE).send(text);
  if (body === undefined || typeof login !== 'string' || login === '') {
    // Providers check the auth header before the body.
    if (token === undefined || token === '') return send(errorEnvelope(provider, texts.missingToken));
    return send(errorEnvelope(provider, `${loginKey} 不可为空或格式错误`));
  }
  const account = state.byLogin(provider, login);
  if (account === undefined) {
    if (token === undefined || token === '') return send(errorEnvelope(provider, texts.missingToken));
    return send(errorEnvelope(provider, `${loginKey} 无效或未登录`));
  }
  const res = account.serve(token, keyBuff, state.now());
  log?.debug({ account: account.id, status: res.status, bytes: res.body.length }, 'sync request served');
  if (res.delayMs > 0) await sleep(res.delayMs);
  for (const [k, v] of Object.entries(res.headers)) reply.header(k, v);
  return reply.code(res.status).type(res.contentType).send(res.body);
}

const patchSchema = simulatorFaultsSchema;
const renewSchema = z.strictObject({ token: z.string().min(1).optional() });
const hostileSchema = z.strictObject({ kind: z.enum(HOSTILE_KINDS) });
const releaseSchema = z.strictObject({ count: z.int().min(0) });

/** Builds the fastify app. The caller listens and closes. */
export function buildServer(state: SimulatorState, options: { adminToken?: string; logger?: Logger }): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  trackConnections(app);
  const log = options.logger;
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => {
    done(null, body);
  });

  for (const provider of Object.keys(PROVIDER_PATHS) as SimProvider[]) {
    app.post(PROVIDER_PATHS[provider], (req, reply) => providerRoute(provider, state, req, reply, log));
  }

  void app.register(
    (admin, _opts, done) => {
      admin.addHook('onRequest', async (req, reply) => {
        if (options.adminToken !== undefined && headerValue(req, 'x-sim-admin-token') !== options.adminToken) {
          await reply.code(401).send({ error: 'admin token required (X-Sim-Admin-Token)' });
        }
      });

      const account = (req: FastifyRequest, reply: FastifyReply): SimAccount | undefined => {
        const { id } = req.params as { id: string };
        const found = state.accounts.get(id);
        if (found === undefined) void reply.code(404).send({ error: `unknown account "${id}"` });
        return found;
      };
      const bodyOf = <T>(schema: z.ZodType<T>, req: FastifyRequest, reply: FastifyReply): T | undefined => {
        const raw = Buffer.isBuffer(req.body) && req.body.length > 0 ? parseJsonObject(req.body) : {};
        const parsed = schema.safeParse(raw);
        if (!parsed.success) {
          void reply.code(400).send({ error: 'invalid body', problems: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`) });
          return undefined;
        }
        return parsed.data;
      };
      const summary = (a: SimAccount): Record<string, unknown> => ({
        ...a.summary(state.now()),
        token: a.currentToken,
        faults: a.effectiveFaults(),
      });

      admin.get('/healthz', () => ({ ok: true }));
      admin.get('/accounts', () => [...state.accounts.values()].map(summary));
      admin.get('/accounts/:id', (req, reply) => {
        const a = account(req, reply);
        return a === undefined ? reply : summary(a);
      });
      admin.get('/accounts/:id/requests', (req, reply) => account(req, reply)?.received() ?? reply);
      admin.get('/accounts/:id/expected', (req, reply) => account(req, reply)?.expected(state.now()) ?? reply);
      admin.get('/accounts/:id/poison', (req, reply) => account(req, reply)?.poison() ?? reply);
      admin.get('/faults', () => state.globalFaults() ?? {});
      admin.put('/faults', (req, reply) => {
        const patch = bodyOf(patchSchema, req, reply);
        if (patch === undefined) return reply;
        state.setFaults('*', patch);
        return state.globalFaults() ?? {};
      });
      admin.delete('/faults', () => {
        state.setFaults('*', undefined);
        return {};
      });
      admin.get('/accounts/:id/faults', (req, reply) => {
        const a = account(req, reply);
        return a === undefined ? reply : { own: a.faults ?? {}, effective: a.effectiveFaults() };
      });
      admin.put('/accounts/:id/faults', (req, reply) => {
        const a = account(req, reply);
        const patch = a === undefined ? undefined : bodyOf(patchSchema, req, reply);
        if (a === undefined || patch === undefined) return reply;
        state.setFaults(a.id, patch);
        return { own: a.faults ?? {}, effective: a.effectiveFaults() };
      });
      admin.delete('/accounts/:id/faults', (req, reply) => {
        const a = account(req, reply);
        if (a === undefined) return reply;
        state.setFaults(a.id, undefined);
        return { own: {}, effective: a.effectiveFaults() };
      });
      admin.post('/accounts/:id/renew-token', (req, reply) => {
        const a = account(req, reply);
        const body = a === undefined ? undefined : bodyOf(renewSchema, req, reply);
        if (a === undefined || body === undefined) return reply;
        a.renewToken(body.token);
        return { token: a.currentToken };
      });
      admin.post('/accounts/:id/reset-keybuff', (req, reply) => {
        const a = account(req, reply);
        if (a === undefined) return reply;
        a.resetKeyBuff();
        return { ok: true };
      });
      admin.post('/accounts/:id/hostile', (req, reply) => {
        const a = account(req, reply);
        const body = a === undefined ? undefined : bodyOf(hostileSchema, req, reply);
        if (a === undefined || body === undefined) return reply;
        return a.inject(body.kind, state.now());
      });
      admin.post('/accounts/:id/release', (req, reply) => {
        const a = account(req, reply);
        const body = a === undefined ? undefined : bodyOf(releaseSchema, req, reply);
        if (a === undefined || body === undefined) return reply;
        return { released: a.release(body.count, state.now()) };
      });
      done();
    },
    { prefix: '/_sim' },
  );
  return app;
}
