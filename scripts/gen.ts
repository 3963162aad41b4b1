/**
 * Regenerates the committed generated files (`npm run gen`); tests fail when they drift.
 */
import { writeFile } from 'node:fs/promises';

import { renderConfigDocs } from '../src/core/config-docs.ts';
import { PROTO_MODULE, renderProtoModule } from './proto.ts';

await writeFile(new URL('../docs/config.md', import.meta.url), renderConfigDocs());
await writeFile(PROTO_MODULE, await renderProtoModule());
