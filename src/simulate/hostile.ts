/**
 * Hostile items: poison a test can inject into an account's stream.
 *
 * Anyone can DM a Channels account, so msgpipe must survive whatever arrives. Each kind here
 * is one item that a correct pipeline dead-letters (or, for the lone surrogate, stores with
 * U+FFFD) without stopping, losing its neighbours, expanding entities or reading local files:
 *
 *   billion_laughs  <!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;…">…]> … &lol9;
 *   xxe             <!DOCTYPE msg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]> … &xxe;
 *   huge_content    a 5 MiB Content.string
 *   invalid_utf8    raw bytes C3 28, FF, ED A0 80 inside Content.string (not valid UTF-8)
 *   deep_xml        10 000 nested elements
 *   wrong_types     Content.string a number, NewMsgId an object, MsgType a string …
 *   lone_surrogate  "\ud83d" alone inside a JSON string: valid JSON, not a valid Unicode string
 */

import { Buffer } from 'node:buffer';

import type { SimSession } from './identity.ts';
import { Rng, hash3 } from './random.ts';
import type { SimMessage } from './stream.ts';
import { serializeItem, serializeWrongTypes } from './wire.ts';
import type { PagePart, WireStyle } from './wire.ts';

export const HOSTILE_KINDS = [
  'billion_laughs',
  'xxe',
  'huge_content',
  'invalid_utf8',
  'deep_xml',
  'wrong_types',
  'lone_surrogate',
] as const;
export type HostileKind = (typeof HOSTILE_KINDS)[number];

/** An injected hostile item, as listed by `poison()`. */
export interface PoisonItem {
  readonly kind: HostileKind;
  /** Order of injection in the account, from 0. */
  readonly sequence: number;
  /** NewMsgId, exact decimal (in `wrong_types` it is sent wrapped in an object). */
  readonly newMsgId: string;
  readonly msgSessionId: string;
  readonly msgType: number;
  /** The stream index it is delivered before: the number of messages released when injected. */
  readonly anchor: number;
}

const HUGE_BYTES = 5 * 1024 * 1024;
const DEPTH = 10_000;
// U+E000 (private use) marks where raw bytes go: JSON.stringify leaves it unescaped.
const BYTES_MARK = '\uE000INVALID_UTF8\uE000';
const INVALID_BYTES = Uint8Array.from([0xc3, 0x28, 0x20, 0xff, 0x20, 0xed, 0xa0, 0x80]);

let hugeText: string | undefined;

/** 5 MiB of text, built once: a real-looking phrase repeated (3 UTF-8 bytes per CJK char). */
function huge(): string {
  if (hugeText === undefined) {
    const unit = '请问这款还有现货吗？下单后多久发货 ';
    const unitBytes = Buffer.byteLength(unit, 'utf8');
    hugeText = unit.repeat(Math.ceil(HUGE_BYTES / unitBytes));
  }
  return hugeText;
}

const LOL_DTD =
  '<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">' +
  [2, 3, 4, 5, 6, 7, 8, 9].map((n) => `<!ENTITY lol${n} "${`&lol${n - 1};`.repeat(10)}">`).join('') +
  ']>';

interface HostileContent {
  readonly msgType: number;
  readonly content: string;
}

function hostileContent(kind: HostileKind): HostileContent {
  switch (kind) {
    case 'billion_laughs':
      return {
        msgType: 49,
        content: `<?xml version="1.0"?>\n${LOL_DTD}\n<msg><appmsg appid="" sdkver="0"><title>&lol9;</title><des>&lol9;</des><type>5</type><url>https://mp.weixin.qq.com/</url></appmsg></msg>`,
      };
    case 'xxe':
      return {
        msgType: 49,
        content:
          '<?xml version="1.0"?>\n<!DOCTYPE msg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n<msg><appmsg appid="" sdkver="0"><title>&xxe;</title><des>&xxe;</des><type>5</type><url>http://127.0.0.1/</url></appmsg></msg>',
      };
    case 'huge_content':
      return { msgType: 1, content: huge() };
    case 'invalid_utf8':
      return { msgType: 1, content: `请问${BYTES_MARK}还有吗` };
    case 'deep_xml':
      return { msgType: 49, content: `<msg>${'<a>'.repeat(DEPTH)}deep${'</a>'.repeat(DEPTH)}<appmsg><type>5</type></appmsg></msg>` };
    case 'wrong_types':
      return { msgType: 1, content: '类型不对' };
    case 'lone_surrogate':
      // Server-side truncation cuts an emoji in half: a lone high surrogate.
      return { msgType: 1, content: '截断的表情\ud83d' };
  }
}

/** Builds the poison item and its wire bytes for an account. */
export function buildHostile(
  kind: HostileKind,
  sequence: number,
  anchor: number,
  ctx: { readonly seed: number; readonly session: SimSession; readonly createTime: number; readonly style: WireStyle },
): { poison: PoisonItem; part: () => PagePart } {
  const rng = new Rng(hash3(ctx.seed, sequence, 0x5eed));
  const newMsgId = rng.int64Id();
  const { msgType, content } = hostileContent(kind);
  const s = ctx.session;
  const message: SimMessage = {
    index: -1,
    kind: msgType === 1 ? 'text' : 'unknown_appmsg',
    msgType,
    newMsgId,
    msgId: rng.range(1, 2_000_000_000),
    msgSeq: 0,
    seq: 0,
    createTime: ctx.createTime,
    from: s.peer,
    to: s.me,
    sessionId: s.id,
    isSender: 0,
    content,
    msgSource: '',
    status: 3,
    imgStatus: 1,
    imgBufLen: 0,
    imgBuf: undefined,
    syncKeyType: s.syncKeyType,
    itemType: 1,
    subType: s.subType,
    extinfo: s.extinfo,
    text: '',
    fields: {},
    jsonFrom: s.jsonPeer,
    jsonTo: s.jsonMe,
    jsonSessionId: s.jsonId,
  };
  const poison: PoisonItem = { kind, sequence, newMsgId, msgSessionId: s.id, msgType, anchor };
  // Built on demand: a 5 MiB item is not kept in memory between deliveries.
  const part = (): PagePart => {
    if (kind === 'wrong_types') return serializeWrongTypes(message, ctx.style);
    const json = serializeItem(message, ctx.style);
    if (kind !== 'invalid_utf8') return json;
    const [before = '', after = ''] = json.split(BYTES_MARK);
    return Buffer.concat([Buffer.from(before, 'utf8'), INVALID_BYTES, Buffer.from(after, 'utf8')]);
  };
  return { poison, part };
}
