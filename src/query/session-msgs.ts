/**
 * `GET /api/v1/chat-msg/session-msgs`: the messages between one staff member and one peer.
 *
 * Always filtered by tenant, staff and peer (`receiver_id`; msg-server returned the whole corp
 * when it was empty, and group traffic in 1:1 views, W-S4). Two ways to page:
 *
 * - offset: `page`/`page_size`, ordered by `sort_field` (`msg_time`, `id` or `seq`) and
 *   `sort_type`, with `total`;
 * - keyset: `max_id` = messages newer than that message, `min_id` = older than it (both: the
 *   messages between). The page is the `page_size` messages *adjacent* to the anchor, returned in
 *   `sort_type` order; the order is `(msg_time, msgid)`, total and stable under inserts, so
 *   walking with the newest (max_id) or oldest (min_id) item of each page visits every message
 *   once. msg-server inverted neither name but ordered and compared wrongly (W-C10).
 *
 * `send_at_start`/`send_at_end` are calendar days in `query.timezone`, the end day included
 * (msg-server: UTC, end excluded, both required, W-C11).
 */
import type { PageResult, QueryContext } from './context.ts';
import { API_CODES, ApiError } from './envelope.ts';
import { messagePage, type PageParams } from './page.ts';
import { dateRange, type SessionMsgsQuery } from './params.ts';
import { renderMessage } from './render.ts';

/** Where one message sits in the `(msg_time, msgid)` order. */
interface Anchor {
  readonly time: string;
  readonly id: string;
}

const CONVERSATION = 'tenant = {tenant:String} AND staff_id = {staff:String} AND peer_id = {peer:String}';

async function findAnchor(ctx: QueryContext, q: SessionMsgsQuery, msgid: string): Promise<Anchor> {
  const [row] = await ctx.store.query<{ t: string }>(
    `SELECT toUnixTimestamp64Milli(msg_time) AS t FROM messages WHERE ${CONVERSATION} AND msgid = {id:String} LIMIT 1`,
    { tenant: q.ext_corp_id, staff: q.ext_staff_id, peer: q.receiver_id, id: msgid },
  );
  if (row === undefined) throw new ApiError(API_CODES.NOT_FOUND, 'the max_id / min_id message is not in this conversation');
  return { time: row.t, id: msgid };
}

export async function listSessionMessages(ctx: QueryContext, q: SessionMsgsQuery): Promise<PageResult> {
  const keyset = q.max_id !== undefined || q.min_id !== undefined;
  if (keyset && q.sort_field === 'seq') {
    throw new ApiError(API_CODES.BAD_PAGING, 'max_id / min_id page in msg_time order; sort_field=seq cannot be combined with them');
  }
  const range = dateRange(q.send_at_start, q.send_at_end, ctx.timezone);
  const conditions = [CONVERSATION];
  const params: PageParams = {
    tenant: q.ext_corp_id,
    staff: q.ext_staff_id,
    peer: q.receiver_id,
    limit: q.page_size,
    offset: (q.page - 1) * q.page_size,
  };
  if (q.msg_type !== undefined) {
    conditions.push('msg_type = {msgType:String}');
    params['msgType'] = q.msg_type;
  }
  if (range.from !== undefined) {
    conditions.push("msg_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')");
    params['from'] = range.from;
  }
  if (range.to !== undefined) {
    conditions.push("msg_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')");
    params['to'] = range.to;
  }
  if (q.max_id !== undefined) {
    const after = await findAnchor(ctx, q, q.max_id);
    // The plain bound lets the primary key skip; the OR is the exact tuple order.
    conditions.push(
      "msg_time >= fromUnixTimestamp64Milli({afterT:Int64}, 'UTC')",
      "(msg_time > fromUnixTimestamp64Milli({afterT:Int64}, 'UTC') OR msgid > {afterId:String})",
    );
    params['afterT'] = after.time;
    params['afterId'] = after.id;
  }
  if (q.min_id !== undefined) {
    const before = await findAnchor(ctx, q, q.min_id);
    conditions.push(
      "msg_time <= fromUnixTimestamp64Milli({beforeT:Int64}, 'UTC')",
      "(msg_time < fromUnixTimestamp64Milli({beforeT:Int64}, 'UTC') OR msgid < {beforeId:String})",
    );
    params['beforeT'] = before.time;
    params['beforeId'] = before.id;
  }

  // Keyset: take the messages next to the anchor (ascending after max_id, descending before
  // min_id), then present them in sort_type order. Offset: sort_type order directly.
  let dir: 'ASC' | 'DESC';
  if (keyset) dir = q.max_id !== undefined ? 'ASC' : 'DESC';
  else dir = q.sort_type === 'asc' ? 'ASC' : 'DESC';
  const order = q.sort_field === 'seq' ? `seq ${dir}, msg_time ${dir}, msgid ${dir}` : `msg_time ${dir}, msgid ${dir}`;
  const { rows, total } = await messagePage(ctx, conditions.join(' AND '), order, params);
  const wanted = q.sort_type === 'asc' ? 'ASC' : 'DESC';
  if (keyset && dir !== wanted) rows.reverse();
  return { items: rows.map(renderMessage), total };
}
