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
import type { PageResult, QueryContext } from './context.ts';
import { messagePage } from './page.ts';
import type { SearchQuery } from './params.ts';
import { renderMessage } from './render.ts';

/** A LIKE pattern matching text that contains `text` literally. */
export function containsPattern(text: string): string {
  return `%${text.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export async function searchMessages(ctx: QueryContext, q: SearchQuery): Promise<PageResult> {
  // The LIKE is for the text index, the position for the exact match: for a pattern that ends in
  // two or more escaped backslashes (keyword `C:\\`), ClickHouse 26.7 looked up the wrong tokens
  // in the index and found nothing, so the LIKE leaves the keyword's final backslashes out.
  const where = `tenant = {tenant:String} AND staff_id = {staff:String} AND peer_id = {peer:String}
    AND content_text LIKE {pattern:String} AND position(content_text, {keyword:String}) > 0`;
  const { rows, total } = await messagePage(ctx, where, 'msg_time DESC, msgid DESC', {
    tenant: q.ext_corp_id,
    staff: q.ext_staff_id,
    peer: q.ext_peer_id,
    pattern: containsPattern(q.keyword.replace(/\\+$/, '')),
    keyword: q.keyword,
    limit: q.page_size,
    offset: (q.page - 1) * q.page_size,
  });
  return { items: rows.map(renderMessage), total };
}
