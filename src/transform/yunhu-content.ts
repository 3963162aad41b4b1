/**
 * Yunhu (云湖) message content by `content_type` → the DESIGN §6 `msg_type`, the searchable text
 * and the typed payload. The payload's `kind` names the Yunhu type exactly (markdown, form,
 * post, html, call … keep their own name there); `msg_type` stays in the DESIGN vocabulary:
 *
 * | content_type | kind | msg_type | content_text |
 * |---|---|---|---|
 * | 1 | text | text | text |
 * | 2 | image (video when `video_url` is set) | image / video | '' |
 * | 3 | markdown | text | text |
 * | 4 | file | file | file name |
 * | 5 | form | text | text, else the form's JSON text |
 * | 6 | post | link | title + content |
 * | 7 | sticker | emotion | '' |
 * | 8 | html | text | text with tags removed |
 * | 11 | voice | voice | '' |
 * | 13 | call | system | status text, else room name |
 * | other | unknown | unknown | text or tip |
 *
 * Pure; never throws for any decoded content.
 */
import { parseLossless } from '../core/json.ts';
import type { MsgType } from '../core/types.ts';
import { MAX_EMBEDDED_JSON_DEPTH } from './values.ts';
import { codePointText } from './xml.ts';

/** Decoded `MsgContent` (protobufjs plain object, 64-bit as decimal strings). */
export type YunhuContent = Readonly<Record<string, unknown>>;

export interface YunhuKind {
  readonly kind: string;
  readonly msgType: MsgType;
  readonly text: string;
  /** Kind-specific fields (the common ones are added by the caller). */
  readonly fields: Readonly<Record<string, unknown>>;
}

function str(content: YunhuContent, key: string): string {
  const v = content[key];
  return typeof v === 'string' ? v : '';
}

/** A 64-bit field as a decimal string ('0' when absent). */
function u64(content: YunhuContent, key: string): string {
  const v = content[key];
  return typeof v === 'string' || typeof v === 'number' ? String(v) : '0';
}

/**
 * A JSON text (buttons, forms, an old version's content) parsed when it is JSON, else kept as the
 * string it is: not JSON, or nested deeper than {@link MAX_EMBEDDED_JSON_DEPTH} (a message must not
 * be lost for its buttons). Parsed losslessly, so a button `value` of 12345678901234567891 stays
 * exact (as a decimal string).
 */
export function jsonOrString(text: string): unknown {
  if (text === '') return null;
  try {
    return parseLossless(text, { maxDepth: MAX_EMBEDDED_JSON_DEPTH });
  } catch {
    return text;
  }
}

/**
 * `html` without its closed script and style elements (an unclosed start tag stays, for the tag
 * stripper). Linear in the text: a regex with a lazy body rescanned the rest of the text for every
 * unclosed start tag, 18 s for 1 MB of `<script>`.
 *
 * Matched without regard to ASCII case on `html` itself, not on a lower-cased copy:
 * `toLowerCase()` changes the length of some text (`İ`, U+0130, becomes two code units), and
 * positions found in the copy then cut the original in the wrong places, leaking script text and
 * dropping real text. The `i` flag without `u` folds ASCII letters only, as HTML tag names do.
 */
function dropScriptsAndStyles(html: string): string {
  const open = /<(script|style)\b/gi;
  const closeScript = /<\/script/gi;
  const closeStyle = /<\/style/gi;
  const unclosed = new Set<string>();
  let out = '';
  let from = 0;
  let m: RegExpExecArray | null;
  while ((m = open.exec(html)) !== null) {
    const name = (m[1] ?? '').toLowerCase();
    if (unclosed.has(name) || m.index < from) continue;
    const tagEnd = html.indexOf('>', open.lastIndex);
    if (tagEnd < 0) break; // no start tag can end from here on
    const closeTag = name === 'script' ? closeScript : closeStyle;
    closeTag.lastIndex = tagEnd;
    const closeAt = closeTag.exec(html)?.index ?? -1;
    const closeEnd = closeAt < 0 ? -1 : html.indexOf('>', closeAt);
    if (closeEnd < 0) {
      unclosed.add(name); // no later start tag of this name is closed either
      continue;
    }
    out += `${html.slice(from, m.index)} `;
    from = closeEnd + 1;
    open.lastIndex = from;
  }
  return out + html.slice(from);
}

/**
 * A tag: `<` then a letter (`<p>`, `<br/>`), `/` (`</p>`), `!` (`<!-- x -->`, `<!DOCTYPE html>`)
 * or `?`, up to the next `>`. Plain text such as `1 < 2 and 3 > 2` has a space after its `<`, so
 * it stays text. `[^<>]*` stops at the next `<`, which keeps a run of `<a<a<a…` linear.
 */
const TAG = /<[A-Za-z/!?][^<>]*>/g;

/** Named character references decoded in HTML text: the XML five and the common typographic ones. */
const NAMED_ENTITIES: Readonly<Record<string, string>> = {
  amp: '&',
  lt: '<',
  gt: '>',
  quot: '"',
  apos: "'",
  nbsp: ' ',
  ensp: '\u2002',
  emsp: '\u2003',
  thinsp: '\u2009',
  copy: '©',
  reg: '®',
  trade: '™',
  hellip: '…',
  mdash: '—',
  ndash: '–',
  lsquo: '‘',
  rsquo: '’',
  ldquo: '“',
  rdquo: '”',
  laquo: '«',
  raquo: '»',
  middot: '·',
  bull: '•',
  times: '×',
  divide: '÷',
  plusmn: '±',
  deg: '°',
  yen: '¥',
  euro: '€',
  pound: '£',
  cent: '¢',
  sect: '§',
  para: '¶',
};

/**
 * `&#165;` (decimal), `&#x4e2d;` (hex) or `&copy;` (named). One pass, so `&amp;lt;` is `&lt;` as
 * text, not `<`.
 */
const ENTITY = /&(?:#(\d{1,8})|#[xX]([0-9A-Fa-f]{1,8})|([A-Za-z][A-Za-z0-9]{1,31}));/g;

function decodeEntity(whole: string, dec: string | undefined, hex: string | undefined, name: string | undefined): string {
  // Own names only: `&constructor;` must not read Object.prototype's function.
  if (name !== undefined) return Object.hasOwn(NAMED_ENTITIES, name) ? (NAMED_ENTITIES[name] ?? whole) : whole;
  // As an HTML parser does: NUL, surrogates and numbers past U+10FFFF read as U+FFFD.
  return codePointText(dec !== undefined ? Number.parseInt(dec, 10) : Number.parseInt(hex ?? '', 16));
}

/** Text of an HTML fragment: script and style dropped, tags removed, entities decoded, spaces folded. */
function htmlText(html: string): string {
  return dropScriptsAndStyles(html)
    .replace(TAG, ' ')
    .replace(ENTITY, decodeEntity)
    .replace(/\s+/g, ' ')
    .trim();
}

/** The kind of a message from its content type and content. */
export function yunhuKind(contentType: number, c: YunhuContent): YunhuKind {
  const text = str(c, 'text');
  switch (contentType) {
    case 1:
      return { kind: 'text', msgType: 'text', text, fields: { text } };
    case 2: {
      const video = str(c, 'video_url');
      const media = { width: u64(c, 'width'), height: u64(c, 'height'), file_size: u64(c, 'file_size') };
      return video === ''
        ? { kind: 'image', msgType: 'image', text: '', fields: { image_url: str(c, 'image_url'), ...media } }
        : { kind: 'video', msgType: 'video', text: '', fields: { video_url: video, image_url: str(c, 'image_url'), ...media } };
    }
    case 3:
      return { kind: 'markdown', msgType: 'text', text, fields: { text } };
    case 4:
      return {
        kind: 'file',
        msgType: 'file',
        text: str(c, 'file_name'),
        fields: { file_name: str(c, 'file_name'), file_url: str(c, 'file_url'), file_size: u64(c, 'file_size') },
      };
    case 5: {
      const form = str(c, 'form');
      return { kind: 'form', msgType: 'text', text: text === '' ? form : text, fields: { text, form: jsonOrString(form) } };
    }
    case 6: {
      const title = str(c, 'post_title');
      const body = str(c, 'post_content');
      return {
        kind: 'post',
        msgType: 'link',
        text: [title, body].filter((s) => s !== '').join('\n'),
        fields: { post_id: str(c, 'post_id'), title, content: body, content_type: str(c, 'post_content_type') },
      };
    }
    case 7:
      return {
        kind: 'sticker',
        msgType: 'emotion',
        text: '',
        fields: {
          image: str(c, 'image'),
          expression_id: str(c, 'expression_id'),
          sticker_item_id: u64(c, 'sticker_item_id'),
          sticker_pack_id: u64(c, 'sticker_pack_id'),
        },
      };
    case 8:
      return { kind: 'html', msgType: 'text', text: htmlText(text), fields: { html: text } };
    case 11:
      return { kind: 'voice', msgType: 'voice', text: '', fields: { audio_url: str(c, 'audio_url'), audio_time: u64(c, 'audio_time') } };
    case 13: {
      const status = str(c, 'call_status_text');
      const room = str(c, 'room_name');
      return { kind: 'call', msgType: 'system', text: status === '' ? room : status, fields: { room_name: room, status_text: status } };
    }
    default: {
      const tip = str(c, 'tip');
      return { kind: 'unknown', msgType: 'unknown', text: text === '' ? tip : text, fields: { content_type: contentType } };
    }
  }
}

/** Searchable text of an old version from the edit record (`contentOld`, a JSON text). */
export function oldContentText(contentType: number, contentOld: string): string {
  const parsed = jsonOrString(contentOld);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) return typeof parsed === 'string' ? parsed : '';
  // No prototype: a `__proto__` key of the record is a field like any other, not a prototype.
  const fields = Object.create(null) as Record<string, unknown>;
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    // The edit record speaks camelCase JSON; the content reader reads proto field names.
    fields[k.replace(/[A-Z]/g, (ch) => `_${ch.toLowerCase()}`)] = typeof v === 'number' ? String(v) : v;
  }
  return yunhuKind(contentType, fields).text;
}
