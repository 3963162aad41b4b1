/**
 * Dispatch on `MsgType`: which reader reads `Content.string`, and whether it is XML.
 *
 * | MsgType | reader | msg_type / event |
 * |---|---|---|
 * | 1 | text.ts | text |
 * | 3 | image.ts | image |
 * | 34 | voice.ts | voice |
 * | 42 | card.ts | card |
 * | 43 | video.ts | video |
 * | 47 | emoji.ts | emotion |
 * | 48 | location.ts | location |
 * | 49 | appmsg/index.ts | per `<type>` |
 * | 51 | statusnotify.ts | event `statusnotify` |
 * | 10000 | system.ts | system |
 * | 10002 | sysmsg/index.ts | per `type` attribute |
 * | anything else (37, 40, 50, 10001 …) | here | unknown (raw content kept) |
 */
import { PoisonError } from '../core/errors.ts';
import { readAppMsg } from './appmsg/index.ts';
import { readCard } from './card.ts';
import { readEmoji } from './emoji.ts';
import { readImage } from './image.ts';
import type { KindContext, Parsed } from './kind.ts';
import { readLocation } from './location.ts';
import { readStatusNotify } from './statusnotify.ts';
import { readSysmsg } from './sysmsg/index.ts';
import { readSystemText } from './system.ts';
import { readText, splitSenderPrefix } from './text.ts';
import { readVideo } from './video.ts';
import { readVoice } from './voice.ts';
import { parseXml } from './xml.ts';
import type { XmlElement } from './xml.ts';

/** `sender:` and a line break before an XML body: `^[^<\s][^:\n]*:\n` of the formats reference. */
const LOOSE_SENDER_PREFIX = /^[^<\s][^:\n]{0,128}:\r?\n(?=\s*<)/;

/**
 * The XML document of an XML-bearing message, `undefined` for empty content.
 *
 * Takes off a group-style sender prefix (`12345@chatroom:\n<sysmsg…`), a BOM and surrounding
 * white space first. Non-empty content that is not XML is malformed: the parser says so.
 *
 * @throws {PoisonError} from {@link parseXml}.
 */
function xmlOf(wxMsgType: number, content: string, ctx: KindContext): XmlElement | undefined {
  let body = content.trim();
  if (body.startsWith('\uFEFF')) body = body.slice(1).trimStart();
  if (body !== '' && !body.startsWith('<')) {
    const split = splitSenderPrefix(body, ctx);
    if (split.sender !== '') body = split.body.trim();
    else {
      // A group member with a custom id (`alice_88:`) is no known sender form, but before XML
      // a first line ending in a colon is a sender prefix all the same (formats reference, edge case 7).
      const loose = LOOSE_SENDER_PREFIX.exec(body);
      if (loose !== null) body = body.slice(loose[0].length).trim();
    }
  }
  if (body === '') return undefined;
  if (!body.startsWith('<')) throw new PoisonError('MSGPIPE_ERR_XML', `MsgType ${wxMsgType} content is not XML`);
  try {
    return parseXml(body);
  } catch (err) {
    // Say which document failed: the same reader also parses MsgSource and nested layers.
    if (err instanceof PoisonError) throw new PoisonError(err.code, `MsgType ${wxMsgType} content: ${err.message}`);
    throw err;
  }
}

/**
 * Reads one message's content by its MsgType.
 *
 * @throws {PoisonError} when XML content is malformed, hostile or too large.
 */
export function parseContent(wxMsgType: number, content: string, ctx: KindContext): Parsed {
  switch (wxMsgType) {
    case 1:
      return readText(content, ctx);
    case 3:
      return readImage(xmlOf(wxMsgType, content, ctx));
    case 34:
      return readVoice(xmlOf(wxMsgType, content, ctx));
    case 42:
      return readCard(xmlOf(wxMsgType, content, ctx));
    case 43:
      return readVideo(xmlOf(wxMsgType, content, ctx));
    case 47:
      return readEmoji(xmlOf(wxMsgType, content, ctx));
    case 48:
      return readLocation(xmlOf(wxMsgType, content, ctx));
    case 49:
      return readAppMsg(xmlOf(wxMsgType, content, ctx), ctx);
    case 51:
      return readStatusNotify(xmlOf(wxMsgType, content, ctx));
    case 10000:
      return readSystemText(splitSenderPrefix(content, ctx).body);
    case 10002:
      return readSysmsg(xmlOf(wxMsgType, content, ctx));
    default:
      return { kind: 'message', msgType: 'unknown', text: '', payload: {} };
  }
}

/**
 * The context of one read: a class rather than closures, since one is made per item on the hot
 * path, and nested reads (quotes) are rare.
 */
class ReadContext implements KindContext {
  readonly from: string;
  readonly to: string;
  readonly depth: number;

  constructor(from: string, to: string, depth: number) {
    this.from = from;
    this.to = to;
    this.depth = depth;
  }

  parseNested(type: number, content: string): Parsed {
    return parseContent(type, content, new ReadContext(this.from, this.to, this.depth + 1));
  }
}

/** A context for reading an item's own content; nested reads go one level deeper. */
export function rootContext(from: string, to: string): KindContext {
  return new ReadContext(from, to, 0);
}
