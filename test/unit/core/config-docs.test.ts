import { readFile } from 'node:fs/promises';

import { describe, expect, it } from 'vitest';

import { renderConfigDocs } from '../../../src/core/config-docs.ts';

describe('docs/config.md', () => {
  it('is the current rendering of the schema (run `npm run gen`)', async () => {
    const committed = await readFile(new URL('../../../docs/config.md', import.meta.url), 'utf8');
    expect(committed).toBe(renderConfigDocs());
  });

  it('documents every source type and marks secrets', () => {
    const text = renderConfigDocs();
    for (const type of ['gewe', 'videosapi', 'syncfinder']) expect(text).toContain(`with type "${type}"`);
    expect(text).toMatch(/`sources\[\]\.token` .*\*\*Secret\*\*/);
  });
});
