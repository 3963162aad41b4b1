/**
 * `GET /api/v1/chat-msg/search`: messages of one staff↔peer conversation whose searchable text
 * contains `keyword`, newest first, paged, with `total`.
 *
 * `content_text` carries a `text` index with `tokenizer = ngrams(2)`. The filter is
 * `content_text LIKE '%<keyword>%'` (the keyword's `%`, `_` and `\` escaped): ClickHouse reads
 * the index for it (`产品介绍` → granules holding `产品`, `品介` and `介绍`) and then compares the
 * substring in each row, so a two-character word inside a longer run (`这是我们最新的产品介绍`)
 * is found and scattered bigrams are not. A one-character keyword has no bigram and scans the
 * conversation. Matching is case-sensitive.
 *
 * Not `hasAllTokens`: a part with a pending lightweight update (a recall or an edit writes a
 * patch part) is filtered row by row without the index, and there `hasAllTokens` splits the text
 * on non-alphanumeric characters, so a Chinese run is one token and `产品` no longer matches
 * `…产品介绍…`. Every message of such a part went missing from search until a merge.
 * The conversation filter is ANDed with everything (msg-server's OR leaked every corp, W-S4).
 */
import type { Counted, PageResult, QueryContext } from './context.ts';
import type { SearchQuery } from './params.ts';
import { MESSAGE_COLUMNS, renderMessage, type MessageRecord } from './render.ts';

/** A LIKE pattern matching text that contains `text` literally. */
export function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export async function searchMessages(ctx: QueryContext, q: SearchQuery): Promise<PageResult> {
  const where = `tenant = {tenant:String} AND staff_id = {staff:String} AND peer_id = {peer:String}
    AND content_text LIKE {pattern:String}`;
  const params = {
    tenant: q.ext_corp_id,
    staff: q.ext_staff_id,
    peer: q.ext_peer_id,
    pattern: containsPattern(q.keyword),
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
