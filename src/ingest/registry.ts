/**
 * The source registry: source `type` → how to build it. Adding a source is one file plus one
 * line here (docs/component-spec.md).
 */
import type { SourceConfig } from '../core/config.ts';
import { FinderSource, type FinderSourceOptions } from './finder.ts';
import { geweProvider } from './gewe.ts';
import type { Source } from './source.ts';
import { syncfinderProvider } from './syncfinder.ts';
import { videosapiProvider } from './videosapi.ts';

/** Builds the runnable source for one configured source. */
export function createSource(config: SourceConfig, options: FinderSourceOptions = {}): Source {
  switch (config.type) {
    case 'gewe':
      return new FinderSource(geweProvider, config, options);
    case 'videosapi':
      return new FinderSource(videosapiProvider, config, options);
    case 'syncfinder':
      return new FinderSource(syncfinderProvider, config, options);
  }
}
