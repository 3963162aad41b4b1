/**
 * Displayed sysmsg lines → `system`: `sysmsgtemplate`, `roomtoolstips`,
 * `mmchatroombarannouncememt` (sic, WeChat's spelling) and other lines with a plain text.
 *
 * ```text
 * <sysmsg type="sysmsgtemplate">
 *   <sysmsgtemplate><content_template type="tmpl_type_profile">   @type → content.template_type
 *     <plain><![CDATA[]]></plain>                                  → content.plain (used when no template)
 *     <template><![CDATA[你将"$kickoutname$"移出了群聊]]></template>  → content.template; rendered → content_text
 *     <link_list>
 *       <link name="kickoutname" type="link_profile">              0..n → content.links[name]
 *         <memberlist><member><username/><nickname>小林</nickname></member>…</memberlist>
 *         <separator>、</separator>                                  0..1 (between members)
 *         <title>撤销</title>                                        0..1 (links without members)
 *       </link>
 *     </link_list>
 *   </content_template></sysmsgtemplate>
 * </sysmsg>
 *
 * <sysmsg type="roomtoolstips"><todo>
 *   <title>, <creator>, <oper>, <scene>, <todoid>, <related_msgid>  → content.*
 *   <template><![CDATA[${wxid_a} 将你的消息设置为群待办]]></template>  → rendered → content_text
 * </todo></sysmsg>
 *
 * <sysmsg type="mmchatroombarannouncememt"><mmchatroombarannouncememt>
 *   <content><![CDATA[本周六休息]]></content>       → content.content, content_text
 *   <announcement_id><![CDATA[…]]></announcement_id> → content.announcement_id
 *   <xmlcontent><![CDATA[<group_notice_item…>]]></xmlcontent>  (kept in raw_content only)
 * </mmchatroombarannouncememt></sysmsg>
 * ```
 */
import { PoisonError } from '../../core/errors.ts';
import type { MessageKind } from '../kind.ts';
import { child, childrenNamed, DEFAULT_XML_LIMITS, textAt } from '../xml.ts';
import type { XmlElement } from '../xml.ts';
import { renderDollarBraces } from './pat.ts';

/**
 * The most characters the links and the rendered line of one template may add up to. Joining
 * members and repeating `$name$` multiply the input: a 500 KB item could otherwise build strings
 * of gigabytes before the size check of the row sees them. Twice the XML cap, as that check's
 * (`maxOutputBytes`, twice the item cap): a line this long is refused there anyway.
 */
const MAX_RENDERED_CHARS = 2 * DEFAULT_XML_LIMITS.maxChars;

/** What a template may still build, in characters; throws before anything larger is built. */
class RenderBudget {
  private left = MAX_RENDERED_CHARS;

  take(chars: number): void {
    this.left -= chars;
    if (this.left < 0) throw new PoisonError('MSGPIPE_ERR_XML_LIMIT', `System line renders to more than ${MAX_RENDERED_CHARS} characters`);
  }
}

function linkValue(link: XmlElement, budget: RenderBudget): string {
  const members = childrenNamed(child(link, 'memberlist'), 'member');
  if (members.length > 0) {
    const sep = child(link, 'separator')?.text ?? '、';
    const names = members.map((m) => {
      const nick = textAt(m, 'nickname').trim();
      return nick === '' ? textAt(m, 'username').trim() : nick;
    });
    budget.take(names.reduce((n, name) => n + name.length, sep.length * (names.length - 1)));
    return names.join(sep);
  }
  const title = textAt(link, 'title').trim();
  budget.take(title.length);
  return title;
}

/** `你将"$kickoutname$"移出了群聊` with kickoutname=小林 → `你将"小林"移出了群聊`; unknown names stay. */
function renderDollarNames(template: string, links: Readonly<Record<string, string>>, budget: RenderBudget): string {
  budget.take(template.length);
  return template.replace(/\$([A-Za-z0-9_]{1,64})\$/g, (m, name: string) => {
    const value = Object.hasOwn(links, name) ? (links[name] ?? m) : m;
    budget.take(value.length - m.length);
    return value;
  });
}

function readSysmsgTemplate(root: XmlElement): MessageKind {
  const ct = child(child(root, 'sysmsgtemplate'), 'content_template');
  const links = Object.create(null) as Record<string, string>;
  const budget = new RenderBudget();
  for (const link of childrenNamed(child(ct, 'link_list'), 'link')) {
    const name = link.attrs.get('name');
    if (name !== undefined && !(name in links)) links[name] = linkValue(link, budget);
  }
  const template = textAt(ct, 'template');
  const plain = textAt(ct, 'plain');
  const text = template.trim() === '' ? plain : renderDollarNames(template, links, budget);
  return {
    kind: 'message',
    msgType: 'system',
    text: text.trim(),
    sysType: 'sysmsgtemplate',
    payload: { template_type: ct?.attrs.get('type') ?? '', template, plain, links: { ...links } },
  };
}

function readRoomToolsTips(root: XmlElement): MessageKind {
  const todo = child(root, 'todo');
  const template = textAt(todo, 'template');
  return {
    kind: 'message',
    msgType: 'system',
    text: renderDollarBraces(template).trim(),
    sysType: 'roomtoolstips',
    payload: {
      todoid: textAt(todo, 'todoid').trim(),
      title: textAt(todo, 'title'),
      creator: textAt(todo, 'creator').trim(),
      oper: textAt(todo, 'oper').trim(),
      scene: textAt(todo, 'scene').trim(),
      related_msgid: textAt(todo, 'related_msgid').trim(),
      template,
    },
  };
}

function readAnnouncement(root: XmlElement, type: string): MessageKind {
  const a = child(root, type);
  const content = textAt(a, 'content');
  return {
    kind: 'message',
    msgType: 'system',
    text: content.trim(),
    sysType: type,
    payload: { content, announcement_id: textAt(a, 'announcement_id').trim() },
  };
}

/** A displayed line of another type: the first of `plain`, `text`, `template`, `content`. */
function readPlainLine(root: XmlElement, type: string): MessageKind {
  const v = child(root, type) ?? root;
  let text = '';
  for (const name of ['plain', 'text', 'template', 'content']) {
    text = textAt(v, name).trim();
    if (text !== '') break;
  }
  return { kind: 'message', msgType: 'system', text: renderDollarBraces(text), sysType: type, payload: { content: text } };
}

/** sysmsg types read here. */
export const DISPLAY_SYSMSG_TYPES: ReadonlySet<string> = new Set([
  'sysmsgtemplate',
  'roomtoolstips',
  'mmchatroombarannouncememt',
  'delchatroommember',
  'NewXmlChatRoomAccessVerifyApplication',
]);

/** Reads a displayed system line from the `<sysmsg>` root; `type` is one of {@link DISPLAY_SYSMSG_TYPES}. */
export function readDisplaySysmsg(root: XmlElement, type: string): MessageKind {
  switch (type) {
    case 'sysmsgtemplate':
      return readSysmsgTemplate(root);
    case 'roomtoolstips':
      return readRoomToolsTips(root);
    case 'mmchatroombarannouncememt':
      return readAnnouncement(root, type);
    default:
      return readPlainLine(root, type);
  }
}
