/**
 * Every transform runs the transform conformance suite. Samples: simulator traffic of every
 * provider style (every message kind, the 64-bit edge ids) and the golden fixtures, malformed
 * ones included.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

import { itemSpans } from '../../src/core/json.ts';
import type { Origin, RawRecord, SourceType } from '../../src/core/types.ts';
import { DEFAULT_MIX, MessageStream, serializeItem, SIM_PROVIDERS } from '../../src/simulate/index.ts';
import { transformFinderItem } from '../../src/transform/finder.ts';
import { transformConformance } from './transform-suite.ts';

const FIXTURES = join(import.meta.dirname, '../fixtures');

function origin(sourceType: SourceType): Origin {
  return { source: `conf-${sourceType}`, sourceType, tenant: 'corp-conformance', staffId: 'staff-conf' };
}

/** 60 items per provider style, as the simulators send them (the first ~34 hold every kind). */
function simulatorSamples(): RawRecord[] {
  return SIM_PROVIDERS.flatMap((provider, p) => {
    const stream = new MessageStream({
      provider,
      seed: 7_001 + p,
      messages: 60,
      sessions: 5,
      startTime: 1_730_419_200,
      secondsPerMessage: 20,
      mix: DEFAULT_MIX,
    });
    return Array.from({ length: 60 }, (_v, i): RawRecord => ({
      origin: origin(provider),
      bytes: Buffer.from(serializeItem(stream.messageAt(i), { provider, booleanIsSender: provider === 'gewe' && i % 2 === 0 }), 'utf8'),
      fetchedAt: 1_767_225_599_000,
      cursor: `sim-${provider}`,
      index: i,
    }));
  });
}

/** Every fixture item (`<kind>/<case>.json`) and every item of the seed pages. */
function fixtureSamples(): RawRecord[] {
  const out: RawRecord[] = [];
  for (const kind of readdirSync(FIXTURES, { withFileTypes: true })) {
    if (!kind.isDirectory() || kind.name === 'simulate') continue;
    for (const file of readdirSync(join(FIXTURES, kind.name)).sort()) {
      if (!file.endsWith('.json') || file.endsWith('.rows.json')) continue;
      const buf = readFileSync(join(FIXTURES, kind.name, file));
      if (kind.name === 'seeds') {
        const spans = itemSpans(buf, ['data', 'list']) ?? [];
        spans.forEach((s, index) => {
          out.push({ origin: origin('gewe'), bytes: buf.subarray(s.start, s.end), fetchedAt: 0, cursor: `seed-${file}`, index });
        });
        continue;
      }
      let end = buf.length;
      while (end > 0 && (buf[end - 1] === 0x0a || buf[end - 1] === 0x0d)) end--;
      out.push({ origin: origin('videosapi'), bytes: buf.subarray(0, end), fetchedAt: 0, cursor: `${kind.name}/${file}`, index: out.length });
    }
  }
  return out;
}

transformConformance('transformFinderItem', transformFinderItem, [...simulatorSamples(), ...fixtureSamples()]);
