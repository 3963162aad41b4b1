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
    // Amman went back from 01:00 (+03) to 00:00 (+02): midnight came twice, first at 21:00 UTC.
    expect(iso(dayStartMs('2020-10-30', 'Asia/Amman'))).toBe('2020-10-29T21:00:00.000Z');
    // 00:00 (-03) goes back to 23:00 (-04) of the day before; the day starts at 00:00 -04.
    expect(iso(dayStartMs('2025-04-06', 'America/Santiago'))).toBe('2025-04-06T04:00:00.000Z');
    expect(iso(dayStartMs('2024-03-31', 'Europe/Berlin'))).toBe('2024-03-30T23:00:00.000Z');
  });

  it('agrees with a search for the first instant of the day on every day around a DST change, 2010-2024', () => {
    const zones = ['America/Santiago', 'America/Sao_Paulo', 'America/Havana', 'Asia/Amman', 'Asia/Gaza', 'Asia/Beirut', 'Asia/Tehran', 'Europe/Berlin', 'America/New_York', 'Australia/Lord_Howe', 'Pacific/Apia', 'Asia/Shanghai'];
    let checked = 0;
    for (const zone of zones) {
      const fmt = new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' });
      const offsetName = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset' });
      const local = (ms: number): string => fmt.format(ms);
      // The first minute whose local day is `target` or later, searched within two days of UTC midnight.
      const firstInstant = (target: string): number => {
        const wall = Date.parse(`${target}T00:00:00Z`);
        let lo = (wall - 30 * 3_600_000) / 60_000;
        let hi = (wall + 30 * 3_600_000) / 60_000;
        while (lo < hi) {
          const mid = Math.floor((lo + hi) / 2);
          if (local(mid * 60_000) >= target) hi = mid;
          else lo = mid + 1;
        }
        return lo * 60_000;
      };
      let previous = '';
      for (let t = Date.parse('2010-01-01T12:00:00Z'); t < Date.parse('2025-01-01T00:00:00Z'); t += 86_400_000) {
        // A change of the UTC offset between two noons: check the days around it.
        const offset = offsetName.format(t).split(' ').at(-1) ?? '';
        if (previous !== '' && offset !== previous) {
          for (const shift of [-1, 0, 1]) {
            const target = new Date(t + shift * 86_400_000).toISOString().slice(0, 10);
            if (local(firstInstant(target)) !== target) continue; // a day the zone skipped
            expect(iso(dayStartMs(target, zone)), `${zone} ${target}`).toBe(iso(firstInstant(target)));
            checked++;
          }
        }
        previous = offset;
      }
    }
    expect(checked).toBeGreaterThan(500);
  });

  it('gives the whole local day as a half-open range', () => {
    expect(dateRange('2024-09-08', '2024-09-08', 'America/Santiago')).toEqual({
      from: Date.parse('2024-09-08T04:00:00Z'),
      to: Date.parse('2024-09-09T03:00:00Z'),
    });
  });
});
