/**
 * The JSON item of a private-letter sync page (GeWe, VideosApi and /syncFinder send the same
 * shape), checked by hand: a type guard costs a fraction of a schema library per item, and every
 * item of every page passes through it.
 *
 * ```text
 * item {syncKeyType, itemType, subType}                       → sync_key_type, item_type, sub_type
 *   .content {msgSessionId, seq, extinfo, isSender}           → session_id, seq, extinfo, is_sender
 *   .content.msg {MsgId, NewMsgId, MsgType, CreateTime,       → legacy_msgid, msgid, wx_msg_type, msg_time,
 *                 Status, ImgStatus, MsgSeq, MsgSource,          status, img_status, msg_seq, msg_source,
 *                 FromUserName.string, ToUserName.string,        from_id, tolist[0],
 *                 Content.string}                                raw_content (and every typed field)
 * ```
 *
 * Required: `content`, `content.msg`, `NewMsgId`, `MsgType`, `CreateTime`. Everything else has a
 * neutral default (`''`, `0`), because providers drop empty fields (`"Content": {}`, no
 * `PushContent`, no `extinfo` on control items). A present field of the wrong JSON type is a
 * {@link PoisonError} `MSGPIPE_ERR_SHAPE` naming the field.
 */
import { PoisonError } from '../core/errors.ts';
import { toDecimal } from '../core/json.ts';
import { MAX_EMBEDDED_JSON_DEPTH, nestsDeeperThan, toUint64Decimal, usv } from './values.ts';

/** One item, validated and normalised: ids exact, strings well-formed, defaults filled. */
export interface FinderItem {
  readonly syncKeyType: number;
  readonly itemType: number;
  readonly subType: number;
  /** Legacy int32 MsgId as decimal text, `''` when absent. */
  readonly msgId: string;
  /** NewMsgId as exact unsigned decimal text. */
  readonly newMsgId: string;
  readonly from: string;
  readonly to: string;
  readonly msgType: number;
  /** Content.string, `''` when absent. */
  readonly content: string;
  readonly status: number;
  readonly imgStatus: number;
  /** Seconds. */
  readonly createTime: number;
  readonly msgSource: string;
  readonly msgSeq: number;
  readonly sessionId: string;
  /** content.seq as exact decimal text, `'0'` when absent. */
  readonly seq: string;
  readonly extinfo: string;
  readonly isSender: 0 | 1;
}

type Obj = Readonly<Record<string, unknown>>;

function shape(path: string, expected: string, got: unknown): never {
  const kind = got === null ? 'null' : Array.isArray(got) ? 'array' : typeof got;
  const message = got === undefined ? `${path}: missing, expected ${expected}` : `${path}: expected ${expected}, got ${kind}`;
  throw new PoisonError('MSGPIPE_ERR_SHAPE', message, { details: { field: path } });
}

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function object(v: unknown, path: string): Obj {
  if (!isObj(v)) shape(path, 'an object', v);
  return v;
}

/** A non-negative safe integer sent as a number or as decimal text (`"MsgType": "1"`). */
function smallInt(v: unknown, path: string, fallback?: number): number {
  if (v === undefined || v === null) {
    if (fallback === undefined) shape(path, 'an integer', v);
    return fallback;
  }
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v;
  if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return Number(v);
  return shape(path, 'an integer', v);
}

function str(v: unknown, path: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return usv(v);
  return shape(path, 'a string', v);
}

/**
 * An `SKBuiltinString`: `{"string": "…"}`, also `{}` and `null` (empty) and, from wrappers that
 * flatten it, a bare string.
 */
function builtinString(v: unknown, path: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return usv(v);
  if (isObj(v)) return str(v['string'], `${path}.string`);
  return shape(path, 'an object {string}', v);
}

function flag(v: unknown, path: string): 0 | 1 {
  // The seeds disagree: GeWe documents 1/0, the protobuf is a bool. Both are accepted.
  if (v === undefined || v === null || v === false || v === 0 || v === '0') return 0;
  if (v === true || v === 1 || v === '1') return 1;
  return shape(path, 'a boolean or 0/1', v);
}

/**
 * Validates one parsed item (from `parseLossless`, so 16+ digit integers are decimal strings).
 *
 * @throws {PoisonError} `MSGPIPE_ERR_SHAPE` naming the first field of the wrong type.
 */
export function readFinderItem(value: unknown): FinderItem {
  const item = object(value, 'item');
  const content = object(item['content'], 'content');
  const msg = object(content['msg'], 'content.msg');

  const rawNewMsgId = msg['NewMsgId'];
  const newMsgIdDecimal = toDecimal(rawNewMsgId);
  if (newMsgIdDecimal === undefined) shape('content.msg.NewMsgId', 'an integer id', rawNewMsgId);
  const newMsgId = toUint64Decimal(newMsgIdDecimal);
  if (newMsgId === undefined) {
    throw new PoisonError('MSGPIPE_ERR_SHAPE', 'content.msg.NewMsgId: out of the 64-bit range', {
      details: { field: 'content.msg.NewMsgId' },
    });
  }

  const rawMsgId = msg['MsgId'];
  let msgId = '';
  if (rawMsgId !== undefined && rawMsgId !== null) {
    const d = toDecimal(rawMsgId);
    if (d === undefined) shape('content.msg.MsgId', 'an integer', rawMsgId);
    msgId = d;
  }

  const rawSeq = content['seq'];
  let seq = '0';
  if (rawSeq !== undefined && rawSeq !== null) {
    const d = toDecimal(rawSeq);
    const u = d === undefined || d.startsWith('-') ? undefined : toUint64Decimal(d);
    if (u === undefined) shape('content.seq', 'an unsigned integer', rawSeq);
    seq = u;
  }

  const rawExt = content['extinfo'];
  // Wrappers differ (edge case 28): base64 text usually, sometimes a byte array or an object;
  // it is informational, so anything non-text is kept as its JSON text rather than refused,
  // unless it nests too deep to be written out the same way in every thread.
  if (nestsDeeperThan(rawExt, MAX_EMBEDDED_JSON_DEPTH)) {
    throw new PoisonError('MSGPIPE_ERR_SHAPE', `content.extinfo: nested deeper than ${MAX_EMBEDDED_JSON_DEPTH} levels`, {
      details: { field: 'content.extinfo' },
    });
  }
  const extinfo = rawExt === undefined || rawExt === null ? '' : typeof rawExt === 'string' ? usv(rawExt) : JSON.stringify(rawExt);

  const createTime = smallInt(msg['CreateTime'], 'content.msg.CreateTime');
  if (createTime < 0) shape('content.msg.CreateTime', 'a non-negative integer', createTime);
  const msgType = smallInt(msg['MsgType'], 'content.msg.MsgType');

  return {
    syncKeyType: smallInt(item['syncKeyType'], 'syncKeyType', 0),
    itemType: smallInt(item['itemType'], 'itemType', 0),
    subType: smallInt(item['subType'], 'subType', 0),
    msgId,
    newMsgId,
    from: builtinString(msg['FromUserName'], 'content.msg.FromUserName'),
    to: builtinString(msg['ToUserName'], 'content.msg.ToUserName'),
    msgType,
    content: builtinString(msg['Content'], 'content.msg.Content'),
    status: smallInt(msg['Status'], 'content.msg.Status', 0),
    imgStatus: smallInt(msg['ImgStatus'], 'content.msg.ImgStatus', 0),
    createTime,
    msgSource: str(msg['MsgSource'], 'content.msg.MsgSource'),
    msgSeq: smallInt(msg['MsgSeq'], 'content.msg.MsgSeq', 0),
    sessionId: str(content['msgSessionId'], 'content.msgSessionId'),
    seq,
    extinfo,
    isSender: flag(content['isSender'], 'content.isSender'),
  };
}
