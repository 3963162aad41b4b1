/**
 * The transform registry: source type → the pure transform of its raw records. The embedded
 * pipeline and the Kafka transform consumers both pick transforms here, so a new source kind is
 * one file plus one line (docs/component-spec.md §Transform).
 */
import { ConfigError } from '../core/errors.ts';
import type { RecordTransform } from '../core/pipeline.ts';
import type { SourceType } from '../core/types.ts';
import { transformFinderItem } from './finder.ts';
import { transformYunhuRecord } from './yunhu.ts';

const TRANSFORMS: Readonly<Partial<Record<SourceType, RecordTransform>>> = {
  gewe: transformFinderItem,
  videosapi: transformFinderItem,
  syncfinder: transformFinderItem,
  yunhu: transformYunhuRecord,
};

/** The transform for records of `type`, or `undefined` when this version has none. */
export function transformForSource(type: SourceType): RecordTransform | undefined {
  return TRANSFORMS[type];
}

function noTransform(types: readonly SourceType[]): ConfigError {
  return new ConfigError(types.map((t) => `sources: no transform for source type "${t}"`));
}

/**
 * Checks that every source type of `types` has a transform.
 *
 * @throws ConfigError listing each type without one
 */
export function requireTransforms(types: Iterable<SourceType>): void {
  const missing = [...new Set(types)].filter((t) => TRANSFORMS[t] === undefined);
  if (missing.length > 0) throw noTransform(missing);
}

/**
 * The transform for records of `type`.
 *
 * @throws ConfigError when this version has none
 */
export function requireTransform(type: SourceType): RecordTransform {
  const transform = TRANSFORMS[type];
  if (transform === undefined) throw noTransform([type]);
  return transform;
}
