/**
 * MsgType 42: contact card (a person or an official account).
 *
 * ```text
 * <msg                                  1 (the card is the root's attributes)
 *   username="v3_…@stranger"              → content.username
 *   nickname="陈一一"                      → content.nickname, content_text
 *   alias fullpy                          → content.alias, content.fullpy
 *   bigheadimgurl smallheadimgurl         → content.bigheadimgurl, content.smallheadimgurl
 *   province city sex sign regionCode     → content.province, content.city, content.sex, content.sign, content.regionCode
 *   certflag certinfo brandIconUrl        → content.certflag, content.certinfo, content.brandIconUrl
 *   antispamticket="v4_…@stranger"        → content.antispamticket
 * />
 * ```
 *
 * msg-server's WeCom card has `{corpname, userid}`; a WeChat card has neither, so the WeChat
 * names are kept.
 */
import type { MessageKind } from './kind.ts';
import { leadingInt } from './values.ts';
import { attr } from './xml.ts';
import type { XmlElement } from './xml.ts';

/** Reads a contact card from its parsed content. */
export function readCard(root: XmlElement | undefined): MessageKind {
  const nickname = attr(root, 'nickname');
  return {
    kind: 'message',
    msgType: 'card',
    text: nickname.trim(),
    payload: {
      username: attr(root, 'username'),
      nickname,
      alias: attr(root, 'alias'),
      fullpy: attr(root, 'fullpy'),
      bigheadimgurl: attr(root, 'bigheadimgurl'),
      smallheadimgurl: attr(root, 'smallheadimgurl'),
      province: attr(root, 'province'),
      city: attr(root, 'city'),
      sex: leadingInt(attr(root, 'sex')),
      sign: attr(root, 'sign'),
      regionCode: attr(root, 'regionCode'),
      certflag: leadingInt(attr(root, 'certflag')),
      certinfo: attr(root, 'certinfo'),
      brandIconUrl: attr(root, 'brandIconUrl'),
      antispamticket: attr(root, 'antispamticket'),
    },
  };
}
