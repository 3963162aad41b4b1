/** Calendar days of `send_at_start` / `send_at_end` in `query.timezone`, across DST changes. */
import { describe, expect, it } from 'vitest';

import { dateRange, dayStartMs } from '../../../src/query/params.ts';

const iso = (ms: number): string => new Date(ms).toISOString();

describe('dayStartMs', () => {
  it('is local midnight in a zone without DST', () => {
    expect(iso(dayStartMs('2024-01-15', 'Asia/Shanghai'))).toBe('2024-01-14T16:00:00.000Z');
    expect(iso(dayStartMs('2024-01-15', 'Asia/Shanghai', 1))).toBe('2024-01-15T16:00:00.000Z');
  });

  it('is the first instant of a day whose midnight DST skips, not an hour of the day before', () => {
    // Clocks jump from 00:00 to 01:00: the day starts at 01:00 local.
    expect(iso(dayStartMs('2024-09-08', 'America/Santiago'))).toBe('2024-09-08T04:00:00.000Z');
    expect(iso(dayStartMs('2018-11-04', 'America/Sao_Paulo'))).toBe('2018-11-04T03:00:00.000Z');
    expect(iso(dayStartMs('2024-03-10', 'America/Havana'))).toBe('2024-03-10T05:00:00.000Z');
    // As the end of the day before (send_at_end = 2024-09-07): its last hour is included.
    expect(iso(dayStartMs('2024-09-07', 'America/Santiago', 1))).toBe('2024-09-08T04:00:00.000Z');
  });

  it('is the first of the two midnights when DST repeats midnight', () => {
    // 00:00 (-03) goes back to 23:00 (-04) of the day before; the day starts at 00:00 -04.
    expect(iso(dayStartMs('2025-04-06', 'America/Santiago'))).toBe('2025-04-06T04:00:00.000Z');
    expect(iso(dayStartMs('2024-03-31', 'Europe/Berlin'))).toBe('2024-03-30T23:00:00.000Z');
  });

  it('gives the whole local day as a half-open range', () => {
    expect(dateRange('2024-09-08', '2024-09-08', 'America/Santiago')).toEqual({
      from: Date.parse('2024-09-08T04:00:00Z'),
      to: Date.parse('2024-09-09T03:00:00Z'),
    });
  });
});
