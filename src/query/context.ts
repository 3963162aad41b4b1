/**
 * What every endpoint handler gets: the store to read, the API's time zone, and how to name a
 * source's type (for `peer_type`).
 */
import type { Store } from '../sink/clickhouse.ts';

export interface QueryContext {
  readonly store: Store;
  /** IANA zone of `send_at_*` dates (`query.timezone`). */
  readonly timezone: string;
  /** The configured type of a source name (`gewe`, `yunhu`, …); '' when unknown. */
  readonly sourceType: (source: string) => string;
}

/** A page of items with the total the filters match. */
export interface PageResult {
  readonly items: readonly Record<string, unknown>[];
  readonly total: number;
}
