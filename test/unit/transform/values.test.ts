import { describe, expect, it } from 'vitest';

import { decimalNumber, joinText, leadingInt, nestsDeeperThan, toUint64Decimal, uint64Text, usv } from '../../../src/transform/values.ts';

describe('values', () => {
  it('leadingInt reads the leading integer of XML text', () => {
    expect([leadingInt(' 57 '), leadingInt('10>>'), leadingInt('2001'), leadingInt('-1'), leadingInt(''), leadingInt('abc')]).toEqual([57, 10, 2001, -1, 0, 0]);
    // Past 2^53 it is not a size: 0, never a rounded number.
    expect(leadingInt('99999999999999999')).toBe(0);
    // All the digits count: a 17- or 20-digit value is not cut to its first 16.
    expect([leadingInt('12345678901234567'), leadingInt('12345678901234567890 bytes')]).toEqual([0, 0]);
    expect(leadingInt('9007199254740991')).toBe(9007199254740991);
  });

  it('uint64Text keeps ids as exact text and refuses what is not one', () => {
    expect(uint64Text(' 18446744073709551615 ')).toBe('18446744073709551615');
    expect(uint64Text('18446744073709551616')).toBe('');
    expect(uint64Text('007')).toBe('7');
    expect(uint64Text('0')).toBe('0');
    expect(uint64Text('12a')).toBe('');
  });

  it('toUint64Decimal maps signed int64 onto the same bits unsigned', () => {
    expect(toUint64Decimal('-1')).toBe('18446744073709551615');
    expect(toUint64Decimal('-9223372036854775808')).toBe('9223372036854775808');
    expect(toUint64Decimal('-9223372036854775809')).toBeUndefined();
    expect(toUint64Decimal('3876235366388279544')).toBe('3876235366388279544');
  });

  it('decimalNumber, joinText, usv', () => {
    expect([decimalNumber('31.230416'), decimalNumber('x'), decimalNumber('')]).toEqual([31.230416, 0, 0]);
    expect(joinText(' a ', '', 'b', 'a')).toBe('a\nb');
    expect(usv('ok\ud83d')).toBe('ok\uFFFD');
    expect(usv('😂')).toBe('😂');
  });

  it('nestsDeeperThan counts arrays and objects, the value itself as level 1, at any depth', () => {
    expect([nestsDeeperThan('x', 0), nestsDeeperThan(null, 0), nestsDeeperThan(undefined, 0)]).toEqual([false, false, false]);
    expect([nestsDeeperThan([], 1), nestsDeeperThan([], 0)]).toEqual([false, true]);
    expect([nestsDeeperThan({ a: [1, { b: 2 }] }, 3), nestsDeeperThan({ a: [1, { b: 2 }] }, 2)]).toEqual([false, true]);
    // The deepest branch counts, wherever it sits.
    expect(nestsDeeperThan([1, [2], { c: [[['deep']]] }, 'x'], 4)).toBe(true);
    // A million levels: measured without recursion.
    let deep: unknown = [];
    for (let i = 1; i < 1_000_000; i++) deep = [deep];
    expect([nestsDeeperThan(deep, 999_999), nestsDeeperThan(deep, 1_000_000)]).toEqual([true, false]);
  });
});
