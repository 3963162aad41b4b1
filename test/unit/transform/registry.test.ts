import { describe, expect, it } from 'vitest';

import { sourceSchema } from '../../../src/core/config.ts';
import { ConfigError } from '../../../src/core/errors.ts';
import { requireTransform, requireTransforms, transformForSource } from '../../../src/transform/registry.ts';

describe('transformForSource', () => {
  it('has a transform for every source type the configuration accepts', () => {
    const types = sourceSchema.options.map((option) => option.shape.type.value);
    expect(types.length).toBeGreaterThan(0);
    for (const type of types) expect(transformForSource(type), type).toBeTypeOf('function');
  });

  it('has none for a source kind this version cannot configure', () => {
    expect(transformForSource('wecom')).toBeUndefined();
  });
});

describe('requireTransform(s)', () => {
  it('returns the transform of a known type and refuses one without, naming it', () => {
    expect(requireTransform('gewe')).toBe(transformForSource('gewe'));
    expect(() => requireTransform('wecom')).toThrow(ConfigError);
    expect(() => requireTransform('wecom')).toThrow(/no transform for source type "wecom"/);
  });

  it('lists each type without a transform once, and passes when every type has one', () => {
    expect(() => { requireTransforms(['gewe', 'yunhu', 'gewe']); }).not.toThrow();
    const err: unknown = (() => {
      try {
        requireTransforms(['gewe', 'wecom', 'wecom']);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual(['sources: no transform for source type "wecom"']);
  });
});
