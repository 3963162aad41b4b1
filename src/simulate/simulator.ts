/**
 * `startSimulator()`: the programmatic way to run the provider simulators, and the handle that
 * tests, `msgpipe demo` and `msgpipe simulate` drive them with.
 */

import type { Logger } from 'pino';

import { SimAccount } from './account.ts';
import type { AccountSummary, EffectiveFaults, ReceivedRequest } from './account.ts';
import type { HostileKind, PoisonItem } from './hostile.ts';
import { parseSimulatorOptions, simulatorFaultsSchema } from './options.ts';
import type { SimulatorAccount, SimulatorFaults, SimulatorOptionsInput } from './options.ts';
import { buildServer, PROVIDER_PATHS } from './server.ts';
import type { SimulatorState } from './server.ts';
import type { ExpectedMessage, SimProvider } from './stream.ts';
import { closeServer } from '../core/close-server.ts';

/** A simulated account as a client must address it. */
export interface SimulatedAccountInfo {
  readonly id: string;
  readonly provider: SimProvider;
  /** appId (gewe, videosapi) or wId (syncfinder). */
  readonly login: string;
  /** The token currently accepted (changes when renewToken is given a new one). */
  readonly token: string;
  /** Full URL of the account's sync endpoint. */
  readonly endpoint: string;
}

/**
 * A running simulator. Accounts are named by id (the account's `id`, default its appId / wId);
 * an unknown id throws a RangeError. `'*'` in setFaults/clearFaults means every account.
 */
export interface SimulatorHandle {
  /** Base URL, e.g. `http://127.0.0.1:8801`; provider paths hang off it (use as `baseUrl`). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  /** Every account, in configuration order. */
  accounts(): SimulatedAccountInfo[];
  /** Stops listening; in-flight requests finish first. Safe to call twice. */
  close(): Promise<void>;
  /** Every sync request the account received (its keyBuff and what happened), oldest first. */
  received(account: string): ReceivedRequest[];
  /**
   * The ground truth: each unique upstream message released so far, once, in stream order,
   * with revoked messages marked. Duplicates and injected poison are not in it.
   */
  expected(account: string): ExpectedMessage[];
  /**
   * Counts of the ground truth (by kind and destination) and of the traffic, without building
   * the messages: cheap enough to poll during a million-message run.
   */
  summary(account: string): AccountSummary;
  /** The latest request the account received, without copying the log. */
  lastReceived(account: string): ReceivedRequest | undefined;
  /** The hostile items injected into the account, in injection order. */
  poison(account: string): PoisonItem[];
  /**
   * Merges fault knobs into an account's faults, or into the global ones with `'*'`. Takes
   * effect on the next request. Setting `tokenExpiresAfter` restarts the expiry count.
   */
  setFaults(account: string, faults: SimulatorFaults): void;
  /** Removes an account's own fault knobs, or the global ones with `'*'`. */
  clearFaults(account: string): void;
  /** The fault knobs in force for an account (defaults, global, own). */
  faults(account: string): EffectiveFaults;
  /** Queues a hostile item, delivered after the messages released so far. */
  injectHostile(account: string, kind: HostileKind): PoisonItem;
  /**
   * Accepts the account's token again (optionally replacing it) and restarts the expiry count:
   * with `tokenExpiresAfter: N` set, the token is good for N more requests, then expires again.
   */
  renewToken(account: string, newToken?: string): void;
  /** One-shot cursor loss: every keyBuff issued so far restarts from the beginning. */
  resetKeyBuff(account: string): void;
  /** Releases `count` more messages of a live (ratePerSec) account now; returns the released total. */
  releaseMessages(account: string, count: number): number;
  /**
   * Serializes every message of the account ahead of time (benchmarks: keeps the cost of making
   * the traffic out of the measured run). Pages stay byte for byte the same.
   */
  prerender(account: string): void;
}

/** {@link startSimulator} options: the schema's input plus a pino logger. */
export type StartSimulatorOptions = SimulatorOptionsInput & { readonly logger?: Logger };

/**
 * Starts the provider simulators on one HTTP server and resolves once it listens.
 *
 * Options are validated (ConfigError lists every problem); `port: 0` (the default) picks a free
 * port, read it from `handle.port` / `handle.url`. Without `accounts` the default set of
 * defaultSimulatorAccounts() runs.
 */
export async function startSimulator(options: StartSimulatorOptions = {}): Promise<SimulatorHandle> {
  const opts = parseSimulatorOptions(options);
  const log = opts.logger?.child({ component: 'simulate' });
  const started = Date.now();
  const accounts = new Map<string, SimAccount>();
  const logins = new Map<string, SimAccount>();
  for (const config of opts.accounts satisfies SimulatorAccount[]) {
    const account = new SimAccount(config, { faultSeed: opts.faultSeed, maxRecorded: opts.maxRecordedRequests, now: started });
    accounts.set(account.id, account);
    logins.set(`${account.provider}\u0000${account.login}`, account);
  }
  let global: SimulatorFaults | undefined = opts.faults;
  for (const a of accounts.values()) a.inheritFaults(global);

  const get = (id: string): SimAccount => {
    const a = accounts.get(id);
    if (a === undefined) throw new RangeError(`unknown simulator account "${id}" (known: ${[...accounts.keys()].join(', ')})`);
    return a;
  };
  const setFaults = (target: string, patch: SimulatorFaults | undefined): void => {
    const checked = patch === undefined ? undefined : simulatorFaultsSchema.parse(patch);
    if (target === '*') {
      global = checked === undefined ? undefined : { ...global, ...checked };
      for (const a of accounts.values()) {
        a.inheritFaults(global);
        if (checked?.tokenExpiresAfter !== undefined) a.restartTokenClock();
      }
    } else {
      get(target).setFaults(checked);
    }
    log?.info({ target, faults: checked ?? null }, 'simulator faults changed');
  };

  const state: SimulatorState = {
    accounts,
    byLogin: (provider, login) => logins.get(`${provider}\u0000${login}`),
    globalFaults: () => global,
    setFaults,
    now: () => Date.now(),
  };
  const app = buildServer(state, { ...(opts.adminToken === undefined ? {} : { adminToken: opts.adminToken }), ...(log === undefined ? {} : { logger: log }) });
  await app.listen({ host: opts.host, port: opts.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : opts.port;
  const hostForUrl = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const url = `http://${hostForUrl}:${port}`;
  log?.info({ url, accounts: [...accounts.keys()] }, 'simulator listening');

  let closing: Promise<void> | undefined;
  return {
    url,
    host: opts.host,
    port,
    accounts: () =>
      [...accounts.values()].map((a) => ({
        id: a.id,
        provider: a.provider,
        login: a.login,
        token: a.currentToken,
        endpoint: `${url}${PROVIDER_PATHS[a.provider]}`,
      })),
    close: () => {
      closing ??= closeServer(app).then(() => {
        log?.info({ url }, 'simulator closed');
      });
      return closing;
    },
    received: (id) => get(id).received(),
    expected: (id) => get(id).expected(Date.now()),
    summary: (id) => get(id).summary(Date.now()),
    lastReceived: (id) => get(id).lastReceived(),
    poison: (id) => get(id).poison(),
    setFaults: (id, faults) => {
      if (id !== '*') get(id);
      setFaults(id, faults);
    },
    clearFaults: (id) => {
      if (id !== '*') get(id);
      setFaults(id, undefined);
    },
    faults: (id) => get(id).effectiveFaults(),
    injectHostile: (id, kind) => {
      const p = get(id).inject(kind, Date.now());
      log?.info({ account: id, kind }, 'hostile item injected');
      return p;
    },
    renewToken: (id, newToken) => {
      get(id).renewToken(newToken);
    },
    resetKeyBuff: (id) => {
      get(id).resetKeyBuff();
      log?.info({ account: id }, 'keyBuff reset');
    },
    releaseMessages: (id, count) => get(id).release(count, Date.now()),
    prerender: (id) => {
      get(id).prerender();
    },
  };
}
