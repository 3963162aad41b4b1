/**
 * A small test client for the simulators: real HTTP (undici `request`), lossless NewMsgId
 * handling, and a retrying pull loop like the one a correct ingest must implement.
 */

import { request } from 'undici';

import type { SimulatorHandle } from '../../../src/simulate/index.ts';

export interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly bytes: Buffer;
  readonly text: string;
}

/** One item with its 64-bit numbers kept as strings. */
export interface Item {
  readonly raw: string;
  readonly newMsgId: string;
  readonly msgSessionId: string;
  readonly msgType: unknown;
  readonly content: unknown;
}

export interface Page {
  readonly ok: boolean;
  readonly items: Item[];
  readonly keyBuff: string | undefined;
  readonly envelope: Record<string, unknown>;
}

/** Sends one sync request for the account (provider, path, auth header and body by provider). */
export async function sync(
  sim: SimulatorHandle,
  accountId: string,
  keyBuff: string | undefined,
  options: { token?: string | null; body?: string } = {},
): Promise<RawResponse> {
  const info = sim.accounts().find((a) => a.id === accountId);
  if (info === undefined) throw new Error(`no account ${accountId}`);
  const header = info.provider === 'gewe' ? 'X-GEWE-TOKEN' : info.provider === 'videosapi' ? 'VideosApi-token' : 'Authorization';
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  const token = options.token === undefined ? info.token : options.token;
  if (token !== null) headers[header] = token;
  const loginKey = info.provider === 'syncfinder' ? 'wId' : 'appId';
  const body =
    options.body ?? JSON.stringify(keyBuff === undefined ? { [loginKey]: info.login } : { [loginKey]: info.login, keyBuff });
  const res = await request(info.endpoint, { method: 'POST', headers, body });
  const bytes = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, bytes, text: bytes.toString('utf8') };
}

/** Splits the top-level items of `"list":[…]` by bracket depth, keeping each item's exact text. */
export function splitItems(body: string): string[] {
  const start = body.indexOf('"list":[');
  if (start < 0) return [];
  const items: string[] = [];
  let depth = 0;
  let inString = false;
  let itemStart = -1;
  for (let i = start + 8; i < body.length; i++) {
    const c = body[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (c === '"') inString = true;
    else if (c === '{') {
      if (depth === 0) itemStart = i;
      depth++;
    } else if (c === '}') {
      depth--;
      if (depth === 0) items.push(body.slice(itemStart, i + 1));
    } else if (c === ']' && depth === 0) break;
  }
  return items;
}

/** Parses a page; 64-bit numbers are read from the raw text so no digit is lost. */
export function parsePage(text: string): Page {
  const envelope = JSON.parse(text) as Record<string, unknown>;
  const ok = envelope['ret'] === 200 || envelope['code'] === '1000';
  const data = envelope['data'] as { keyBuff?: string } | null | undefined;
  const items = ok
    ? splitItems(text).map((raw) => {
        const parsed = JSON.parse(raw) as { content: { msg: { MsgType: unknown; Content: { string: unknown } }; msgSessionId: string } };
        const id = /"NewMsgId":(\d+)/.exec(raw)?.[1] ?? 'MALFORMED';
        return {
          raw,
          newMsgId: id,
          msgSessionId: parsed.content.msgSessionId,
          msgType: parsed.content.msg.MsgType,
          content: parsed.content.msg.Content.string,
        };
      })
    : [];
  return { ok, items, keyBuff: data?.keyBuff, envelope };
}

/** True when an item has the documented types (what a shape check in ingest would accept). */
export function wellTyped(item: Item): boolean {
  return /"NewMsgId":\d+/.test(item.raw) && typeof item.msgType === 'number' && typeof item.content === 'string';
}

export interface PullResult {
  /** Every well-typed item received, in order, duplicates included. */
  readonly items: Item[];
  /** keyBuffs sent, in order ('' for the first). */
  readonly sent: string[];
  readonly failures: number;
}

/**
 * Pulls an account to the end like a correct client: retries failed requests with the same
 * keyBuff, drops items with wrong types, continues with the keyBuff the page returned, and stops
 * when a page is empty and the keyBuff unchanged.
 */
export async function pullAll(sim: SimulatorHandle, accountId: string, maxRequests = 5000): Promise<PullResult> {
  const items: Item[] = [];
  const sent: string[] = [];
  let keyBuff = '';
  let failures = 0;
  for (let n = 0; n < maxRequests; n++) {
    sent.push(keyBuff);
    const res = await sync(sim, accountId, keyBuff);
    let page: Page;
    try {
      if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
      page = parsePage(res.text);
      if (!page.ok || page.keyBuff === undefined) throw new Error('error envelope');
    } catch {
      failures++;
      continue;
    }
    items.push(...page.items.filter(wellTyped));
    if (page.items.length === 0 && page.keyBuff === keyBuff) return { items, sent, failures };
    keyBuff = page.keyBuff;
  }
  throw new Error(`account ${accountId} not drained after ${maxRequests} requests`);
}

/** The unique (session, NewMsgId) keys of items, in first-seen order. */
export function uniqueKeys(items: readonly Item[]): string[] {
  return [...new Set(items.map((i) => `${i.msgSessionId}|${i.newMsgId}`))];
}
