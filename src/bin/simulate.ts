/**
 * `msgpipe simulate`: the provider simulators alone, for testing a setup against them.
 */
import type { Logger } from 'pino';
import { stringify } from 'yaml';

import { ConfigError } from '../core/errors.ts';

import { defaultSimulatorAccounts, simulatorSources, startSimulator } from '../simulate/index.ts';
import { defaultYunhuAccount, startYunhuBeside, startYunhuTraffic, yunhuSimulatorSource } from '../simulate/yunhu-demo.ts';

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
  if (options.port === 65_535) throw new ConfigError(['--port: the Yunhu simulator listens on the next port, so 65534 at most']);
  const accounts = defaultSimulatorAccounts({ messages: options.messages });
  const sim = await startSimulator({ host: options.host, port: options.port, accounts, logger: options.log });
  // Yunhu on the next port (its own server: protobuf bodies), with live edits and recalls.
  const yunhu = await startYunhuBeside(sim, {
    host: options.host,
    port: options.port === 0 ? 0 : options.port + 1,
    accounts: [defaultYunhuAccount(Math.min(options.messages, 3000))],
    logger: options.log,
  });
  const stopTraffic = startYunhuTraffic(yunhu, 1000, options.log);
  try {
    const sources = [
      ...simulatorSources(accounts, sim.url).map((s) => ({ ...s, tenant: 'demo' })),
      { ...yunhuSimulatorSource(yunhu.url), tenant: 'demo' },
    ];
    options.out.write(
      `Simulators listening on ${sim.url} (gewe, videosapi, syncfinder) and ${yunhu.url} (yunhu)\n\n` +
        'msgpipe sources that poll them (add a `tenants` entry with id "demo"):\n\n' +
        `${stringify({ sources })}\nPress Ctrl-C to stop.\n\n`,
    );
    await new Promise<void>((resolve) => {
      if (options.signal.aborted) resolve();
      options.signal.addEventListener('abort', () => { resolve(); }, { once: true });
    });
  } finally {
    stopTraffic();
    await Promise.all([sim.close(), yunhu.close()]);
  }
}
