/**
 * Golden fixtures: `test/fixtures/<kind>/<case>.json` is a raw item exactly as a provider sends
 * it (big ints as bare numbers); `<case>.rows.json` is the TransformOutput expected for it with
 * a fixed origin and `now`. `test/fixtures/seeds/*.json` are whole provider pages, split into
 * items with `itemSpans` like the ingest stage does; their rows file is one output per item.
 *
 * Regenerate after an intended change, then review every diff by hand:
 *   MSGPIPE_UPDATE_GOLDENS=1 npx vitest run --project unit test/unit/transform/golden.test.ts
 */
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { itemSpans } from '../../../src/core/json.ts';
import type { Origin, SourceType, TransformOutput } from '../../../src/core/types.ts';
import { transformFinderItem } from '../../../src/transform/finder.ts';

const FIXTURES = join(import.meta.dirname, '../../fixtures');
/** Owned by the simulator; not transform goldens. */
const NOT_GOLDEN = new Set(['simulate']);
const UPDATE = process.env['MSGPIPE_UPDATE_GOLDENS'] === '1';

/** Fixed inputs, so goldens do not change with the clock. */
export const GOLDEN_NOW = 1_767_225_600_000;
export function goldenOrigin(sourceType: SourceType): Origin {
  return { source: `golden-${sourceType}`, sourceType, tenant: 'corp123', staffId: 'staff-a' };
}

function itemBytes(file: string): Uint8Array {
  const buf = readFileSync(file);
  // Editors end files with a newline; the item is the bytes before it.
  let end = buf.length;
  while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d)) end--;
  return new Uint8Array(buf.buffer, buf.byteOffset, end);
}

function runItem(file: string): TransformOutput {
  return transformFinderItem(
    { origin: goldenOrigin('gewe'), bytes: itemBytes(file), fetchedAt: GOLDEN_NOW - 1000, cursor: 'golden-cursor', index: 0 },
    GOLDEN_NOW,
  );
}

function runPage(file: string, sourceType: SourceType): TransformOutput[] {
  const body = new Uint8Array(readFileSync(file));
  const spans = itemSpans(body, ['data', 'list']) ?? [];
  return spans.map((s, index) =>
    transformFinderItem(
      { origin: goldenOrigin(sourceType), bytes: body.subarray(s.start, s.end), fetchedAt: GOLDEN_NOW - 1000, cursor: 'golden-cursor', index },
      GOLDEN_NOW,
    ),
  );
}

function cases(): { kind: string; name: string; file: string }[] {
  const out: { kind: string; name: string; file: string }[] = [];
  for (const kind of readdirSync(FIXTURES, { withFileTypes: true })) {
    if (!kind.isDirectory() || NOT_GOLDEN.has(kind.name)) continue;
    for (const f of readdirSync(join(FIXTURES, kind.name))) {
      if (f.endsWith('.json') && !f.endsWith('.rows.json')) {
        out.push({ kind: kind.name, name: f.slice(0, -'.json'.length), file: join(FIXTURES, kind.name, f) });
      }
    }
  }
  return out.sort((a, b) => (a.kind + a.name).localeCompare(b.kind + b.name));
}

const ALL = cases();

describe('golden fixtures', () => {
  it('cover every document kind, malformed items and both finder seeds', () => {
    const kinds = new Set(ALL.map((c) => c.kind));
    const missing = [
      'text', 'image', 'voice', 'video', 'emoji', 'location', 'card', 'link', 'file', 'file_upload', 'weapp',
      'finder_feed', 'finder_live', 'quote', 'chatrecord', 'transfer', 'redpacket', 'revoke', 'pat', 'system',
      'functionmsg', 'finderliveclosenotify', 'control', 'statusnotify', 'unknown', 'malformed', 'seeds',
    ].filter((k) => !kinds.has(k));
    expect(missing).toEqual([]);
    expect(ALL.map((c) => `${c.kind}/${c.name}`)).toEqual(expect.arrayContaining(['seeds/gewe-page', 'seeds/syncfinder-page']));
  });

  it.each(ALL.map((c) => [`${c.kind}/${c.name}`, c] as const))('%s', (_label, c) => {
    const actual =
      c.kind === 'seeds' ? runPage(c.file, c.name.startsWith('syncfinder') ? 'syncfinder' : 'gewe') : runItem(c.file);
    const rowsFile = c.file.replace(/\.json$/, '.rows.json');
    if (UPDATE) writeFileSync(rowsFile, `${JSON.stringify(actual, null, 2)}\n`);
    // A missing rows file: run with MSGPIPE_UPDATE_GOLDENS=1, then review it by hand.
    expect(existsSync(rowsFile)).toBe(true);
    expect(actual).toEqual(JSON.parse(readFileSync(rowsFile, 'utf8')));
  });
});
