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
import type { MessageKind } from '../kind.ts';
import { child, childrenNamed, textAt } from '../xml.ts';
import type { XmlElement } from '../xml.ts';
import { renderDollarBraces } from './pat.ts';

function linkValue(link: XmlElement): string {
  const members = childrenNamed(child(link, 'memberlist'), 'member');
  if (members.length > 0) {
    const sep = child(link, 'separator')?.text ?? '、';
    return members
      .map((m) => {
        const nick = textAt(m, 'nickname').trim();
        return nick === '' ? textAt(m, 'username').trim() : nick;
      })
      .join(sep);
  }
  return textAt(link, 'title').trim();
}

/** `你将"$kickoutname$"移出了群聊` with kickoutname=小林 → `你将"小林"移出了群聊`; unknown names stay. */
function renderDollarNames(template: string, links: Readonly<Record<string, string>>): string {
  return template.replace(/\$([A-Za-z0-9_]{1,64})\$/g, (m, name: string) => (Object.hasOwn(links, name) ? (links[name] ?? m) : m));
}

function readSysmsgTemplate(root: XmlElement): MessageKind {
  const ct = child(child(root, 'sysmsgtemplate'), 'content_template');
  const links = Object.create(null) as Record<string, string>;
  for (const link of childrenNamed(child(ct, 'link_list'), 'link')) {
    const name = link.attrs.get('name');
    if (name !== undefined && !(name in links)) links[name] = linkValue(link);
  }
  const template = textAt(ct, 'template');
  const plain = textAt(ct, 'plain');
  const text = template.trim() === '' ? plain : renderDollarNames(template, links);
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
