/**
 * Regenerates the committed generated files (`npm run gen`); tests fail when they drift.
 */
import { writeFile } from 'node:fs/promises';

import { renderConfigDocs } from '../src/core/config-docs.ts';

await writeFile(new URL('../docs/config.md', import.meta.url), renderConfigDocs());
