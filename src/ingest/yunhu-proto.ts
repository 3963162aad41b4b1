/**
 * The Yunhu (云湖) protobuf wire format: proto/yunhu/*.proto loaded with protobufjs at start,
 * decoded by field number (names are ours; the numbers are the API's), unknown fields skipped,
 * 64-bit values handed on as exact decimal strings (`longs: String`). Strings are read
 * leniently (the .proto files turn off `utf8_validation`): an invalid UTF-8 sequence becomes
 * U+FFFD, so one name the server clipped inside a character does not make the whole message (or
 * the whole conversation list) undecodable.
 *
 * A list response is not decoded as a whole: {@link readListResponse} walks its top-level fields
 * and returns the byte span of every message (field 2), so a raw record is exactly the bytes the
 * server sent for that message, never a re-encoding. The transform decodes each span.
 *
 * Decoding errors (truncated varints, lengths past the end, invalid wire types) are thrown by
 * protobufjs as `Error` or `RangeError`; every entry point here turns them into
 * {@link WireError}, so callers can tell bad data from a bug.
 */
import { fileURLToPath } from 'node:url';

import protobuf from 'protobufjs';

/** The .proto files (`<package>/proto/yunhu`, from src/ingest or dist/ingest). */
export const YUNHU_PROTO_DIR = fileURLToPath(new URL('../../proto/yunhu/', import.meta.url));

const root = new protobuf.Root();
root.loadSync([`${YUNHU_PROTO_DIR}msg.proto`, `${YUNHU_PROTO_DIR}conversation.proto`], { keepCase: true });
root.resolveAll();

function type(name: string): protobuf.Type {
  return root.lookupType(`yunhu.${name}`);
}

/** The message types by name, for encoding (simulator, tests) and decoding. */
export const YUNHU_TYPES = {
  Status: type('Status'),
  Msg: type('Msg'),
  MsgContent: type('MsgContent'),
  ListMessageResponse: type('ListMessageResponse'),
  ListMessageRequest: type('ListMessageRequest'),
  ListMessageBySeqRequest: type('ListMessageBySeqRequest'),
  ListMessageByMidSeqRequest: type('ListMessageByMidSeqRequest'),
  SendMessageRequest: type('SendMessageRequest'),
  RecallMsgRequest: type('RecallMsgRequest'),
  StatusResponse: type('StatusResponse'),
  ConversationListRequest: type('ConversationListRequest'),
  ConversationListResponse: type('ConversationListResponse'),
} as const;
export type YunhuTypeName = keyof typeof YUNHU_TYPES;

/** Options of every decode: 64-bit as decimal strings, defaults filled, arrays never absent. */
const TO_OBJECT: protobuf.IConversionOptions = { longs: String, enums: Number, defaults: true, arrays: true };

/** Bytes that are not the protobuf message they should be. */
export class WireError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'WireError';
  }
}

function wrap<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof WireError) throw err;
    throw new WireError(`${what}: ${(err as Error).message}`, err);
  }
}

/** Encodes a plain object (field names as in the .proto) as the named message. */
export function encodeYunhu(name: YunhuTypeName, value: Readonly<Record<string, unknown>>): Uint8Array {
  const t = YUNHU_TYPES[name];
  return t.encode(t.fromObject(value)).finish();
}

/**
 * Decodes bytes as the named message into a plain object (64-bit as decimal strings).
 *
 * @throws {WireError} when the bytes are not that message
 */
export function decodeYunhu(name: YunhuTypeName, bytes: Uint8Array): Record<string, unknown> {
  return wrap(`not a yunhu.${name}`, () => {
    const t = YUNHU_TYPES[name];
    return t.toObject(t.decode(bytes), TO_OBJECT);
  });
}

/** A decoded scalar (string, number, 64-bit decimal string) as text; `fallback` for anything else. */
export function scalarText(value: unknown, fallback = ''): string {
  return typeof value === 'string' || typeof value === 'number' || typeof value === 'bigint' ? String(value) : fallback;
}

/** `Status` of a response. `code` 1 is success. */
export interface YunhuStatus {
  readonly requestId: string;
  readonly code: number;
  readonly msg: string;
}

function readStatus(value: unknown): YunhuStatus | undefined {
  if (value === null || typeof value !== 'object') return undefined;
  const s = value as Record<string, unknown>;
  return { requestId: scalarText(s['request_id'], '0'), code: Number(s['code'] ?? 0), msg: typeof s['msg'] === 'string' ? s['msg'] : '' };
}

/** A byte range of a buffer. */
export interface ByteSpan {
  readonly start: number;
  readonly end: number;
}

/** A list response split into its status and the exact spans of its messages. */
export interface ListResponse {
  /** Absent when the response has no field 1. */
  readonly status: YunhuStatus | undefined;
  /** Field 2, each message's bytes as they stand in the body. */
  readonly spans: readonly ByteSpan[];
  /** Field 3 as a decimal string ('0' when absent). */
  readonly total: string;
}

const WIRE_LENGTH_DELIMITED = 2;

/**
 * Splits a list-message / list-message-by-seq / list-message-by-mid-seq response: the status is
 * decoded, every message (field 2) is only located. Unknown top-level fields are skipped.
 *
 * @throws {WireError} when the body is not a protobuf message (or field 2 is not length-delimited)
 */
export function readListResponse(body: Uint8Array): ListResponse {
  return wrap('not a list response', () => {
    const reader = protobuf.Reader.create(body);
    let status: YunhuStatus | undefined;
    const spans: ByteSpan[] = [];
    let total = '0';
    while (reader.pos < reader.len) {
      const tag = reader.uint32();
      const field = tag >>> 3;
      const wire = tag & 7;
      if (field === 0) throw new WireError('field number 0');
      if (field === 1 && wire === WIRE_LENGTH_DELIMITED) {
        const len = reader.uint32();
        const start = reader.pos;
        reader.skip(len);
        status = readStatus(decodeYunhu('Status', body.subarray(start, start + len)));
      } else if (field === 2) {
        if (wire !== WIRE_LENGTH_DELIMITED) throw new WireError(`field 2 has wire type ${wire}`);
        const len = reader.uint32();
        const start = reader.pos;
        reader.skip(len);
        spans.push({ start, end: start + len });
      } else if (field === 3 && wire === 0) {
        const value: unknown = reader.uint64();
        total = String(value);
      } else {
        reader.skipType(wire);
      }
    }
    return { status, spans, total };
  });
}

/**
 * Decodes a response whose only field of interest is the status (send, edit, recall).
 *
 * @throws {WireError} when the body is not a protobuf message
 */
export function readStatusResponse(body: Uint8Array): YunhuStatus | undefined {
  return readStatus(decodeYunhu('StatusResponse', body)['status']);
}

/** One chat of the conversation list. */
export interface YunhuConversation {
  readonly chatId: string;
  readonly chatType: number;
  readonly name: string;
}

/** A decoded conversation list. */
export interface ConversationList {
  readonly status: YunhuStatus | undefined;
  readonly chats: readonly YunhuConversation[];
  readonly md5: string;
}

/**
 * Decodes a conversation/list response.
 *
 * @throws {WireError} when the body is not a conversation list
 */
export function readConversationList(body: Uint8Array): ConversationList {
  const value = decodeYunhu('ConversationListResponse', body);
  const data = (value['data'] ?? []) as Record<string, unknown>[];
  return {
    status: readStatus(value['status']),
    chats: data.map((c) => ({ chatId: scalarText(c['chat_id']), chatType: Number(c['chat_type'] ?? 0), name: scalarText(c['name']) })),
    md5: typeof value['md5'] === 'string' ? value['md5'] : '',
  };
}
