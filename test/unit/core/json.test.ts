import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { decodeUtf8, isNullAt, itemSpans, JsonDepthError, parseLossless, scanArray, toDecimal, valueStart } from '../../../src/core/json.ts';

describe('parseLossless', () => {
  it('keeps 64-bit ids exact as decimal strings', () => {
    const v = parseLossless('{"NewMsgId": 3876235366388279544, "MsgType": 1, "x": -9223372036854775808}') as Record<
      string,
      unknown
    >;
    expect(v).toEqual({ NewMsgId: '3876235366388279544', MsgType: 1, x: '-9223372036854775808' });
  });

  it('leaves digits inside strings, fractions and exponents alone', () => {
    const text = '{"s":"12345678901234567890 \\" 99999999999999999","f":1234567890123456.5,"e":12345678901234567e2}';
    expect(parseLossless(text)).toEqual(JSON.parse(text));
  });

  it('keeps long fractions and exponents as numbers', () => {
    const text = '{"a":0.30000000000000004,"b":-0.1234567890123456,"c":1e+1234567890123456,"d":12345678901234567E-2,"id":1234567890123456789}';
    expect(parseLossless(text)).toEqual({ ...(JSON.parse(text) as object), id: '1234567890123456789' });
  });

  it('round-trips any uint64 exactly', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (n) => {
        const v = parseLossless(`[${n.toString()}]`) as unknown[];
        expect(toDecimal(v[0])).toBe(n.toString());
      }),
    );
  });

  it('rejects text that is not JSON', () => {
    expect(() => parseLossless('{"a": 12345678901234567890')).toThrow();
    expect(() => parseLossless('{"a": "unterminated')).toThrow();
    // Leading zeros are not JSON, however many digits follow.
    expect(() => parseLossless('{"a": 01}')).toThrow(SyntaxError);
    expect(() => parseLossless('{"a": 00000000000000012}')).toThrow(SyntaxError);
    expect(() => parseLossless('{"a": -00000000000000012}')).toThrow(SyntaxError);
    expect(parseLossless('{"a": 0, "b": 10000000000000012}')).toEqual({ a: 0, b: '10000000000000012' });
  });

  it('refuses nesting past maxDepth, counting only brackets outside strings', () => {
    expect(parseLossless('{"a":[{"b":[1]}]}', { maxDepth: 4 })).toEqual({ a: [{ b: [1] }] });
    expect(() => parseLossless('{"a":[{"b":[1]}]}', { maxDepth: 3 })).toThrow(JsonDepthError);
    expect(parseLossless('[["[[[[","}}}]]]",12345678901234567890]]', { maxDepth: 2 })).toEqual([['[[[[', '}}}]]]', '12345678901234567890']]);
    // Siblings do not add up: depth is how deep, not how many.
    expect(parseLossless(`[${'[],'.repeat(1000)}[]]`, { maxDepth: 2 })).toHaveLength(1001);
    expect(() => parseLossless('['.repeat(200_000) + ']'.repeat(200_000), { maxDepth: 64 })).toThrow(/nested deeper than 64 levels at offset 64/);
  });
});

describe('toDecimal', () => {
  it('accepts safe numbers and digit strings only', () => {
    expect(toDecimal(42)).toBe('42');
    expect(toDecimal('1767797523284146072')).toBe('1767797523284146072');
    expect(toDecimal(2 ** 60)).toBeUndefined();
    expect(toDecimal('12a')).toBeUndefined();
    expect(toDecimal({})).toBeUndefined();
  });
});

describe('itemSpans', () => {
  it('slices the exact bytes of each item', () => {
    const body = Buffer.from(
      '{ "ret" : 200, "data": {"keyBuff":"a]b", "list" : [ {"a":"x}\\"]"} ,{"b":[1,{"c":2}]},3 ] } }',
    );
    const spans = itemSpans(body, ['data', 'list'])!;
    expect(spans.map((s) => body.subarray(s.start, s.end).toString())).toEqual([
      '{"a":"x}\\"]"}',
      '{"b":[1,{"c":2}]}',
      '3',
    ]);
  });

  it('keeps invalid UTF-8 inside an item exactly', () => {
    const body = Buffer.concat([Buffer.from('{"data":{"list":[{"s":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}]}}')]);
    const [span] = itemSpans(body, ['data', 'list'])!;
    const item = body.subarray(span!.start, span!.end);
    expect([...item.subarray(6, 8)]).toEqual([0xff, 0xfe]);
    expect(decodeUtf8(item)).toBeUndefined();
  });

  it('gives undefined for a missing or null list and an empty array for []', () => {
    expect(itemSpans(Buffer.from('{"data":null}'), ['data', 'list'])).toBeUndefined();
    expect(itemSpans(Buffer.from('{"data":{"list":null}}'), ['data', 'list'])).toBeUndefined();
    expect(itemSpans(Buffer.from('{"data":{"list":[]}}'), ['data', 'list'])).toEqual([]);
  });

  it('throws on truncated pages', () => {
    expect(() => itemSpans(Buffer.from('{"data":{"list":[{"a":1},{"b":'), ['data', 'list'])).toThrow();
  });
});

describe('valueStart and scanArray', () => {
  const body = Buffer.from('{"ret":200, "data": {"list" : [ {"a":"]"} , 2 ] , "keyBuff":"k"}, "z":null}');

  it('find a value by path and the exact end of an array', () => {
    const at = valueStart(body, ['data', 'list'])!;
    expect(body[at]).toBe(0x5b);
    const scan = scanArray(body, at)!;
    expect(scan.items.map((s) => body.subarray(s.start, s.end).toString())).toEqual(['{"a":"]"}', '2']);
    expect(body.subarray(scan.end).toString()).toBe(' , "keyBuff":"k"}, "z":null}');
    expect(scanArray(Buffer.from('[ ]x'), 0)).toEqual({ items: [], end: 3 });
  });

  it('give undefined for a missing path or a value that is not an array', () => {
    expect(valueStart(body, ['data', 'nope'])).toBeUndefined();
    expect(valueStart(body, ['ret', 'list'])).toBeUndefined();
    expect(scanArray(body, valueStart(body, ['ret'])!)).toBeUndefined();
  });

  it('tells the literal null from values that only start like it', () => {
    expect(isNullAt(body, valueStart(body, ['z'])!)).toBe(true);
    expect(isNullAt(Buffer.from('null'), 0)).toBe(true);
    expect(isNullAt(Buffer.from('nullx'), 0)).toBe(false);
    expect(isNullAt(Buffer.from('"null"'), 0)).toBe(false);
    expect(isNullAt(Buffer.from('nul'), 0)).toBe(false);
  });
});
