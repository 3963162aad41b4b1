/**
 * Simulator options: one zod schema, validated once at start (the CLI and tests share it).
 *
 * Accounts are the unit of everything: each one is a provider login (token + appId or wId) with
 * its own deterministic message stream, paging, release schedule and fault knobs. Faults can be
 * set for all accounts (`faults`) and per account; the account's own value wins.
 */

import type { Logger } from 'pino';
import { z } from 'zod';

import { ConfigError } from '../core/errors.ts';
import { SIM_KINDS } from './kinds.ts';
import type { SIM_PROVIDERS } from './stream.ts';

/** The port `msgpipe simulate` listens on unless told otherwise (DESIGN §7's example baseUrl). */
export const DEFAULT_SIMULATOR_PORT = 8801;

/** A share from 0 to 1, as every fault rate is given. */
export const rate = z.number().min(0).max(1);

/** Fault knobs. Every field is optional: absent means "inherit" (account → global → off). */
export const simulatorFaultsSchema = z.strictObject({
  errorRate: rate
    .optional()
    .describe('Share of requests answered with a transient failure: HTTP 502/503, or HTTP 200 with the provider error envelope.'),
  rateLimitRate: rate.optional().describe('Share of requests answered with HTTP 429 and a Retry-After header.'),
  retryAfterSec: z.int().min(0).max(3600).optional().describe('Retry-After seconds sent with 429 answers (default 1).'),
  latencyMs: z.int().min(0).max(120_000).optional().describe('Delay before every answer, milliseconds.'),
  latencyJitterMs: z.int().min(0).max(120_000).optional().describe('Extra random delay, uniform in [0, latencyJitterMs].'),
  malformedRate: rate.optional().describe('Share of pages whose body is not valid JSON (an HTML error page or a truncated page).'),
  wrongTypesRate: rate
    .optional()
    .describe('Share of pages that are valid JSON but carry one item with wrong field types; the keyBuff does not advance.'),
  tokenExpiresAfter: z
    .int()
    .min(0)
    .nullable()
    .optional()
    .describe('Refuse the token with the provider auth error after this many accepted requests (null: never); renewToken resets it.'),
  refuseStaleKeyBuff: z
    .boolean()
    .optional()
    .describe('After a keyBuff reset, refuse an older keyBuff with the provider error "keyBuff 参数错误" instead of restarting it from the beginning.'),
});
export type SimulatorFaults = z.infer<typeof simulatorFaultsSchema>;

const accountFields = {
  id: z
    .string()
    .regex(/^[A-Za-z0-9._~-]+$/)
    .optional()
    .describe('Name of the account in the handle and the admin API (default: appId / wId). Must be unique.'),
  token: z.string().min(1).describe('The token the client must send in the provider auth header.'),
  messages: z.int().min(0).max(2_000_000_000).default(500).describe('Number of unique messages in the stream.'),
  seed: z.union([z.int(), z.string()]).optional().describe('Stream seed (default: derived from the id). Same seed, same stream.'),
  sessions: z.int().min(1).max(1_000_000).default(24).describe('Number of letter sessions the messages spread over.'),
  pageSize: z.int().min(1).max(1000).default(20).describe('Largest page, in items.'),
  pageSizeVariation: z
    .number()
    .min(0)
    .max(0.9)
    .default(0.25)
    .describe('Pages shrink by up to this share of pageSize (varying by position), like real providers.'),
  duplicateRate: rate.default(0.02).describe('Share of messages followed by a re-sent earlier message (same NewMsgId, same bytes).'),
  ratePerSec: z
    .number()
    .positive()
    .optional()
    .describe('Release messages over time at this rate, for live traffic. Absent: the whole stream is available at once.'),
  backlog: z.int().min(0).optional().describe('Messages available at start when ratePerSec is set (default 0).'),
  startTime: z.int().min(0).max(4_294_967_295).default(1_730_419_200).describe('CreateTime of the first message, unix seconds.'),
  secondsPerMessage: z.number().min(1).max(86_400).default(20).describe('Average CreateTime gap between messages, seconds.'),
  mix: z
    .partialRecord(z.enum(SIM_KINDS), z.number().min(0))
    .optional()
    .describe('Kind weights (relative) overriding the default mix for the kinds given; the first ~34 messages always hold every kind.'),
  booleanIsSender: z.boolean().default(false).describe('Write isSender as true/false instead of 1/0.'),
  faults: simulatorFaultsSchema.optional().describe('Fault knobs of this account (override the global ones).'),
};

export const simulatorAccountSchema = z.discriminatedUnion('provider', [
  z.strictObject({ provider: z.literal('gewe'), appId: z.string().min(1).describe('GeWe device id (body appId).'), ...accountFields }),
  z.strictObject({
    provider: z.literal('videosapi'),
    appId: z.string().min(1).describe('VideosApi device id (body appId).'),
    ...accountFields,
  }),
  z.strictObject({
    provider: z.literal('syncfinder'),
    wId: z.string().min(1).describe('syncFinder login instance id (body wId).'),
    ...accountFields,
  }),
]);
export type SimulatorAccountInput = z.input<typeof simulatorAccountSchema>;
export type SimulatorAccount = z.output<typeof simulatorAccountSchema>;

export const simulatorOptionsSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1').describe('Interface to listen on.'),
  port: z.int().min(0).max(65_535).default(0).describe('Port to listen on; 0 picks a free one (see handle.port).'),
  accounts: z
    .array(simulatorAccountSchema)
    .min(1)
    .optional()
    .describe('The provider accounts to simulate (default: defaultSimulatorAccounts()).'),
  faults: simulatorFaultsSchema.optional().describe('Fault knobs for every account.'),
  faultSeed: z.int().default(1).describe('Seed of the fault dice, so a faulty run can be replayed.'),
  adminToken: z
    .string()
    .min(1)
    .optional()
    .describe('When set, the /_sim admin routes require the header X-Sim-Admin-Token with this value.'),
  maxRecordedRequests: z
    .int()
    .min(0)
    .default(100_000)
    .describe('Requests remembered per account for received(); the oldest are dropped beyond it.'),
  logger: z
    .custom<Logger>((v) => typeof v === 'object' && v !== null && typeof (v as { child?: unknown }).child === 'function')
    .optional()
    .describe('A pino logger; the simulator logs through a child of it. Absent: silent.'),
});
export type SimulatorOptionsInput = z.input<typeof simulatorOptionsSchema>;
export type SimulatorOptions = z.output<typeof simulatorOptionsSchema>;

/** The id an account is addressed by. */
export function accountId(a: SimulatorAccountInput | SimulatorAccount): string {
  return a.id ?? (a.provider === 'syncfinder' ? a.wId : a.appId);
}

/**
 * Parses options, listing every problem at once. Throws {@link ConfigError} when invalid,
 * including when two accounts share an id or a provider login (same provider and appId/wId).
 */
export function parseSimulatorOptions(input: SimulatorOptionsInput = {}): SimulatorOptions & { accounts: SimulatorAccount[] } {
  const parsed = simulatorOptionsSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `simulate.${i.path.join('.') || '(root)'}: ${i.message}`));
  }
  const accounts = parsed.data.accounts ?? defaultSimulatorAccounts().map((a) => simulatorAccountSchema.parse(a));
  const problems: string[] = [];
  const ids = new Set<string>();
  const logins = new Set<string>();
  for (const a of accounts) {
    const id = accountId(a);
    if (ids.has(id)) problems.push(`simulate.accounts: duplicate account id "${id}" (set a distinct id)`);
    ids.add(id);
    const login = `${a.provider}:${a.provider === 'syncfinder' ? a.wId : a.appId}`;
    if (logins.has(login)) problems.push(`simulate.accounts: two ${a.provider} accounts share the login "${login}"`);
    logins.add(login);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return { ...parsed.data, accounts };
}

/** Options of {@link defaultSimulatorAccounts}. */
export interface DefaultAccountsOptions {
  /** Messages per account (default 2000). */
  readonly messages?: number;
  /** Live release rate per account, messages/second (default 0.5; 0 = everything at once). */
  readonly ratePerSec?: number;
  /** Messages available at start when releasing over time (default 300). */
  readonly backlog?: number;
}

/**
 * The account set `msgpipe simulate` and `msgpipe demo` run: one account per provider, with
 * fixed tokens and ids so a matching msgpipe config can be written (see simulatorSources()).
 * A backlog is available at once and more messages arrive over time, so a demo shows live
 * traffic.
 */
export function defaultSimulatorAccounts(options: DefaultAccountsOptions = {}): SimulatorAccountInput[] {
  const messages = options.messages ?? 2000;
  const rateOpt = options.ratePerSec ?? 0.5;
  const live = rateOpt > 0 ? { ratePerSec: rateOpt, backlog: options.backlog ?? 300 } : {};
  return [
    { provider: 'gewe', id: 'gewe-demo', token: 'sim-gewe-token', appId: 'wx_sim_gewe_0001', messages, seed: 'gewe-demo', ...live },
    {
      provider: 'videosapi',
      id: 'videosapi-demo',
      token: 'sim-videosapi-token',
      appId: 'wx_sim_videosapi_0001',
      messages,
      seed: 'videosapi-demo',
      ...live,
    },
    {
      provider: 'syncfinder',
      id: 'syncfinder-demo',
      token: 'sim-syncfinder-authorization',
      wId: '2c7a5bf6-e23d-4b9a-8f03-b90e844b539f',
      messages,
      seed: 'syncfinder-demo',
      ...live,
    },
  ];
}

/** A msgpipe `sources[]` entry (DESIGN §7) pointing at a simulated account. */
export interface SimulatedSourceConfig {
  readonly type: (typeof SIM_PROVIDERS)[number];
  readonly name: string;
  readonly baseUrl: string;
  readonly token: string;
  readonly appId?: string;
  readonly wId?: string;
}

/** The msgpipe source entries that poll the given simulated accounts at `baseUrl` (add `tenant`). */
export function simulatorSources(
  accounts: readonly (SimulatorAccountInput | SimulatorAccount)[],
  baseUrl: string,
): SimulatedSourceConfig[] {
  return accounts.map((a) =>
    a.provider === 'syncfinder'
      ? { type: a.provider, name: accountId(a), baseUrl, token: a.token, wId: a.wId }
      : { type: a.provider, name: accountId(a), baseUrl, token: a.token, appId: a.appId },
  );
}
