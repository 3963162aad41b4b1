/**
 * `GET /api/v1/chat-msg/search`: messages of one staff↔peer conversation whose searchable text
 * contains `keyword`, newest first, paged, with `total`.
 *
 * `content_text` carries a `text` index with `tokenizer = ngrams(2)`: `hasAllTokens` finds the
 * granules holding every bigram of the keyword (`产品介绍` → `产品`, `品介`, `介绍`), and
 * `positionUTF8` keeps only texts holding the keyword itself, so a two-character word inside a
 * longer run (`这是我们最新的产品介绍`) is found and scattered bigrams are not. A one-character
 * keyword has no bigram and is matched by `positionUTF8` alone. Matching is case-sensitive.
 * The conversation filter is ANDed with everything (msg-server's OR leaked every corp, W-S4).
 */
import type { Counted, PageResult, QueryContext } from './context.ts';
import type { SearchQuery } from './params.ts';
import { MESSAGE_COLUMNS, renderMessage, type MessageRecord } from './render.ts';

export async function searchMessages(ctx: QueryContext, q: SearchQuery): Promise<PageResult> {
  const indexed = Array.from(q.keyword).length >= 2 ? 'hasAllTokens(content_text, {keyword:String}) AND ' : '';
  const where = `tenant = {tenant:String} AND staff_id = {staff:String} AND peer_id = {peer:String}
    AND ${indexed}positionUTF8(content_text, {keyword:String}) > 0`;
  const params = {
    tenant: q.ext_corp_id,
    staff: q.ext_staff_id,
    peer: q.ext_peer_id,
    keyword: q.keyword,
    limit: q.page_size,
    offset: (q.page - 1) * q.page_size,
  };
  const rows = await ctx.store.query<MessageRecord & Counted>(
    `SELECT ${MESSAGE_COLUMNS}, count() OVER () AS total FROM messages WHERE ${where}
     ORDER BY msg_time DESC, msgid DESC LIMIT {limit:UInt32} OFFSET {offset:UInt32}`,
    params,
  );
  let total = Number(rows[0]?.total ?? 0);
  if (rows.length === 0 && q.page > 1) {
    const [count] = await ctx.store.query<{ total: string }>(`SELECT count() AS total FROM messages WHERE ${where}`, params);
    total = Number(count?.total ?? 0);
  }
  return { items: rows.map(renderMessage), total };
}
