/**
 * `msgpipe simulate`: the provider simulators alone, for testing a setup against them.
 */
import type { Logger } from 'pino';

import { defaultSimulatorAccounts, simulatorSources, startSimulator } from '../simulate/index.ts';

export interface SimulateCommandOptions {
  readonly host: string;
  readonly port: number;
  readonly messages: number;
  readonly log: Logger;
  readonly out: NodeJS.WritableStream;
  readonly signal: AbortSignal;
}

/** Serves the default simulated accounts until `signal` aborts. */
export async function runSimulateCommand(options: SimulateCommandOptions): Promise<void> {
  const accounts = defaultSimulatorAccounts({ messages: options.messages });
  const sim = await startSimulator({ host: options.host, port: options.port, accounts, logger: options.log });
  const sources = simulatorSources(accounts, sim.url).map((s) => ({ ...s, tenant: 'demo' }));
  options.out.write(
    [
      `Simulators listening on ${sim.url}`,
      '',
      'msgpipe sources that poll them (add a `tenants` entry with id "demo"):',
      '',
      'sources:',
      ...sources.flatMap((s) => [
        `  - type: ${s.type}`,
        `    name: ${s.name}`,
        `    tenant: ${s.tenant}`,
        `    baseUrl: ${s.baseUrl}`,
        `    token: ${s.token}`,
        s.wId === undefined ? `    appId: ${s.appId ?? ''}` : `    wId: ${s.wId}`,
      ]),
      '',
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
  await new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    options.signal.addEventListener('abort', () => { resolve(); }, { once: true });
  });
  await sim.close();
}
