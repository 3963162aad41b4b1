/**
 * MsgType 49: appmsg. Reads the shared head, then hands the element to the reader of its
 * `<type>`:
 *
 * | `<type>` | reader | msg_type / event |
 * |---|---|---|
 * | 1 | link.ts `readAppText` | text |
 * | 2 | attach.ts `readAppImage` | image |
 * | 3, 4, 5 | link.ts `readLink` | link |
 * | 6 | file.ts `readFile` | file |
 * | 8, 15 | attach.ts `readAppEmoji` | emotion |
 * | 19 | chatrecord.ts | chatrecord |
 * | 33, 36 | weapp.ts | weapp |
 * | 51 | finder-feed.ts | finder_feed |
 * | 57 | quote.ts | quote |
 * | 63 | finder-live.ts | finder_live |
 * | 74 | file.ts `readFileUpload` | event `file_upload` |
 * | 2000 | transfer.ts | transfer |
 * | 2001 | redpacket.ts | redpacket |
 * | anything else (7, 17, 53, 87, 115 …) | here | unknown, title/des/url kept |
 */
import type { KindContext, Parsed } from '../kind.ts';
import { joinText } from '../values.ts';
import type { XmlElement } from '../xml.ts';
import { readAppEmoji, readAppImage } from './attach.ts';
import { readChatRecord } from './chatrecord.ts';
import { readFile, readFileUpload } from './file.ts';
import { readFinderFeed } from './finder-feed.ts';
import { readFinderLive } from './finder-live.ts';
import { readAppMsgHead } from './head.ts';
import type { AppMsgHead } from './head.ts';
import { readAppText, readLink } from './link.ts';
import { readQuote } from './quote.ts';
import { readRedPacket } from './redpacket.ts';
import { readTransfer } from './transfer.ts';
import { readWeapp } from './weapp.ts';

function readUnknown(head: AppMsgHead): Parsed {
  return {
    kind: 'message',
    msgType: 'unknown',
    text: joinText(head.title, head.des),
    appType: head.type,
    payload: { title: head.title, description: head.des, url: head.url, image_url: head.thumburl },
  };
}

/** Reads an appmsg from its parsed content (`undefined` for empty content). */
export function readAppMsg(root: XmlElement | undefined, ctx: KindContext): Parsed {
  const head = readAppMsgHead(root);
  switch (head.type) {
    case 1:
      return readAppText(head);
    case 2:
      return readAppImage(head);
    case 3:
    case 4:
    case 5:
      return readLink(head);
    case 6:
      return readFile(head);
    case 8:
    case 15:
      return readAppEmoji(head);
    case 19:
      return readChatRecord(head);
    case 33:
    case 36:
      return readWeapp(head);
    case 51:
      return readFinderFeed(head);
    case 57:
      return readQuote(head, ctx);
    case 63:
      return readFinderLive(head);
    case 74:
      return readFileUpload(head);
    case 2000:
      return readTransfer(head);
    case 2001:
      return readRedPacket(head);
    default:
      return readUnknown(head);
  }
}
