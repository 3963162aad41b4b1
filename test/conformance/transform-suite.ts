/**
 * The transform conformance suite (docs/component-spec.md §Transform): properties every
 * transform has, whatever it parses. Golden fixtures check what the rows say; this suite checks
 * that a transform is total, pure and exact:
 *
 * - it never throws on arbitrary bytes, nor on realistic records cut or corrupted anywhere;
 * - it is deterministic and reads no clock (the output only depends on the record and `now`);
 * - a record it cannot use becomes exactly one dead letter (`stage: transform`, a stable
 *   `MSGPIPE_ERR_*` code, `origin_key` `<source>:<cursor>#<index>`, `occurred_at = now`) that
 *   keeps exactly the original bytes in `original_base64`;
 * - 64-bit identifiers are exact decimal strings: an id taken from the input comes out digit for
 *   digit, also beyond 2^53.
 *
 * A transform runs it with one call and a set of realistic sample records (simulator traffic,
 * fixtures). The Kafka mode runs the same suite with the transform it wraps.
 */
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';

import type { RecordTransform } from '../../src/core/pipeline.ts';
import type { DeadLetterRow, Origin, RawRecord, TransformOutput } from '../../src/core/types.ts';

const NOW = 1_767_225_600_000;
const ORIGIN: Origin = { source: 'conf-transform', sourceType: 'gewe', tenant: 'corp-conformance', staffId: 'staff-conf' };

function checkShape(out: TransformOutput): void {
  expect(Array.isArray(out.messages)).toBe(true);
  expect(Array.isArray(out.events)).toBe(true);
  expect(Array.isArray(out.deadLetters)).toBe(true);
  expect(Array.isArray(out.recalls)).toBe(true);
}

/** The dead-letter contract for one record's output; returns whether it was a dead letter. */
function checkDeadLetters(record: RawRecord, out: TransformOutput, now: number): boolean {
  if (out.deadLetters.length === 0) return false;
  // One record it cannot parse becomes one dead letter, and nothing else.
  expect(out.deadLetters).toHaveLength(1);
  expect(out.messages).toEqual([]);
  expect(out.events).toEqual([]);
  expect(out.recalls).toEqual([]);
  const letter: DeadLetterRow = out.deadLetters[0]!;
  expect(letter).toMatchObject({
    tenant: record.origin.tenant,
    source: record.origin.source,
    source_type: record.origin.sourceType,
    stage: 'transform',
    origin_key: `${record.origin.source}:${record.cursor}#${record.index}`,
    occurred_at: now,
  });
  expect(letter.error_code).toMatch(/^MSGPIPE_ERR_[A-Z0-9_]+$/);
  expect(Buffer.from(letter.original_base64, 'base64').equals(Buffer.from(record.bytes))).toBe(true);
  // Canonical base64, so the bytes survive any decoder.
  expect(Buffer.from(record.bytes).toString('base64')).toBe(letter.original_base64);
  return true;
}

/** Every identifier-like column is an exact decimal string (never a float or an exponent). */
function checkIdColumns(out: TransformOutput, options: TransformSuiteOptions = {}): void {
  const msgid = options.msgidPattern;
  for (const m of out.messages) {
    if (msgid === undefined) {
      expect(m.msgid).toMatch(/^\d{1,20}$/);
      expect(BigInt(m.msgid) < 2n ** 64n).toBe(true);
      expect(m.pre_msgid).toMatch(/^(\d{1,20})?$/);
    } else {
      expect(m.msgid).toMatch(msgid);
      if (m.pre_msgid !== '') expect(m.pre_msgid).toMatch(msgid);
    }
    expect(m.seq).toMatch(/^\d{1,20}$/);
    expect(BigInt(m.seq) < 2n ** 64n).toBe(true);
    expect(m.legacy_msgid).toMatch(/^(-?\d{1,20})?$/);
  }
  for (const e of out.events) expect(e.event_id).toMatch(/^[0-9A-Za-z_:-]{1,128}$/);
  for (const r of out.recalls) expect(r.target_msgid).toMatch(msgid ?? /^\d{1,20}$/);
  for (const e of out.edits ?? []) expect(e.target_msgid).toMatch(msgid ?? /^\d{1,20}$/);
  for (const h of out.editHistory ?? []) expect(h.edit_id).toMatch(/^\d{1,20}$/);
}

/**
 * What differs between transforms. The defaults fit the WeChat Channels items: decimal
 * NewMsgIds that stand as bare integers in the JSON text.
 */
export interface TransformSuiteOptions {
  /** Shape of msgid / pre_msgid / recall targets (default: up to 20 decimal digits). */
  readonly msgidPattern?: RegExp;
  /**
   * How 64-bit exactness is checked: `rewrite` puts `value` into a sample (undefined when the
   * sample carries no such field) and `read` takes it back from the output. Default: replace the
   * msgid / event_id digits in the JSON text.
   */
  readonly exact?: {
    rewrite(record: RawRecord, value: bigint): RawRecord | undefined;
    read(out: TransformOutput): string | undefined;
  };
}

function withBytes(record: RawRecord, bytes: Uint8Array): RawRecord {
  return { ...record, bytes };
}

/** Bare integers of 16+ digits in the text (64-bit ids JavaScript numbers cannot hold). */
function bigIntegers(text: string): Set<string> {
  return new Set([...text.matchAll(/(?<![\d.])\d{16,20}(?![\d.])/g)].map((m) => m[0]));
}

/**
 * Runs the transform contract cases.
 *
 * @param name the suite's name (the transform)
 * @param transform the transform under test
 * @param samples realistic records (valid and malformed) to mutate and check; keep a few hundred at most
 */
export function transformConformance(name: string, transform: RecordTransform, samples: readonly RawRecord[], options: TransformSuiteOptions = {}): void {
  describe(`transform conformance: ${name}`, () => {
    afterEach(() => {
      vi.useRealTimers();
    });

    it('has samples that exercise rows and dead letters', () => {
      const outs = samples.map((r) => transform(r, NOW));
      expect(outs.some((o) => o.messages.length > 0)).toBe(true);
      expect(outs.some((o) => o.deadLetters.length > 0)).toBe(true);
    });

    it('never throws on arbitrary bytes, and dead-letters what it cannot parse with the exact bytes', () => {
      let letters = 0;
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 600 }),
          fc.string({ maxLength: 40 }),
          fc.nat(10_000),
          fc.integer({ min: 0, max: 4_102_444_800_000 }),
          (bytes, cursor, index, now) => {
            const record: RawRecord = { origin: ORIGIN, bytes, fetchedAt: now, cursor, index };
            const out = transform(record, now);
            checkShape(out);
            if (checkDeadLetters(record, out, now)) letters++;
          },
        ),
        { numRuns: 1500 },
      );
      // Random bytes are almost never a valid record.
      expect(letters).toBeGreaterThan(1000);
    });

    it('never throws on a sample cut or corrupted at any byte', () => {
      fc.assert(
        fc.property(
          fc.nat(Math.max(0, samples.length - 1)),
          fc.double({ min: 0, max: 1, noNaN: true }),
          fc.integer({ min: 0, max: 255 }),
          fc.constantFrom('cut', 'corrupt', 'insert'),
          (n, where, byte, how) => {
            const sample = samples[n]!;
            const b = sample.bytes;
            const at = Math.min(b.length, Math.floor(where * b.length));
            const bytes =
              how === 'cut'
                ? b.slice(0, at)
                : how === 'corrupt'
                  ? Uint8Array.from(b, (v, i) => (i === at ? byte : v))
                  : Buffer.concat([b.subarray(0, at), Uint8Array.of(byte), b.subarray(at)]);
            const record = withBytes(sample, bytes);
            const out = transform(record, NOW);
            checkShape(out);
            checkDeadLetters(record, out, NOW);
            checkIdColumns(out, options);
          },
        ),
        { numRuns: 3000 },
      );
    });

    it('dead-letters truncated and non-UTF-8 samples with their exact bytes', () => {
      let cutLetters = 0;
      for (const sample of samples) {
        // Bytes that are UTF-8 in no position (0xff, 0xfe) and a lead byte with nothing after it:
        // every sample with them is refused, each as one dead letter with exactly these bytes.
        const invalid = withBytes(sample, Buffer.concat([sample.bytes, Uint8Array.of(0xff, 0xfe, 0xc3)]));
        expect(checkDeadLetters(invalid, transform(invalid, NOW), NOW)).toBe(true);
        // A cut can end on a boundary that is valid in its own right (a protobuf field): most,
        // not all, are refused.
        const cut = withBytes(sample, sample.bytes.slice(0, Math.floor(sample.bytes.length / 2)));
        if (checkDeadLetters(cut, transform(cut, NOW), NOW)) cutLetters++;
      }
      expect(cutLetters).toBeGreaterThan(samples.length / 2);
    });

    it('is deterministic, reads no clock and leaves its input alone', () => {
      const inputs = [...samples, ...samples.map((s) => withBytes(s, s.bytes.slice(0, Math.floor(s.bytes.length * 0.7))))];
      const before = inputs.map((r) => Buffer.from(r.bytes));
      vi.useFakeTimers({ toFake: ['Date', 'performance'] });
      vi.setSystemTime(new Date('2001-02-03T04:05:06Z'));
      const first = inputs.map((r) => transform(r, NOW));
      vi.setSystemTime(new Date('2033-03-04T05:06:07Z'));
      const second = inputs.map((r) => transform(r, NOW));
      vi.useRealTimers();
      const third = inputs.map((r) => transform(r, NOW));
      expect(second).toEqual(first);
      expect(third).toEqual(first);
      inputs.forEach((r, i) => {
        expect(Buffer.from(r.bytes).equals(before[i]!)).toBe(true);
      });
      // `now` is the only time: dead letters carry it.
      const later = inputs.map((r) => transform(r, NOW + 1234));
      later.forEach((out) => {
        for (const d of out.deadLetters) expect(d.occurred_at).toBe(NOW + 1234);
      });
    });

    it('keeps 64-bit identifiers exact', () => {
      const outs = samples.map((r) => transform(r, NOW));
      for (const out of outs) checkIdColumns(out, options);
      const { exact } = options;
      if (exact !== undefined) {
        const carriers = samples.filter((r) => exact.rewrite(r, 2n ** 63n) !== undefined);
        expect(carriers.length).toBeGreaterThan(0);
        fc.assert(
          fc.property(fc.nat(carriers.length - 1), fc.bigInt({ min: 2n ** 53n + 1n, max: 2n ** 64n - 1n }), (n, value) => {
            const next = exact.rewrite(carriers[n]!, value);
            expect(next).toBeDefined();
            expect(exact.read(transform(next!, NOW))).toBe(value.toString());
          }),
          { numRuns: 1000 },
        );
        return;
      }

      // Ids taken from the input: swap each for random 64-bit values; they must come out exact.
      const carriers = samples
        .map((record, n) => ({ record, out: outs[n]! }))
        .filter(({ record, out }) => {
          const text = Buffer.from(record.bytes).toString('utf8');
          const big = bigIntegers(text);
          const id = out.messages[0]?.msgid ?? out.events[0]?.event_id;
          return id !== undefined && big.has(id);
        });
      expect(carriers.length).toBeGreaterThan(0);
      fc.assert(
        fc.property(
          fc.nat(carriers.length - 1),
          fc.bigInt({ min: 2n ** 53n + 1n, max: 2n ** 64n - 1n }),
          (n, value) => {
            const { record, out } = carriers[n]!;
            const original = out.messages[0]?.msgid ?? out.events[0]?.event_id ?? '';
            const fresh = value.toString();
            fc.pre(!Buffer.from(record.bytes).toString('utf8').includes(fresh));
            const text = Buffer.from(record.bytes).toString('utf8').replace(new RegExp(`(?<![\\d.])${original}(?![\\d.])`, 'g'), fresh);
            const next = transform(withBytes(record, Buffer.from(text, 'utf8')), NOW);
            const id = out.messages.length > 0 ? next.messages[0]?.msgid : next.events[0]?.event_id;
            expect(id).toBe(fresh);
          },
        ),
        { numRuns: 1000 },
      );
    });
  });
}
