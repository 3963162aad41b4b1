/** Builders shared by the transform tests: items as the exact text a provider sends. */
import type { Origin, RawRecord } from '../../../src/core/types.ts';

export const ORIGIN: Origin = { source: 'shop-a', sourceType: 'gewe', tenant: 'corp123', staffId: 'staff-a' };
export const NOW = 1_767_225_600_000;
export const ME = 'v2_060000231003b20faec8c6e18b1dc1d7cb02e633b077c5f02a8e0b4d6f1a39c72e5b8d40@finder';
export const PEER = 'fv1_cb68e6952228400339575a83b40f5a12cdfae818b3164eb999b609e90e139d0a@findermsgstranger';
export const SESSION = '8c1e5b0a4f7d2e9b6a3c0f1d8e5b2a7c4f9d6e3b0a5c2f8d1e7b4a9c6f3d0e5b@findermsg';

export interface ItemFields {
  /** Written bare, exactly as given (so `'3876235366388279544'` is a bare 19-digit number). */
  newMsgId?: string;
  msgId?: string;
  msgType?: number;
  content?: string;
  createTime?: number;
  from?: string;
  to?: string;
  session?: string;
  /** Written bare. */
  seq?: string;
  isSender?: string;
  msgSource?: string;
}

/** One item's JSON text; numbers are spliced in bare, as providers send them. */
export function itemText(f: ItemFields = {}): string {
  return (
    `{"syncKeyType":1,"itemType":1,"subType":0,"content":{"msg":{"MsgId":${f.msgId ?? '1048377195'},` +
    `"FromUserName":{"string":${JSON.stringify(f.from ?? PEER)}},"ToUserName":{"string":${JSON.stringify(f.to ?? ME)}},` +
    `"MsgType":${f.msgType ?? 1},"Content":{"string":${JSON.stringify(f.content ?? '你好')}},"Status":3,"ImgStatus":1,` +
    `"ImgBuf":{"iLen":0},"CreateTime":${f.createTime ?? 1731059312},"MsgSource":${JSON.stringify(f.msgSource ?? '')},` +
    `"NewMsgId":${f.newMsgId ?? '8412057736190466213'},"MsgSeq":0},"msgSessionId":${JSON.stringify(f.session ?? SESSION)},` +
    `"seq":${f.seq ?? '57'},"extinfo":"CAE=","isSender":${f.isSender ?? 'false'}}}`
  );
}

export function record(bytes: Uint8Array | string, index = 0): RawRecord {
  return {
    origin: ORIGIN,
    bytes: typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes,
    fetchedAt: NOW - 1000,
    cursor: 'CgwIARCB',
    index,
  };
}
