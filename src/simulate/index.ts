/**
 * The provider simulators (DESIGN §2): one HTTP server speaking the GeWe, VideosApi and
 * syncFinder private-letter sync APIs, with generated realistic traffic, fault knobs and the
 * ground truth tests compare against.
 *
 * Typical use:
 *
 *   const sim = await startSimulator({ accounts: [{ provider: 'gewe', token: 't', appId: 'wx_1', messages: 300 }] });
 *   // poll `${sim.url}/gewe/v2/api/finder/syncPrivateLetterMsg` …
 *   sim.setFaults('wx_1', { errorRate: 0.2 });
 *   expect(stored).toEqual(sim.expected('wx_1'));
 *   await sim.close();
 */

export { startSimulator } from './simulator.ts';
export type { SimulatedAccountInfo, SimulatorHandle, StartSimulatorOptions } from './simulator.ts';
export {
  accountId,
  DEFAULT_SIMULATOR_PORT,
  defaultSimulatorAccounts,
  parseSimulatorOptions,
  simulatorAccountSchema,
  simulatorFaultsSchema,
  simulatorOptionsSchema,
  simulatorSources,
} from './options.ts';
export type {
  DefaultAccountsOptions,
  SimulatedSourceConfig,
  SimulatorAccount,
  SimulatorAccountInput,
  SimulatorFaults,
  SimulatorOptions,
  SimulatorOptionsInput,
} from './options.ts';
export type { AccountSummary, EffectiveFaults, ReceivedRequest, RequestOutcome } from './account.ts';
export { HOSTILE_KINDS } from './hostile.ts';
export type { HostileKind, PoisonItem } from './hostile.ts';
export { DEFAULT_MIX, KIND_INFO, SIM_KINDS } from './kinds.ts';
export type { Destination, KindInfo, SimKind } from './kinds.ts';
export { INT64_MAX_ID, JUST_ABOVE_2_53_ID, MessageStream, SEED_FUNCTIONMSG_ID, SIM_PROVIDERS } from './stream.ts';
export type { ExpectedMessage, SimMessage, SimProvider, StreamConfig } from './stream.ts';
export { PROVIDER_PATHS } from './server.ts';
export { PROVIDER_TEXTS, serializeItem } from './wire.ts';
export type { WireStyle } from './wire.ts';
