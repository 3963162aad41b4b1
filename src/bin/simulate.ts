/**
 * `msgpipe simulate`: the provider simulators alone, for testing a setup against them.
 */
import type { Logger } from 'pino';

import { defaultSimulatorAccounts, simulatorSources, startSimulator } from '../simulate/index.ts';
import { defaultYunhuAccount, startYunhuTraffic, yunhuSimulatorSource } from '../simulate/yunhu-demo.ts';
import { startYunhuSimulator } from '../simulate/yunhu-server.ts';

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
  // Yunhu on the next port (its own server: protobuf bodies), with live edits and recalls.
  const yunhu = await startYunhuSimulator({
    host: options.host,
    port: options.port === 0 ? 0 : options.port + 1,
    accounts: [defaultYunhuAccount(Math.min(options.messages, 3000))],
    logger: options.log,
  });
  const stopTraffic = startYunhuTraffic(yunhu, 1000, options.log);
  const y = yunhuSimulatorSource(yunhu.url);
  options.out.write(
    [
      `Simulators listening on ${sim.url} (gewe, videosapi, syncfinder) and ${yunhu.url} (yunhu)`,
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
      `  - type: ${y.type}`,
      `    name: ${y.name}`,
      '    tenant: demo',
      `    baseUrl: ${y.baseUrl}`,
      `    token: ${y.token}`,
      `    userId: ${y.userId}`,
      '',
      'Press Ctrl-C to stop.',
      '',
    ].join('\n'),
  );
  await new Promise<void>((resolve) => {
    if (options.signal.aborted) resolve();
    options.signal.addEventListener('abort', () => { resolve(); }, { once: true });
  });
  stopTraffic();
  await Promise.all([sim.close(), yunhu.close()]);
}
