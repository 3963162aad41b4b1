/**
 * MsgType 48: location.
 *
 * ```text
 * <msg>
 *   <location                          1
 *     x="31.230416"                      → content.latitude   (x is the latitude)
 *     y="121.473701"                     → content.longitude
 *     scale="16"                         → content.zoom
 *     label="上海市黄浦区人民大道200号"    → content.address, content_text
 *     poiname="人民广场"                  → content.title, content_text
 *     poiid maptype cityname adcode      → content.poiid, content.maptype, content.cityname, content.adcode
 *   />
 * </msg>
 * ```
 *
 * The names are msg-server's attachment names; the place name and address are searchable.
 */
import type { MessageKind } from './kind.ts';
import { decimalNumber, joinText, leadingInt } from './values.ts';
import { attr, selfOrChild } from './xml.ts';
import type { XmlElement } from './xml.ts';

/** Reads a location message from its parsed content. */
export function readLocation(root: XmlElement | undefined): MessageKind {
  const l = selfOrChild(root, 'location');
  const title = attr(l, 'poiname');
  const address = attr(l, 'label');
  return {
    kind: 'message',
    msgType: 'location',
    text: joinText(title, address),
    payload: {
      longitude: decimalNumber(attr(l, 'y')),
      latitude: decimalNumber(attr(l, 'x')),
      address,
      title,
      zoom: leadingInt(attr(l, 'scale')),
      poiid: attr(l, 'poiid'),
      maptype: attr(l, 'maptype'),
      cityname: attr(l, 'cityname'),
      adcode: attr(l, 'adcode'),
    },
  };
}
