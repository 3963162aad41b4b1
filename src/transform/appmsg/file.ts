/**
 * appmsg type 6 (file, upload complete) → `file`; type 74 (upload in progress placeholder) → a
 * `file_upload` event.
 *
 * ```text
 * <msg><appmsg>
 *   <title>报价单-2024Q3.xlsx</title>      → content.filename, content_text
 *   <type>6</type>                        → app_type
 *   <appattach>                           1
 *     <totallen>20931</totallen>            → content.filesize
 *     <attachid>@cdn_…_1</attachid>         → content.attachid
 *     <fileext>xlsx</fileext>               → content.fileext
 *     <cdnattachurl>3057…</cdnattachurl>    → content.cdnattachurl
 *     <aeskey>…</aeskey>                    → content.aeskey
 *     <overwrite_newmsgid>5128…</overwrite_newmsgid>  0..1 → content.overwrite_newmsgid (the type-74 NewMsgId)
 *     <fileuploadtoken>, <status>         0..1 (type 74) → payload.fileuploadtoken, payload.status
 *   </appattach>
 *   <md5>1679091c…</md5>                  → content.md5sum
 * </appmsg></msg>
 * ```
 *
 * Type 74 is followed by a type 6 for the same file; storing 74 as a message would show the file
 * twice, dropping it would lose an upload that never completed, so it is an event.
 */
import type { EventKind, MessageKind } from '../kind.ts';
import { leadingInt, uint64Text } from '../values.ts';
import { child, textAt } from '../xml.ts';
import type { AppMsgHead } from './head.ts';

/** Reads appmsg type 6: a downloadable file. */
export function readFile(head: AppMsgHead): MessageKind {
  const att = child(head.appmsg, 'appattach');
  return {
    kind: 'message',
    msgType: 'file',
    text: head.title.trim(),
    appType: head.type,
    payload: {
      md5sum: textAt(head.appmsg, 'md5').trim(),
      filename: head.title,
      fileext: textAt(att, 'fileext').trim(),
      filesize: leadingInt(textAt(att, 'totallen')),
      attachid: textAt(att, 'attachid').trim(),
      cdnattachurl: textAt(att, 'cdnattachurl').trim(),
      aeskey: textAt(att, 'aeskey').trim(),
      overwrite_newmsgid: uint64Text(textAt(att, 'overwrite_newmsgid')),
    },
  };
}

/** Reads appmsg type 74: the placeholder of a file still uploading. */
export function readFileUpload(head: AppMsgHead): EventKind {
  const att = child(head.appmsg, 'appattach');
  return {
    kind: 'event',
    eventType: 'file_upload',
    appType: head.type,
    payload: {
      filename: head.title,
      fileext: textAt(att, 'fileext').trim(),
      filesize: leadingInt(textAt(att, 'totallen')),
      md5sum: textAt(head.appmsg, 'md5').trim(),
      fileuploadtoken: textAt(att, 'fileuploadtoken').trim(),
      status: leadingInt(textAt(att, 'status')),
      fromusername: head.fromusername,
    },
  };
}
