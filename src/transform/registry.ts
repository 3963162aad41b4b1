/**
 * The transform registry: source type → the pure transform of its raw records. The embedded
 * pipeline and the Kafka transform consumers both pick transforms here, so a new source kind is
 * one file plus one line (docs/component-spec.md §Transform).
 */
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
