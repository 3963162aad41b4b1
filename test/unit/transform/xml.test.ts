import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { PoisonError } from '../../../src/core/errors.ts';
import { DEFAULT_XML_LIMITS, at, attr, child, decodeXmlReferences, parseXml, textAt } from '../../../src/transform/xml.ts';

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof PoisonError) return err.code;
    throw err;
  }
  return 'no error';
}

describe('parseXml: what WeChat really sends', () => {
  it('reads attributes, element text and CDATA, after an <?xml?> declaration and white space', () => {
    const root = parseXml(
      '<?xml version="1.0"?>\n<msg>\n\t<img aeskey="4c9e" length="48213" md5="0f6d" />\n\t<title><![CDATA[报价单 <v2> & co]]></title>\n</msg>\n',
    );
    expect(root.name).toBe('msg');
    expect(attr(child(root, 'img'), 'length')).toBe('48213');
    expect(textAt(root, 'title')).toBe('报价单 <v2> & co');
  });

  it('accepts spaces around = and decodes &amp; in attribute URLs (emoji XML)', () => {
    const root = parseXml('<msg><emoji len = "98211" width= "240" cdnurl = "http://x/stodownload?m=b1&amp;filekey=30&amp;bizid=1023"></emoji></msg>');
    const e = child(root, 'emoji');
    expect(attr(e, 'len')).toBe('98211');
    expect(attr(e, 'width')).toBe('240');
    expect(attr(e, 'cdnurl')).toBe('http://x/stodownload?m=b1&filekey=30&bizid=1023');
  });

  it('decodes each reference once: entity-encoded XML inside XML comes out as XML text', () => {
    const root = parseXml('<refermsg><content>&lt;msg&gt;&lt;img md5="a&amp;amp;b" /&gt;&lt;/msg&gt;</content></refermsg>');
    expect(textAt(root, 'content')).toBe('<msg><img md5="a&amp;b" /></msg>');
  });

  it('keeps case-sensitive names and reads paths', () => {
    const root = parseXml('<msg><appmsg><finderFeed><objectId>14395017722846300161</objectId></finderFeed></appmsg></msg>');
    expect(at(root, 'appmsg', 'finderFeed', 'objectId')?.text).toBe('14395017722846300161');
    expect(at(root, 'appmsg', 'finderfeed')).toBeUndefined();
  });

  it('tolerates a BOM, comments, a bare & in text and keeps the first of duplicate attributes', () => {
    const root = parseXml('\uFEFF<a x="1" x="2"><!-- note --><b>1 & 2 &amp 3</b></a>');
    expect(attr(root, 'x')).toBe('1');
    expect(textAt(root, 'b')).toBe('1 & 2 &amp 3');
  });

  it('stores an attribute called __proto__ as data, without touching any prototype', () => {
    const root = parseXml('<a __proto__="x" constructor="y" />');
    expect(attr(root, '__proto__')).toBe('x');
    expect(attr(root, 'constructor')).toBe('y');
    expect(attr(root, 'toString')).toBe('');
    expect(({} as Record<string, unknown>)['x']).toBeUndefined();
  });
});

describe('parseXml: hostile input', () => {
  it('refuses an external entity DTD (XXE)', () => {
    expect(codeOf(() => parseXml('<!DOCTYPE x SYSTEM "file:///etc/passwd"><x>&xxe;</x>'))).toBe('MSGPIPE_ERR_XML_DTD');
  });

  it('refuses billion laughs before expanding anything', () => {
    const lol = [
      '<?xml version="1.0"?>',
      '<!DOCTYPE lolz [',
      ' <!ENTITY lol "lol">',
      ...Array.from({ length: 9 }, (_, i) => ` <!ENTITY lol${i + 1} "${`&lol${i === 0 ? '' : i};`.repeat(10)}">`),
      ']>',
      '<lolz>&lol9;</lolz>',
    ].join('\n');
    expect(codeOf(() => parseXml(lol))).toBe('MSGPIPE_ERR_XML_DTD');
  });

  it('never expands an undeclared entity: it stays literal text', () => {
    expect(textAt(parseXml('<a><b>&xxe;&nbsp;&lol9;</b></a>'), 'b')).toBe('&xxe;&nbsp;&lol9;');
  });

  it('caps depth: 10 000 nested elements stop at level 64', () => {
    const deep = '<a>'.repeat(10_000) + '</a>'.repeat(10_000);
    expect(codeOf(() => parseXml(deep))).toBe('MSGPIPE_ERR_XML_LIMIT');
    const ok = '<a>'.repeat(DEFAULT_XML_LIMITS.maxDepth) + '</a>'.repeat(DEFAULT_XML_LIMITS.maxDepth);
    expect(parseXml(ok).name).toBe('a');
  });

  it('caps size, element count and attributes per element', () => {
    expect(codeOf(() => parseXml(`<a>${'x'.repeat(DEFAULT_XML_LIMITS.maxChars)}</a>`))).toBe('MSGPIPE_ERR_XML_LIMIT');
    const limits = { ...DEFAULT_XML_LIMITS, maxElements: 10, maxAttributes: 3 };
    expect(codeOf(() => parseXml(`<a>${'<b/>'.repeat(10)}</a>`, limits))).toBe('MSGPIPE_ERR_XML_LIMIT');
    expect(parseXml(`<a>${'<b/>'.repeat(9)}</a>`, limits).children).toHaveLength(9);
    expect(codeOf(() => parseXml('<a p="1" q="2" r="3" s="4"/>', limits))).toBe('MSGPIPE_ERR_XML_LIMIT');
  });

  it.each([
    ['mismatched end tag', '<a><b></a>'],
    ['unclosed element', '<msg><img md5="x" />'],
    ['stray end tag', '<a></b></a>'],
    ['two roots', '<a/><b/>'],
    ['text after the root', '<a/>junk'],
    ['plain text', '请问这款还有现货吗'],
    ['empty', '   '],
    ['unterminated start tag', '<a x="1'],
    ['unknown declaration', '<!junk><a/>'],
  ])('rejects %s as MSGPIPE_ERR_XML', (_name, xml) => {
    expect(codeOf(() => parseXml(xml))).toBe('MSGPIPE_ERR_XML');
  });

  it('parses normally after an aborted parse (the shared tokenizer is reset)', () => {
    expect(codeOf(() => parseXml('<a><b><c>'))).toBe('MSGPIPE_ERR_XML');
    expect(codeOf(() => parseXml('<a>'.repeat(100)))).toBe('MSGPIPE_ERR_XML_LIMIT');
    expect(textAt(parseXml('<x><y>ok</y></x>'), 'y')).toBe('ok');
  });

  it('throws nothing but a PoisonError, whatever the text', () => {
    const xmlish = fc.stringMatching(/^[<>/="'a-c &;#x0-9![\]CDATA?-]{0,60}$/);
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 200 }), xmlish), (text) => {
        try {
          parseXml(text);
        } catch (err) {
          expect(err).toBeInstanceOf(PoisonError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('decodeXmlReferences', () => {
  it('decodes the five entities and numeric references, once', () => {
    expect(decodeXmlReferences('&lt;a&gt; &quot;&apos; &amp;amp; &#x1F602;&#128514; &#65;')).toBe('<a> "\' &amp; 😂😂 A');
  });

  it('turns references to NUL, surrogates and past U+10FFFF into U+FFFD', () => {
    expect(decodeXmlReferences('&#0;&#xD800;&#x110000;')).toBe('\uFFFD\uFFFD\uFFFD');
  });

  it('leaves unknown names and unterminated references as written', () => {
    expect(decodeXmlReferences('&nbsp; &amp &copy; &#xZZ;')).toBe('&nbsp; &amp &copy; &#xZZ;');
  });
});
