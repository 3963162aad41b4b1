/** Every source type runs the source conformance suite against its simulator. */
import { sourceSchema } from '../../src/core/config.ts';
import { createSource } from '../../src/ingest/registry.ts';
import type { SimProvider } from '../../src/simulate/index.ts';
import { sourceConformance, type SourceFactory } from './source-suite.ts';

/** The embedded-mode factory: the registry's source for the simulated account. */
function embedded(provider: SimProvider): SourceFactory {
  return {
    provider,
    create: ({ account, baseUrl, name, tenant, tuning }) => {
      const login = provider === 'syncfinder' ? { wId: account.login } : { appId: account.login };
      const config = sourceSchema.parse({
        type: provider,
        name,
        tenant,
        baseUrl,
        token: account.token,
        pollIntervalMs: tuning.pollIntervalMs,
        requestTimeoutMs: 10_000,
        ...login,
      });
      return createSource(config, { retry: tuning.retry, parkRetryMs: tuning.parkRetryMs });
    },
  };
}

sourceConformance('gewe', embedded('gewe'));
sourceConformance('videosapi', embedded('videosapi'));
sourceConformance('syncfinder', embedded('syncfinder'));
