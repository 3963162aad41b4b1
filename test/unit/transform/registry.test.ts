import { describe, expect, it } from 'vitest';

import { sourceSchema } from '../../../src/core/config.ts';
import { transformForSource } from '../../../src/transform/registry.ts';

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
