/**
 * The simulated providers' wire format: item JSON, page envelopes, error envelopes.
 *
 * Items are written by hand, not with JSON.stringify of an object, for two reasons:
 *  - 64-bit numbers (NewMsgId up to 9223372036854775807, content.seq) must appear as bare JSON
 *    numbers with every digit, exactly as providers emit them; a JS number cannot hold them.
 *  - Each provider has its own key order (the GeWe/VideosApi seeds vs the syncFinder seed) and
 *    VideosApi, a Go service, escapes `<`, `>` and `&` in strings as `\u003c` … like Go's
 *    encoding/json does, so clients meet both spellings of the same XML.
 * Only string values go through JSON.stringify, which is native and fast.
 *
 * GeWe/VideosApi item (seed key order):
 *   {"syncKeyType":1,"itemType":1,"content":{"msg":{"MsgId":1,"FromUserName":{"string":"…"},
 *    "ToUserName":{"string":"…"},"MsgType":1,"Content":{"string":"1"},"Status":3,"ImgStatus":1,
 *    "ImgBuf":{"iLen":0},"CreateTime":1706084719,"MsgSource":"…","NewMsgId":5871873953492479000,
 *    "MsgSeq":1},"msgSessionId":"…@findermsg","seq":1,"extinfo":"CAEQAQ==","isSender":1},"subType":0}
 * syncFinder item (seed key order; no extinfo on server instructions):
 *   {"syncKeyType":1,"itemType":1,"subType":0,"content":{"msg":{"Status":3,"ImgBuf":{"iLen":0},
 *    "Content":{"string":"…"},"CreateTime":…,"MsgSeq":…,"NewMsgId":…,"FromUserName":{"string":""},
 *    "ToUserName":{"string":""},"MsgType":10002,"ImgStatus":1,"MsgId":…,"MsgSource":""},
 *    "isSender":0,"msgSessionId":"","seq":1172}}
 */

import { Buffer } from 'node:buffer';

import type { SimMessage, SimProvider } from './stream.ts';

/** How one account writes its items. */
export interface WireStyle {
  readonly provider: SimProvider;
  /** Write isSender as true/false (the reference's sample) instead of 1/0 (the seeds). */
  readonly booleanIsSender: boolean;
}

/** A piece of a page body: JSON text, or raw bytes (for items that carry invalid UTF-8). */
export type PagePart = string | Uint8Array;

const q = JSON.stringify;

function imgBuf(m: SimMessage): string {
  return m.imgBuf === undefined ? `{"iLen":${m.imgBufLen}}` : `{"iLen":${m.imgBufLen},"buffer":${q(m.imgBuf)}}`;
}

function isSender(m: SimMessage, style: WireStyle): string {
  if (style.booleanIsSender) return m.isSender === 1 ? 'true' : 'false';
  return m.isSender === 1 ? '1' : '0';
}

/** Fields that a wrong-types item replaces: raw JSON text per field. */
export interface FieldOverrides {
  readonly content?: string;
  readonly newMsgId?: string;
  readonly msgType?: string;
  readonly createTime?: string;
  readonly from?: string;
  readonly isSender?: string;
}

/** Serialises one item in the account's style. `o` replaces fields with raw JSON (for poison). */
export function serializeItem(m: SimMessage, style: WireStyle, o?: FieldOverrides): string {
  const content = o?.content ?? `{"string":${q(m.content)}}`;
  const newMsgId = o?.newMsgId ?? m.newMsgId;
  const msgType = o?.msgType ?? String(m.msgType);
  const createTime = o?.createTime ?? String(m.createTime);
  const from = o?.from ?? `{"string":${m.jsonFrom}}`;
  const sender = o?.isSender ?? isSender(m, style);
  if (style.provider === 'syncfinder') {
    const ext = m.extinfo === undefined ? '' : `"extinfo":${q(m.extinfo)},`;
    return `{"syncKeyType":${m.syncKeyType},"itemType":${m.itemType},"subType":${m.subType},"content":{"msg":{"Status":${m.status},"ImgBuf":${imgBuf(m)},"Content":${content},"CreateTime":${createTime},"MsgSeq":${m.msgSeq},"NewMsgId":${newMsgId},"FromUserName":${from},"ToUserName":{"string":${m.jsonTo}},"MsgType":${msgType},"ImgStatus":${m.imgStatus},"MsgId":${m.msgId},"MsgSource":${q(m.msgSource)}},${ext}"isSender":${sender},"msgSessionId":${m.jsonSessionId},"seq":${m.seq}}}`;
  }
  const item = `{"syncKeyType":${m.syncKeyType},"itemType":${m.itemType},"content":{"msg":{"MsgId":${m.msgId},"FromUserName":${from},"ToUserName":{"string":${m.jsonTo}},"MsgType":${msgType},"Content":${content},"Status":${m.status},"ImgStatus":${m.imgStatus},"ImgBuf":${imgBuf(m)},"CreateTime":${createTime},"MsgSource":${q(m.msgSource)},"NewMsgId":${newMsgId},"MsgSeq":${m.msgSeq}},"msgSessionId":${m.jsonSessionId},"seq":${m.seq},"extinfo":${q(m.extinfo ?? '')},"isSender":${sender}},"subType":${m.subType}}`;
  return style.provider === 'videosapi' ? goEscape(item) : item;
}

/** Go's encoding/json HTML-safe escaping. Outside strings an item has no `<>&`, so this is safe. */
function goEscape(json: string): string {
  // Three literal passes beat one regex with a callback by a wide margin on XML-heavy items.
  return json.replaceAll('<', '\\u003c').replaceAll('>', '\\u003e').replaceAll('&', '\\u0026');
}

/**
 * The same item with wrong JSON types where a schema expects others: Content.string a number,
 * NewMsgId an object, MsgType a string, CreateTime a word, FromUserName null, isSender a string.
 * Valid JSON, so only a shape check catches it.
 */
export function serializeWrongTypes(m: SimMessage, style: WireStyle): string {
  return serializeItem(m, style, {
    content: `{"string":${m.content.length}}`,
    newMsgId: `{"$numberLong":"${m.newMsgId}"}`,
    msgType: `"${m.msgType}"`,
    createTime: '"yesterday"',
    from: 'null',
    isSender: '"1"',
  });
}

/** A success page: the provider's envelope around the items and the next keyBuff. */
export function pageBody(provider: SimProvider, items: readonly PagePart[], keyBuff: string): Buffer {
  const head =
    provider === 'syncfinder'
      ? '{"code":"1000","message":"处理成功","data":{"list":['
      : '{"ret":200,"msg":"操作成功","data":{"list":[';
  const tail = `],"keyBuff":${q(keyBuff)}}}`;
  // Written part by part into one buffer: no joined string of the whole page is ever built.
  const encoded: (string | Uint8Array)[] = [head];
  items.forEach((p, n) => {
    if (n > 0) encoded.push(',');
    encoded.push(p);
  });
  encoded.push(tail);
  let size = 0;
  for (const p of encoded) size += typeof p === 'string' ? Buffer.byteLength(p, 'utf8') : p.length;
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of encoded) {
    if (typeof p === 'string') at += out.write(p, at, 'utf8');
    else {
      out.set(p, at);
      at += p.length;
    }
  }
  return out;
}

/**
 * Error texts of each provider. The GeWe ones are real (formats reference, error catalogue);
 * VideosApi is a GeWe-style service; syncFinder follows the wkteam conventions (`code` "1001").
 * Every auth refusal contains "不可用或已过期" or "不可为空", so one classification rule fits all.
 */
export const PROVIDER_TEXTS = {
  gewe: {
    tokenHeader: 'X-GEWE-TOKEN',
    missingToken: 'header:X-GEWE-TOKEN 不可为空',
    invalidToken: 'X-GEWE-TOKEN 不可用或已过期',
  },
  videosapi: {
    tokenHeader: 'VideosApi-token',
    missingToken: 'header:VideosApi-token 不可为空',
    invalidToken: 'VideosApi-token 不可用或已过期',
  },
  syncfinder: {
    tokenHeader: 'Authorization',
    missingToken: 'header:Authorization 不可为空',
    invalidToken: 'Authorization 不可用或已过期',
  },
} as const satisfies Record<SimProvider, { tokenHeader: string; missingToken: string; invalidToken: string }>;

/** A business error in the provider's envelope (HTTP 200). `detail` becomes GeWe's nested data. */
export function errorEnvelope(
  provider: SimProvider,
  message: string,
  detail?: { readonly code: string; readonly msg: string },
): string {
  if (provider === 'syncfinder') return `{"code":"1001","message":${q(message)},"data":null}`;
  const data = detail === undefined ? 'null' : `{"code":${q(detail.code)},"msg":${q(detail.msg)}}`;
  return `{"ret":500,"msg":${q(message)},"data":${data}}`;
}
