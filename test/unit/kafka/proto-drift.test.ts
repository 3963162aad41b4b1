import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import type { DeadLetterRow, EventRow, MessageRow } from '../../../src/core/types.ts';
import { MSGPIPE_PROTO } from '../../../src/gen/msgpipe-proto.ts';
import { PROTO_MODULE, renderProtoModule } from '../../../scripts/proto.ts';

function fieldsOf(name: 'Message' | 'Event' | 'DeadLetter'): string[] {
  return Object.keys(MSGPIPE_PROTO.nested.msgpipe.nested.v1.nested[name].fields);
}

describe('proto/msgpipe/v1', () => {
  it('matches the committed generated code (run `npm run gen` after changing a .proto file)', async () => {
    expect(readFileSync(PROTO_MODULE, 'utf8')).toBe(await renderProtoModule());
  });

  it('has a field for every row column', () => {
    // Compile-time lists: adding a row field without adding it here fails typecheck.
    const message: Record<keyof MessageRow, true> = {
      tenant: true, source: true, source_type: true, staff_id: true, msgid: true, legacy_msgid: true, session_id: true,
      session_type: true, room_id: true, action: true, from_id: true, tolist: true, peer_id: true, is_sender: true,
      msg_time: true, seq: true, msg_seq: true, msg_type: true, wx_msg_type: true, app_type: true, sys_type: true,
      content_text: true, content: true, raw_content: true, msg_source: true, at_user_list: true, pre_msgid: true,
      sync_key_type: true, item_type: true, sub_type: true, status: true, img_status: true, extinfo: true,
      peer_name: true, peer_avatar: true, ingested_at: true,
    };
    const event: Record<keyof EventRow, true> = {
      tenant: true, source: true, source_type: true, staff_id: true, event_id: true, event_type: true, event_time: true,
      session_id: true, payload: true, raw: true, ingested_at: true,
    };
    const letter: Record<Exclude<keyof DeadLetterRow, 'original_base64'>, true> = {
      tenant: true, source: true, source_type: true, stage: true, error_code: true, error_message: true, origin_key: true,
      occurred_at: true,
    };
    expect(fieldsOf('Message')).toEqual(expect.arrayContaining(Object.keys(message)));
    expect(fieldsOf('Event')).toEqual(expect.arrayContaining(Object.keys(event)));
    expect(fieldsOf('DeadLetter')).toEqual(expect.arrayContaining([...Object.keys(letter), 'original']));
  });
});
