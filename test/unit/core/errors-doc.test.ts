import { readFile } from 'node:fs/promises';

import { describe, expect, it } from 'vitest';

import { ERROR_CODES } from '../../../src/core/errors.ts';

describe('docs/errors.md', () => {
  it('lists exactly the codes of the catalogue', async () => {
    const text = await readFile(new URL('../../../docs/errors.md', import.meta.url), 'utf8');
    const documented = [...text.matchAll(/^\| `(MSGPIPE_ERR_[A-Z0-9_]+)` \|/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(ERROR_CODES).sort());
  });
});
