/**
 * Parameter validation of the query API: one zod schema per endpoint, and the mapping of a
 * failed field to the seed's code (1001 corp, 1002 staff, 1003 session type, 1004 message type,
 * 1005 date, 1006 paging, else 400).
 *
 * Empty values count as absent for the optional parameters: msg-server's own client sends every
 * parameter, empty ones as `name=` (msg-server study §5).
 */
import { z } from 'zod';

import { MSG_TYPES } from '../core/types.ts';
import { API_CODES, ApiError, type ApiCode } from './envelope.ts';
import type { Params } from './signature.ts';

export const SESSION_TYPES = ['internal', 'external', 'group'] as const;
/** `sort_field` values of session-msgs; anything else is refused (msg-server accepted any column, W-S9). */
export const SORT_FIELDS = ['msg_time', 'id', 'seq'] as const;
export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;
const MAX_PAGE = 100_000;

/** Empty string → undefined, so `.optional()` and `.default()` apply. */
const emptyAsAbsent = (v: unknown): unknown => (v === '' ? undefined : v);
/**
 * Empty or zero → undefined: msg-server's own client (api-server) sends `page=0` and
 * `page_size=0` for "not given", and msg-server read them as its defaults (study §4.1, §5).
 */
const zeroAsAbsent = (v: unknown): unknown => (v === '' || (typeof v === 'string' && /^0+$/.test(v)) ? undefined : v);

const id = (max: number) => z.string().min(1).max(max);
const optionalText = (max: number) => z.preprocess(emptyAsAbsent, z.string().max(max).optional());
const pageInt = (min: number, max: number, fallback: number) =>
  z.preprocess(zeroAsAbsent, z.string().regex(/^\d{1,7}$/).transform(Number).pipe(z.number().int().min(min).max(max)).optional())
    .transform((v) => v ?? fallback);
const date = z.preprocess(emptyAsAbsent, z.string().regex(/^\d{4}-\d{2}-\d{2}$/).refine(isRealDate).optional());

const corp = id(128);
const staff = id(256);
const paging = {
  page: pageInt(1, MAX_PAGE, 1),
  page_size: pageInt(1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE),
};

/**
 * `/sync` takes its tenant and the signature fields, nothing else: as it needs no other
 * parameter, extra ones would let the signature of any GET of the tenant be posted here again.
 */
export const syncSchema = z.strictObject({
  ext_corp_id: corp,
  signature: z.string(),
  timestamp: z.string().optional(),
  nonce: z.string().optional(),
});

export const sessionsSchema = z.object({
  ext_corp_id: corp,
  ext_staff_id: staff,
  session_type: z.enum(SESSION_TYPES),
  name: optionalText(64),
  ...paging,
  // Signed and accepted for msg-server clients, which send them; the list is newest first.
  sort_field: optionalText(32),
  sort_type: optionalText(8),
});

export const sessionMsgsSchema = z.object({
  ext_corp_id: corp,
  ext_staff_id: staff,
  receiver_id: id(256),
  msg_type: z.preprocess(emptyAsAbsent, z.enum(MSG_TYPES).optional()),
  send_at_start: date,
  send_at_end: date,
  max_id: optionalText(128),
  min_id: optionalText(128),
  ...paging,
  sort_field: z.preprocess(emptyAsAbsent, z.enum(SORT_FIELDS).default('msg_time')),
  // Any case: msg-server put the value into its ORDER BY, where `DESC` works as well as `desc`.
  sort_type: z.preprocess((v) => emptyAsAbsent(typeof v === 'string' ? v.toLowerCase() : v), z.enum(['asc', 'desc']).default('desc')),
  // msg-server's unused "context size"; accepted (and signed) so its clients keep working.
  limit: optionalText(16),
});

export const searchSchema = z.object({
  ext_corp_id: corp,
  ext_staff_id: staff,
  ext_peer_id: id(256),
  keyword: z.string().min(1).max(100),
  ...paging,
});

export type SessionsQuery = z.infer<typeof sessionsSchema>;
export type SessionMsgsQuery = z.infer<typeof sessionMsgsSchema>;
export type SearchQuery = z.infer<typeof searchSchema>;

const FIELD_CODES: Readonly<Record<string, ApiCode>> = {
  ext_corp_id: API_CODES.INVALID_CORP,
  ext_staff_id: API_CODES.INVALID_STAFF,
  session_type: API_CODES.INVALID_SESSION_TYPE,
  msg_type: API_CODES.INVALID_MSG_TYPE,
  send_at_start: API_CODES.BAD_DATE,
  send_at_end: API_CODES.BAD_DATE,
  page: API_CODES.BAD_PAGING,
  page_size: API_CODES.BAD_PAGING,
};

/**
 * Parses `params` with `schema`.
 *
 * @throws {ApiError} with the code of the first failing field, and a message naming the field.
 */
export function parseParams<T>(schema: z.ZodType<T>, params: Params): T {
  const result = schema.safeParse(params);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const field = typeof issue?.path[0] === 'string' ? issue.path[0] : '';
  const code = FIELD_CODES[field] ?? API_CODES.BAD_REQUEST;
  throw new ApiError(code, field === '' ? 'invalid request parameters' : `invalid parameter ${field}`);
}

function isRealDate(text: string): boolean {
  const [y, m, d] = text.split('-').map(Number) as [number, number, number];
  const t = new Date(Date.UTC(y, m - 1, d));
  return y >= 1970 && y <= 9999 && t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

const DAY_MS = 86_400_000;

/** Formatters per time zone: making one costs far more than using it. */
const clockFormats = new Map<string, Intl.DateTimeFormat>();
const dayFormats = new Map<string, Intl.DateTimeFormat>();

function formatIn(cache: Map<string, Intl.DateTimeFormat>, locale: string, timeZone: string, options: Intl.DateTimeFormatOptions): Intl.DateTimeFormat {
  let format = cache.get(timeZone);
  if (format === undefined) {
    format = new Intl.DateTimeFormat(locale, { timeZone, ...options });
    cache.set(timeZone, format);
  }
  return format;
}

/** Offset of `timeZone` from UTC at instant `utcMs`, in ms (Asia/Shanghai: +8 h). */
function zoneOffsetMs(utcMs: number, timeZone: string): number {
  const parts = formatIn(clockFormats, 'en-US', timeZone, {
    hourCycle: 'h23',
    year: 'numeric',
    month: '2-digit',
    day: '2-digit',
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
  }).formatToParts(new Date(utcMs));
  const get = (type: string): number => Number(parts.find((p) => p.type === type)?.value ?? 0);
  const asUtc = Date.UTC(get('year'), get('month') - 1, get('day'), get('hour'), get('minute'), get('second'));
  return asUtc - Math.floor(utcMs / 1000) * 1000;
}

/** The calendar day (`YYYY-MM-DD`) of instant `utcMs` in `timeZone`. */
function localDay(utcMs: number, timeZone: string): string {
  // en-CA writes a date as YYYY-MM-DD.
  return formatIn(dayFormats, 'en-CA', timeZone, { year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date(utcMs));
}

/**
 * The instant a calendar day (`YYYY-MM-DD`, plus `addDays`) starts in `timeZone`, unix ms: its
 * first instant, also where a DST change at midnight skips 00:00 (America/Santiago, 2024-09-08:
 * the day starts at 01:00, 04:00 UTC) or repeats it (Asia/Amman, 2020-10-30: the first of the
 * two midnights).
 */
export function dayStartMs(day: string, timeZone: string, addDays = 0): number {
  const [y, m, d] = day.split('-').map(Number) as [number, number, number];
  const wall = Date.UTC(y, m - 1, d + addDays);
  const target = new Date(wall).toISOString().slice(0, 10);
  // Local midnight read with each offset in force around it (a day before, at it, a day after):
  // the earliest reading that falls on the day is its start. Where midnight does not exist, the
  // reading with the offset before the change lands on the change itself, the day's first instant.
  const candidates = [...new Set([-DAY_MS, 0, DAY_MS].map((shift) => wall - zoneOffsetMs(wall + shift, timeZone)))].sort((a, b) => a - b);
  const onDay = candidates.find((c) => localDay(c, timeZone) === target);
  if (onDay !== undefined) return onDay;
  // A day the zone skipped altogether (Pacific/Apia, 2011-12-30) starts where the next one does.
  return candidates.find((c) => localDay(c, timeZone) > target) ?? wall - zoneOffsetMs(wall, timeZone);
}

/** `send_at_start` / `send_at_end` as a half-open range of unix ms, end date included. */
export function dateRange(start: string | undefined, end: string | undefined, timeZone: string): { from?: number; to?: number } {
  const from = start === undefined ? undefined : dayStartMs(start, timeZone);
  const to = end === undefined ? undefined : dayStartMs(end, timeZone, 1);
  if (from !== undefined && to !== undefined && from >= to) throw new ApiError(API_CODES.BAD_DATE, 'send_at_start is after send_at_end');
  return { ...(from === undefined ? {} : { from }), ...(to === undefined ? {} : { to }) };
}
