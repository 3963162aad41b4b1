/**
 * The source registry: source `type` → how to build it. Adding a source is one file plus one
 * line here (docs/component-spec.md).
 */
import type { SourceConfig } from '../core/config.ts';
import { type FinderProvider, FinderSource, type FinderSourceOptions } from './finder.ts';
import { geweProvider } from './gewe.ts';
import type { FinderSourceConfig } from './finder-config.ts';
import type { Source } from './source.ts';
import { syncfinderProvider } from './syncfinder.ts';
import { videosapiProvider } from './videosapi.ts';
import { YunhuSource } from './yunhu.ts';

/** The WeChat Channels private-letter providers by source type. */
export const FINDER_PROVIDERS: Readonly<Record<FinderSourceConfig['type'], FinderProvider>> = {
  gewe: geweProvider,
  videosapi: videosapiProvider,
  syncfinder: syncfinderProvider,
};

/** Builds the runnable source for one configured source. */
export function createSource(config: SourceConfig, options: FinderSourceOptions = {}): Source {
  if (config.type === 'yunhu') return new YunhuSource(config, options);
  return new FinderSource(FINDER_PROVIDERS[config.type], config, options);
}
