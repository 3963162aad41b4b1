import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { transformFinderItem } from '../../../src/transform/finder.ts';
import { NOW, itemText, record } from './support.ts';

/** Exactly one of the outputs is non-empty, and dead letters keep the bytes. */
function checkOutput(bytes: Uint8Array): void {
  const out = transformFinderItem(record(bytes), NOW);
  const made = out.messages.length + out.events.length + out.deadLetters.length;
  expect(made).toBe(1);
  for (const dl of out.deadLetters) expect(Buffer.from(dl.original_base64, 'base64').equals(Buffer.from(bytes))).toBe(true);
}

const MSG_TYPES = [1, 3, 34, 42, 43, 47, 48, 49, 51, 10000, 10002, 37, 9999];

/** XML-ish text: angle brackets, entities, CDATA and the names the readers look for. */
const xmlish = fc
  .array(
    fc.constantFrom('<', '>', '</', '/>', '="', '"', '&amp;', '&lt;', '&#x41;', '&', '<![CDATA[', ']]>', '<!DOCTYPE', '<!ENTITY',
      'msg', 'appmsg', 'type', '57', '51', '19', 'refermsg', 'content', 'img', 'sysmsg', 'revokemsg', 'newmsgid', 'recorditem',
      'finderFeed', 'objectId', ' ', '\n', 'a', '1', '哈'),
    { maxLength: 60 },
  )
  .map((parts) => parts.join(''));

describe('transformFinderItem never throws', () => {
  it('on arbitrary bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => { checkOutput(bytes); }), { numRuns: 2000 });
  });

  it('on arbitrary content of every MsgType, including XML-like junk', () => {
    fc.assert(
      fc.property(fc.constantFrom(...MSG_TYPES), fc.oneof(fc.string({ maxLength: 200 }), xmlish), (msgType, content) => { checkOutput(new TextEncoder().encode(itemText({ msgType, content }))); },
      ),
      { numRuns: 3000 },
    );
  });

  it('on a valid item cut or corrupted at any byte', () => {
    const base = new TextEncoder().encode(
      itemText({ msgType: 49, content: '<msg><appmsg><title>t</title><type>51</type><finderFeed><objectId>14395017722846300161</objectId></finderFeed></appmsg></msg>' }),
    );
    fc.assert(
      fc.property(fc.nat(base.length), fc.integer({ min: 0, max: 255 }), fc.boolean(), (at, byte, cut) => {
        const b = cut ? base.slice(0, at) : Uint8Array.from(base, (v, i) => (i === at ? byte : v));
        checkOutput(b);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('NewMsgId', () => {
  it('round-trips exactly for any uint64 that is not a pseudo id, as a message id and as an event id', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (n) => {
        const id = n.toString();
        // Away from the pseudo-id values (CreateTime, MsgId, 0), which are replaced by a derived id.
        fc.pre(id !== '1731059312' && id !== '1048377195' && id !== '0');
        const msg = transformFinderItem(record(itemText({ newMsgId: id })), NOW);
        expect(msg.messages[0]?.msgid).toBe(id);
        const ev = transformFinderItem(record(itemText({ newMsgId: id, msgType: 51, content: '<msg><op id="1"/></msg>' })), NOW);
        expect(ev.events[0]?.event_id).toBe(id);
      }),
      { numRuns: 1000 },
    );
  });

  it('reads a signed int64 as the same 64 bits unsigned', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 63n), max: -1n }), (n) => {
        const out = transformFinderItem(record(itemText({ newMsgId: n.toString() })), NOW);
        expect(out.messages[0]?.msgid).toBe(BigInt.asUintN(64, n).toString());
      }),
    );
  });

  it('keeps a uint64 objectId inside XML exact', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (n) => {
        const xml = `<msg><appmsg><type>51</type><finderFeed><objectId>${n.toString()}</objectId></finderFeed></appmsg></msg>`;
        const out = transformFinderItem(record(itemText({ msgType: 49, content: xml })), NOW);
        expect((JSON.parse(out.messages[0]?.content ?? '{}') as { objectId: string }).objectId).toBe(n.toString());
      }),
      { numRuns: 500 },
    );
  });
});
