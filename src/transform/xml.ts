/**
 * The hardened XML reader for message content: the only module that imports the XML library.
 *
 * Message XML comes from strangers (anyone can DM a Channels account), so the reader refuses any
 * DTD, never expands entities beyond the five XML ones and numeric character references, and
 * caps input size, element depth, element count and attributes per element. It is otherwise
 * tolerant of what WeChat really sends: a `<?xml?>` declaration, white space around the root,
 * spaces around `=` in attributes (`len = "98211"`), a bare `&` in text, CDATA anywhere.
 *
 * It uses htmlparser2's `Tokenizer` in XML mode with entity decoding switched off (ADR 0003): the
 * tokenizer only reports index ranges, this module builds a small tree from them, checks that
 * every element is closed by its own end tag, and decodes the permitted references itself, so
 * what gets expanded is decided here and nowhere else.
 */
import { Tokenizer } from 'htmlparser2';
import type { TokenizerCallbacks } from 'htmlparser2';

import { PoisonError } from '../core/errors.ts';

/** One element of a parsed document. */
export interface XmlElement {
  /** Tag name exactly as written (XML names are case-sensitive: `finderFeed`, `objectId`). */
  readonly name: string;
  /** Attributes with references decoded; the first of duplicate names wins. */
  readonly attrs: ReadonlyMap<string, string>;
  readonly children: readonly XmlElement[];
  /** The element's own text and CDATA, concatenated, references decoded, not trimmed. */
  readonly text: string;
}

/** Caps that bound the work and memory one document can cost. */
export interface XmlLimits {
  /** Longest accepted document, in UTF-16 code units. */
  readonly maxChars: number;
  /** Deepest element nesting; the root is depth 1. */
  readonly maxDepth: number;
  /** Most elements in one document. */
  readonly maxElements: number;
  /** Most attributes on one element. */
  readonly maxAttributes: number;
}

/**
 * Defaults sized far above real traffic: the largest WeChat control payloads (dynacfg,
 * functionmsg) are a few KB, chat records a few hundred elements, an image tag ~25 attributes.
 */
export const DEFAULT_XML_LIMITS: XmlLimits = Object.freeze({
  maxChars: 1024 * 1024,
  maxDepth: 64,
  maxElements: 20_000,
  maxAttributes: 128,
});

interface MutableElement {
  name: string;
  attrs: Map<string, string>;
  children: MutableElement[];
  text: string;
}

/** Declarations that make a DTD; any other `<!…>` that is not a comment or CDATA is junk. */
const DTD_DECLARATION = /^\s*(?:DOCTYPE|ENTITY|ELEMENT|ATTLIST|NOTATION)\b/i;

/**
 * The references XML predefines: `&amp;` `&lt;` `&gt;` `&quot;` `&apos;`, `&#38;`, `&#x26;`.
 * Example: `stodownload?m=b194&amp;filekey=30` → `stodownload?m=b194&filekey=30`.
 * Anything else (`&nbsp;`, `&xxe;`, a bare `&`) is left as written, never expanded.
 */
const REFERENCE = /&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,7}));/g;

const NAMED: Readonly<Record<string, string>> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

/** A numeric character reference's code point as text. */
export function codePointText(cp: number): string {
  // NUL, lone surrogates and values past Unicode cannot be stored as text: U+FFFD, as parsers do.
  if (cp === 0 || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return '\uFFFD';
  return String.fromCodePoint(cp);
}

function replaceReference(_m: string, name?: string, dec?: string, hex?: string): string {
  if (name !== undefined) return NAMED[name] ?? '';
  if (dec !== undefined) return codePointText(Number.parseInt(dec, 10));
  return codePointText(Number.parseInt(hex ?? '0', 16));
}

/**
 * Decodes the five XML entities and numeric character references; leaves everything else.
 *
 * Exported for the places where WeChat double-encodes (`refermsg/content`, `videoPlayDuration`
 * `10&gt;&gt;`) and text must be decoded once more by hand.
 */
export function decodeXmlReferences(text: string): string {
  return text.includes('&') ? text.replace(REFERENCE, replaceReference) : text;
}

function fail(code: 'MSGPIPE_ERR_XML' | 'MSGPIPE_ERR_XML_DTD' | 'MSGPIPE_ERR_XML_LIMIT', message: string): never {
  throw new PoisonError(code, message);
}

function isBlank(text: string): boolean {
  // The BOM counts as blank: some senders put it before `<?xml`.
  return /^[\s\uFEFF]*$/.test(text);
}

/** Builds the tree from tokenizer callbacks, enforcing well-formedness and the caps. */
class TreeBuilder implements TokenizerCallbacks {
  src = '';
  limits: XmlLimits = DEFAULT_XML_LIMITS;
  stack: MutableElement[] = [];
  root: MutableElement | undefined;
  pending: MutableElement | undefined;
  pendingAttrs = 0;
  attrName = '';
  attrValue = '';
  elements = 0;

  start(src: string, limits: XmlLimits): void {
    this.src = src;
    this.limits = limits;
    this.stack = [];
    this.root = undefined;
    this.pending = undefined;
    this.elements = 0;
  }

  onopentagname(start: number, end: number): void {
    if (this.root !== undefined && this.stack.length === 0) fail('MSGPIPE_ERR_XML', 'A second element follows the root element');
    if (++this.elements > this.limits.maxElements) {
      fail('MSGPIPE_ERR_XML_LIMIT', `More than ${this.limits.maxElements} elements`);
    }
    if (this.stack.length >= this.limits.maxDepth) {
      fail('MSGPIPE_ERR_XML_LIMIT', `Elements nested deeper than ${this.limits.maxDepth} levels`);
    }
    this.pending = { name: this.src.slice(start, end), attrs: new Map(), children: [], text: '' };
    this.pendingAttrs = 0;
  }

  onattribname(start: number, end: number): void {
    if (++this.pendingAttrs > this.limits.maxAttributes) {
      fail('MSGPIPE_ERR_XML_LIMIT', `More than ${this.limits.maxAttributes} attributes on one element`);
    }
    this.attrName = this.src.slice(start, end);
    this.attrValue = '';
  }

  onattribdata(start: number, end: number): void {
    this.attrValue += this.src.slice(start, end);
  }

  onattribentity(): void {
    // Not called: the tokenizer runs with entity decoding off.
  }

  onattribend(): void {
    const el = this.pending;
    if (el !== undefined && !el.attrs.has(this.attrName)) el.attrs.set(this.attrName, decodeXmlReferences(this.attrValue));
  }

  private attach(el: MutableElement): void {
    const parent = this.stack[this.stack.length - 1];
    if (parent !== undefined) parent.children.push(el);
    else this.root = el;
  }

  onopentagend(): void {
    const el = this.pending;
    if (el === undefined) return;
    this.pending = undefined;
    this.attach(el);
    this.stack.push(el);
  }

  onselfclosingtag(): void {
    const el = this.pending;
    if (el === undefined) return;
    this.pending = undefined;
    this.attach(el);
  }

  onclosetag(start: number, end: number): void {
    const name = this.src.slice(start, end);
    const open = this.stack.pop();
    if (open === undefined) fail('MSGPIPE_ERR_XML', `End tag </${name.slice(0, 40)}> without a start tag`);
    if (open.name !== name) {
      fail('MSGPIPE_ERR_XML', `End tag </${name.slice(0, 40)}> does not close <${open.name.slice(0, 40)}>`);
    }
  }

  ontext(start: number, end: number): void {
    const text = this.src.slice(start, end);
    const top = this.stack[this.stack.length - 1];
    if (top !== undefined) top.text += decodeXmlReferences(text);
    else if (!isBlank(text)) fail('MSGPIPE_ERR_XML', 'Text outside the root element');
  }

  ontextentity(): void {
    // Not called: the tokenizer runs with entity decoding off.
  }

  oncdata(start: number, end: number, endOffset: number): void {
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) fail('MSGPIPE_ERR_XML', 'CDATA outside the root element');
    // `end - endOffset` drops the closing `]]`; CDATA content is never decoded.
    top.text += this.src.slice(start, end - endOffset);
  }

  oncomment(): void {
    // Comments carry nothing we store.
  }

  ondeclaration(start: number, end: number): void {
    const decl = this.src.slice(start, end);
    if (DTD_DECLARATION.test(decl)) fail('MSGPIPE_ERR_XML_DTD', 'XML carries a DTD declaration; DTDs are refused');
    fail('MSGPIPE_ERR_XML', 'Unknown <! declaration');
  }

  onprocessinginstruction(): void {
    // `<?xml version="1.0"?>` and friends: nothing to keep.
  }

  onend(): void {
    if (this.pending !== undefined) fail('MSGPIPE_ERR_XML', `Unterminated start tag <${this.pending.name.slice(0, 40)}`);
    const open = this.stack[this.stack.length - 1];
    if (open !== undefined) fail('MSGPIPE_ERR_XML', `Element <${open.name.slice(0, 40)}> is not closed`);
    if (this.root === undefined) fail('MSGPIPE_ERR_XML', 'No root element');
  }
}

// One tokenizer and builder for the process: parsing is synchronous and never re-entered from a
// callback, and `reset()` clears any state an aborted parse left behind.
const builder = new TreeBuilder();
const tokenizer = new Tokenizer({ xmlMode: true, decodeEntities: false, recognizeSelfClosing: true }, builder);

/**
 * Parses one XML document into a tree.
 *
 * `<?xml version="1.0"?>\n<msg><img md5="0f6d…" length="48213" /></msg>` gives the `msg` element
 * with one child `img` whose `attrs.length` is `'48213'`.
 *
 * @throws {PoisonError} `MSGPIPE_ERR_XML_DTD` for a DTD, `MSGPIPE_ERR_XML_LIMIT` past a cap,
 *   `MSGPIPE_ERR_XML` when the text is not a single well-formed element.
 */
export function parseXml(text: string, limits: XmlLimits = DEFAULT_XML_LIMITS): XmlElement {
  if (text.length > limits.maxChars) fail('MSGPIPE_ERR_XML_LIMIT', `XML longer than ${limits.maxChars} characters`);
  builder.start(text, limits);
  tokenizer.reset();
  try {
    tokenizer.write(text);
    tokenizer.end();
  } finally {
    // Drop references to the input so a large document is not kept alive by the singleton.
    builder.src = '';
  }
  const root = builder.root;
  builder.root = undefined;
  builder.stack = [];
  if (root === undefined) fail('MSGPIPE_ERR_XML', 'No root element');
  return root;
}

/** The first child element called `name`. */
export function child(el: XmlElement | undefined, name: string): XmlElement | undefined {
  if (el === undefined) return undefined;
  for (const c of el.children) if (c.name === name) return c;
  return undefined;
}

/** Every child element called `name`, in document order. */
export function childrenNamed(el: XmlElement | undefined, name: string): XmlElement[] {
  return el === undefined ? [] : el.children.filter((c) => c.name === name);
}

/** The element at a path of child names below `el`: `at(msg, 'appmsg', 'finderFeed')`. */
export function at(el: XmlElement | undefined, ...path: readonly string[]): XmlElement | undefined {
  let cur = el;
  for (const name of path) {
    cur = child(cur, name);
    if (cur === undefined) return undefined;
  }
  return cur;
}

/** The text of the element at `path` below `el`, or `''` when it is absent. */
export function textAt(el: XmlElement | undefined, ...path: readonly string[]): string {
  return at(el, ...path)?.text ?? '';
}

/** The attribute `name` of `el`, or `''` when either is absent. */
export function attr(el: XmlElement | undefined, name: string): string {
  return el?.attrs.get(name) ?? '';
}

/**
 * `el` itself when it is called `name`, else its first child called `name`: content readers
 * accept both `<msg><img …/></msg>` and a bare `<img …/>`.
 */
export function selfOrChild(el: XmlElement | undefined, name: string): XmlElement | undefined {
  return el?.name === name ? el : child(el, name);
}
