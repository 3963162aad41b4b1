/**
 * The source conformance harness of the finder sources (gewe, videosapi, syncfinder): one JSON
 * sync endpoint per account, one stream per account (the appId / wId), the provider's keyBuff as
 * the cursor, and a simulator whose pages are pure functions of the keyBuff (so a page can be
 * asked for again to compare bytes) and which re-sends duplicates the way the providers do.
 */
import { sourceSchema } from '../../src/core/config.ts';
import { parseLossless, toDecimal } from '../../src/core/json.ts';
import { createSource } from '../../src/ingest/registry.ts';
import { PROVIDER_TEXTS, startSimulator } from '../../src/simulate/index.ts';
import type { ReceivedRequest, SimProvider, SimulatorAccountInput, SimulatorHandle } from '../../src/simulate/index.ts';
import type { CaseAccount, CaseFaults, SimOutcome, SimRequest, SourceHarness } from './source-suite.ts';

const OUTCOMES: ReadonlySet<string> = new Set<SimOutcome>(['page', 'caught_up', 'error', 'rate_limited', 'malformed', 'auth_refused']);

/** The NewMsgId of an item, parsed losslessly from its exact bytes. */
function newMsgIdOf(bytes: Uint8Array): string | undefined {
  const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  const item = parseLossless(text) as { content?: { msg?: { NewMsgId?: unknown } } } | null;
  return toDecimal(item?.content?.msg?.NewMsgId);
}

function info(sim: SimulatorHandle, id: string): { login: string; token: string; endpoint: string; provider: SimProvider } {
  const account = sim.accounts().find((a) => a.id === id);
  if (account === undefined) throw new Error(`no simulated account ${id}`);
  return account;
}

/** Asks the simulator for the page at `keyBuff` again (pages are pure functions of the cursor). */
async function refetch(sim: SimulatorHandle, id: string, keyBuff: string): Promise<Buffer> {
  const account = info(sim, id);
  const res = await fetch(account.endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', [PROVIDER_TEXTS[account.provider].tokenHeader]: account.token },
    body: JSON.stringify({ [account.provider === 'syncfinder' ? 'wId' : 'appId']: account.login, keyBuff }),
  });
  return Buffer.from(await res.arrayBuffer());
}

function simFaults(faults: CaseFaults | undefined): SimulatorAccountInput['faults'] {
  if (faults === undefined) return undefined;
  return {
    ...(faults.transient === true ? { errorRate: 0.3, rateLimitRate: 0.2, retryAfterSec: 0 } : {}),
    // The first request is the first page.
    ...(faults.tokenExpiresAfterFirstPage === true ? { tokenExpiresAfter: 1 } : {}),
    ...(faults.latencyMs === undefined ? {} : { latencyMs: faults.latencyMs }),
  };
}

function request(stream: string, r: ReceivedRequest): SimRequest {
  return {
    at: r.at,
    kind: 'read',
    stream,
    cursor: r.keyBuff,
    outcome: OUTCOMES.has(r.outcome) ? (r.outcome as SimOutcome) : 'other',
    items: r.items,
    duplicates: r.duplicates,
    cursorAfter: r.returnedKeyBuff,
    restarted: r.restarted,
    ...(r.body === undefined ? {} : { body: r.body }),
  };
}

/** The harness of one finder provider, its sources built by the registry (embedded mode). */
export function finderHarness(provider: SimProvider): SourceHarness<SimulatorHandle> {
  return {
    initialCursor: '',
    start: (accounts: readonly CaseAccount[]) =>
      startSimulator({
        accounts: accounts.map(({ id, faults }) => {
          const login = provider === 'syncfinder' ? { provider, wId: `w-${id}` } : { provider, appId: `wx_${id}` };
          const extra = simFaults(faults);
          return { id, token: `tok-${id}`, messages: 90, pageSize: 20, sessions: 6, seed: `conf-${id}`, ...login, ...(extra === undefined ? {} : { faults: extra }) };
        }),
      }),
    close: (sim) => sim.close(),
    build: (sim, id, { name, tenant, tuning }) => {
      const account = info(sim, id);
      const login = provider === 'syncfinder' ? { wId: account.login } : { appId: account.login };
      const config = sourceSchema.parse({
        type: provider,
        name,
        tenant,
        baseUrl: sim.url,
        token: account.token,
        pollIntervalMs: tuning.pollIntervalMs,
        requestTimeoutMs: 10_000,
        ...login,
      });
      return createSource(config, { retry: tuning.retry, parkRetryMs: tuning.parkRetryMs });
    },
    expected: (sim, id) => new Map([[info(sim, id).login, sim.expected(id).map((m) => m.newMsgId)]]),
    itemId: newMsgIdOf,
    recordCursor: (page) => page.cursorBefore,
    requests: (sim, id) => {
      const stream = info(sim, id).login;
      return sim.received(id).map((r) => request(stream, r));
    },
    // The finder simulator logs a request when it arrives, before any latency.
    arrivals: (sim, id) => sim.received(id).length,
    pageBody: (sim, id, _stream, cursor) => refetch(sim, id, cursor),
    frame: (items) => Buffer.concat([Buffer.from('"list":['), ...items.flatMap((bytes, i) => (i === 0 ? [bytes] : [Buffer.from(','), bytes])), Buffer.from(']')]),
    // The bytes the simulator sent for that request (its HTML error page, or a cut page).
    isWholeBody: (_sim, _id, malformed, bytes) => Promise.resolve(malformed.body !== undefined && Buffer.from(bytes).equals(malformed.body)),
    setMalformed: (sim, id, on) => {
      if (on) sim.setFaults(id, { malformedRate: 1 });
      else sim.clearFaults(id);
    },
    renewToken: (sim, id) => {
      sim.renewToken(id);
      sim.clearFaults(id);
    },
  };
}
