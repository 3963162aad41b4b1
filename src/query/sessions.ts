/**
 * `GET /api/v1/chat-msg/sessions`: a staff member's conversations, newest first, one item per
 * session showing its latest message and the peer.
 *
 * Read from the `sessions` view over `sessions_agg` (an AggregatingMergeTree fed by a
 * materialized view), filtered on its sort key `(tenant, staff_id, session_type, …)`: it never
 * scans `messages` (msg-server ran two window functions over every message, W-P2). `name`
 * matches a substring of the peer's name, case-insensitively, within the same staff and tenant
 * (msg-server's name search crossed both, W-S4).
 */
import type { PageResult, QueryContext } from './context.ts';
import type { SessionsQuery } from './params.ts';
import { renderSession, type SessionRecord } from './render.ts';

const COLUMNS = `tenant, session_id, session_type, peer_id, peer_name, peer_avatar, last_msgid, last_action,
  last_from_id, last_tolist, room_id, last_msg_type, last_content_text, toString(last_seq) AS last_seq, source,
  toUnixTimestamp64Milli(last_msg_time) AS msg_time_ms, msg_count`;

export async function listSessions(ctx: QueryContext, q: SessionsQuery): Promise<PageResult & { page: number; page_size: number }> {
  const having = q.name === undefined ? '' : 'HAVING positionCaseInsensitiveUTF8(argMaxMerge(peer_name), {name:String}) > 0';
  const keys = `FROM sessions_agg WHERE tenant = {tenant:String} AND staff_id = {staff:String} AND session_type = {type:String}
    GROUP BY session_id ${having}`;
  const params = {
    tenant: q.ext_corp_id,
    staff: q.ext_staff_id,
    type: q.session_type,
    ...(q.name === undefined ? {} : { name: q.name }),
    limit: q.page_size,
    offset: (q.page - 1) * q.page_size,
  };
  // The page's session ids are chosen merging only the time (and the name when filtered); the
  // full rows are merged for those sessions alone. Merging every state of a staff's sessions
  // for one page, or counting with a window function, costs several times more.
  const [rows, counted] = await Promise.all([
    ctx.store.query<SessionRecord>(
      `SELECT ${COLUMNS} FROM sessions
       WHERE tenant = {tenant:String} AND staff_id = {staff:String} AND session_type = {type:String}
         AND session_id IN (SELECT session_id ${keys} ORDER BY max(last_msg_time) DESC, session_id DESC
                            LIMIT {limit:UInt32} OFFSET {offset:UInt32})
       ORDER BY last_msg_time DESC, session_id DESC`,
      params,
    ),
    ctx.store.query<{ total: string }>(`SELECT count() AS total FROM (SELECT session_id ${keys})`, params),
  ]);
  return {
    items: rows.map((row) => renderSession(row, ctx.sourceType(row.source))),
    total: Number(counted[0]?.total ?? 0),
    page: q.page,
    page_size: q.page_size,
  };
}
