/**
 * `GET /openapi.json`: the OpenAPI 3.1 description of the query API, built from the same
 * constants the validation uses (session types, message types, sort fields, page limits).
 */
import { MSG_TYPES } from '../core/types.ts';
import { API_CODES, API_MESSAGES } from './envelope.ts';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, SESSION_TYPES, SORT_FIELDS } from './params.ts';

type Schema = Record<string, unknown>;

interface ParamSpec {
  readonly name: string;
  readonly required: boolean;
  readonly description: string;
  readonly schema: Schema;
}

const str: Schema = { type: 'string' };
const page: ParamSpec = { name: 'page', required: false, description: 'Page number, from 1.', schema: { type: 'integer', minimum: 1, default: 1 } };
const pageSize: ParamSpec = {
  name: 'page_size',
  required: false,
  description: `Page size, 1–${MAX_PAGE_SIZE}.`,
  schema: { type: 'integer', minimum: 1, maximum: MAX_PAGE_SIZE, default: DEFAULT_PAGE_SIZE },
};
const auth: ParamSpec[] = [
  { name: 'ext_corp_id', required: true, description: 'Tenant id; signed like every parameter.', schema: str },
  {
    name: 'signature',
    required: true,
    description: 'HMAC-SHA256 (lower-case hex) with the tenant secret over the other parameters sorted by name as `k=v&k=v`, values raw or URL-encoded as Python `urlencode` does.',
    schema: { type: 'string', pattern: '^[0-9a-fA-F]{64}$' },
  },
  { name: 'timestamp', required: false, description: 'Unix seconds, within ±300 s of the server (required in strict mode).', schema: { type: 'integer' } },
  { name: 'nonce', required: false, description: 'Single-use random string, 8–64 of `A-Za-z0-9_-` (required in strict mode).', schema: str },
];
const staff: ParamSpec = { name: 'ext_staff_id', required: true, description: 'Staff account id.', schema: str };

function parameters(specs: readonly ParamSpec[]): Schema[] {
  return specs.map((p) => ({ in: 'query', ...p }));
}

const envelope = (data: Schema): Schema => ({
  type: 'object',
  required: ['code', 'message', 'data'],
  properties: { code: { type: 'integer' }, message: { type: 'string' }, data },
});

const message: Schema = {
  type: 'object',
  properties: {
    id: { type: 'string', description: 'Message id (= msgid); the max_id / min_id anchor.' },
    ext_corp_id: str,
    msgid: str,
    action: { type: 'string', enum: ['send', 'recall'] },
    from: str,
    tolist: { type: 'array', items: str },
    room_id: str,
    msg_time: { type: 'integer', description: 'Unix ms.' },
    msg_type: { type: 'string', enum: [...MSG_TYPES] },
    content_text: str,
    seq: { type: 'integer', description: 'UInt64, written with exact digits.' },
    session_id: str,
    session_type: { type: 'string', enum: [...SESSION_TYPES] },
    peer_ext_id: str,
    sender_name: str,
    sender_avatar: str,
    chat_msg_content: {
      type: 'object',
      properties: { id: str, chat_msg_id: str, content_type: str, content: str, file_url: str, file_name: str },
    },
    attachments: { type: ['object', 'null'], description: 'Typed payload; null for text.' },
    recalled: { type: 'boolean' },
    recall_time: { type: ['integer', 'null'] },
  },
};

const session: Schema = {
  type: 'object',
  properties: {
    id: str,
    ext_corp_id: str,
    msgid: str,
    action: str,
    from: str,
    tolist: { type: 'array', items: str },
    room_id: str,
    msg_time: { type: 'integer' },
    msg_type: str,
    content_text: str,
    seq: { type: 'integer' },
    session_id: str,
    session_type: { type: 'string', enum: [...SESSION_TYPES] },
    peer_avatar: str,
    peer_name: str,
    peer_ext_id: str,
    peer_type: { type: 'string', description: '1 WeChat user, 2 WeCom user, empty when unknown.' },
    group_chat_name: str,
    msg_count: { type: 'integer' },
  },
};

const page_of = (item: Schema, extra: Schema = {}): Schema => ({
  type: 'object',
  properties: { items: { type: 'array', items: item }, total: { type: 'integer' }, ...extra },
});

const errors = {
  '400': { description: `Codes ${API_CODES.BAD_REQUEST} and 1001–1006: ${Object.entries(API_MESSAGES).filter(([c]) => Number(c) >= 1000).map(([c, m]) => `${c} ${m}`).join('; ')}.` },
  '401': { description: 'Code 401: signature verification failed (unknown tenant, missing, wrong, stale or replayed).' },
  '404': { description: 'Code 404: not found (unknown path, or a max_id / min_id outside the conversation).' },
  '429': { description: 'Code 429: the tenant exceeded its requests per second.' },
  '500': { description: 'Code 500: internal error (no details are returned).' },
};

const ok = (data: Schema): Schema => ({
  description: 'Code 0.',
  content: { 'application/json': { schema: envelope(data) } },
});

/** The document served at `/openapi.json`. */
export function openApiDocument(): Schema {
  return {
    openapi: '3.1.0',
    info: {
      title: 'msgpipe query API (msg-server compatible)',
      version: '1',
      description: 'Signed read access to archived chats. Envelope {code, message, data}; code 0 is success.',
    },
    paths: {
      '/api/v1/chat-msg/sync': {
        post: {
          summary: "Trigger an immediate poll of the tenant's sources; answers at once.",
          requestBody: {
            required: true,
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  required: ['ext_corp_id', 'signature'],
                  properties: { ext_corp_id: str, signature: str, timestamp: { type: 'integer' }, nonce: str },
                },
              },
            },
          },
          responses: { '200': ok({ type: 'null' }), ...errors },
        },
      },
      '/api/v1/chat-msg/sessions': {
        get: {
          summary: "A staff member's sessions, newest first, each with its latest message and peer.",
          parameters: parameters([
            ...auth,
            staff,
            { name: 'session_type', required: true, description: 'Session kind.', schema: { type: 'string', enum: [...SESSION_TYPES] } },
            { name: 'name', required: false, description: "Substring of the peer's name (case-insensitive).", schema: str },
            page,
            pageSize,
            { name: 'sort_field', required: false, description: "Accepted and signed (msg-server's clients send it), ignored: sessions come newest first.", schema: str },
            { name: 'sort_type', required: false, description: 'Accepted and signed, ignored.', schema: str },
          ]),
          responses: { '200': ok(page_of(session, { page: { type: 'integer' }, page_size: { type: 'integer' } })), ...errors },
        },
      },
      '/api/v1/chat-msg/session-msgs': {
        get: {
          summary: 'Messages between a staff member and one peer.',
          parameters: parameters([
            ...auth,
            staff,
            { name: 'receiver_id', required: true, description: 'The peer (peer_ext_id).', schema: str },
            { name: 'msg_type', required: false, description: 'Only this kind.', schema: { type: 'string', enum: [...MSG_TYPES] } },
            { name: 'send_at_start', required: false, description: 'First day (YYYY-MM-DD in query.timezone).', schema: { type: 'string', format: 'date' } },
            { name: 'send_at_end', required: false, description: 'Last day, included.', schema: { type: 'string', format: 'date' } },
            { name: 'max_id', required: false, description: 'Only messages newer than this message id (the page next to it).', schema: str },
            { name: 'min_id', required: false, description: 'Only messages older than this message id (the page next to it).', schema: str },
            page,
            pageSize,
            { name: 'sort_field', required: false, description: 'Order.', schema: { type: 'string', enum: [...SORT_FIELDS], default: 'msg_time' } },
            { name: 'sort_type', required: false, description: 'Direction.', schema: { type: 'string', enum: ['asc', 'desc'], default: 'desc' } },
            { name: 'limit', required: false, description: "msg-server's unused context size: accepted and signed, ignored.", schema: str },
          ]),
          responses: { '200': ok(page_of(message)), ...errors },
        },
      },
      '/api/v1/chat-msg/search': {
        get: {
          summary: 'Messages of one staff↔peer conversation containing a keyword, newest first.',
          parameters: parameters([
            ...auth,
            staff,
            { name: 'ext_peer_id', required: true, description: 'The peer.', schema: str },
            { name: 'keyword', required: true, description: 'Substring to find (1–100 characters; Chinese, Latin, emoji).', schema: str },
            page,
            pageSize,
          ]),
          responses: { '200': ok(page_of(message)), ...errors },
        },
      },
    },
  };
}
