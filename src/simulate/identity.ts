/**
 * Who talks in a simulated account: its own identities and its letter sessions.
 *
 * Shapes follow the seeds and the formats reference (A3 "Username and ID shapes"):
 *
 *   finder identity   v2_060000231003b20faec8c6e18f10c7d6c903ec3db0776955d3d97c6b329d6aa58693bcdb7ad1@finder
 *   session           ee06e16a186756394a271218d7dd31f65d3d6aa43dc02a1ec23758f588836d53@findermsg
 *   stranger peer     fv1_cb68e6952228400339575a83b40f5a12cdfae818b3164eb999b609e90e139d0a@findermsgstranger
 *                     (its session is cb68e695…@findermsg: the same 64 hex, as in the syncFinder seed)
 *   WeChat user       wxid_0xsqb3o0tsvz22
 *
 * A session is "ours as a finder" (me = the finder identity, peer = a user or a stranger) or
 * "ours as a WeChat user writing to a finder" (me = the account's wxid, peer = another
 * `v2_…@finder`), which is what the GeWe seed shows with `wxid_… → v2_…@finder`.
 */

import { Rng } from './random.ts';

/** How the peer of a session is named. */
export type PeerKind = 'wxid' | 'stranger' | 'finder' | 'session';

/** One letter conversation of an account. Fixed for the life of the account. */
export interface SimSession {
  /** `<64 hex>@findermsg` */
  readonly id: string;
  /** The account's own username in this session. */
  readonly me: string;
  /** The other side's username. */
  readonly peer: string;
  readonly peerKind: PeerKind;
  /** Display name of the peer (used in quotes, revokes, cards). */
  readonly peerName: string;
  /** Business channel of the session's items: 1 or 5 (BYP_MSG_FINDER_KEY / BYP_MSG_NEW_FINDER_KEY). */
  readonly syncKeyType: 1 | 5;
  readonly subType: number;
  /** Session-info protobuf, base64 (may be empty, as real ones sometimes are). */
  readonly extinfo: string;
  /** JSON-quoted forms, precomputed because every item of the session writes them. */
  readonly jsonId: string;
  readonly jsonMe: string;
  readonly jsonPeer: string;
}

/** The identities of one account. */
export interface AccountIdentity {
  /** The account's finder (视频号) username, `v2_…@finder`. */
  readonly finder: string;
  /** The WeChat user logged in at the provider, `wxid_…`. */
  readonly wxid: string;
  readonly finderName: string;
  readonly sessions: readonly SimSession[];
}

const FINDER_PREFIX = '060000231003b20faec8c';
const WXID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

const NICKNAMES = [
  '小林', '陈一一', '阿杰', '王小美', '张三丰', '李雷', '韩梅梅', '大橙子', '夏天的风', '🌙月亮',
  'Lucy', '老周', '小鹿乱撞', '木子', '静静', '一只猫🐱', 'Tony老师', '赵云', '孙悟空', '晴天',
] as const;

const SHOP_NAMES = ['某某旗舰店', '小林的日常', '好物分享官', '山野露营', '每日穿搭', '深夜食堂'] as const;

const EXTINFOS = ['CAEQAQ==', 'CAIQAw==', 'CAE=', ''] as const;

/** A `v2_…@finder` username with the real 76-hex body. */
export function finderUsername(rng: Rng): string {
  return `v2_${FINDER_PREFIX}${rng.hex(76 - FINDER_PREFIX.length)}@finder`;
}

/** A `wxid_…` username, 14 characters after the prefix like `wxid_0xsqb3o0tsvz22`. */
export function wxidUsername(rng: Rng): string {
  let out = 'wxid_';
  for (let i = 0; i < 14; i++) out += WXID_ALPHABET.charAt(rng.int(WXID_ALPHABET.length));
  return out;
}

/** Builds the identities and `count` sessions of an account from its seed. */
export function buildIdentity(seed: number, count: number): AccountIdentity {
  const rng = new Rng(seed ^ 0x1d3f5a7b);
  const finder = finderUsername(rng);
  const wxid = wxidUsername(rng);
  const finderName = rng.pick(SHOP_NAMES);
  const sessions: SimSession[] = [];
  for (let s = 0; s < count; s++) {
    const hex = rng.hex(64);
    const roll = rng.float();
    let peerKind: PeerKind;
    let me = finder;
    let peer: string;
    if (roll < 0.35) {
      peerKind = 'wxid';
      peer = wxidUsername(rng);
    } else if (roll < 0.65) {
      peerKind = 'stranger';
      peer = `fv1_${hex}@findermsgstranger`;
    } else if (roll < 0.85) {
      // We (the logged-in WeChat user) write to another finder account.
      peerKind = 'finder';
      me = wxid;
      peer = finderUsername(rng);
    } else {
      // The reference's A9 sample names the peer by the session id itself.
      peerKind = 'session';
      peer = `${hex}@findermsg`;
    }
    const id = `${hex}@findermsg`;
    sessions.push({
      id,
      me,
      peer,
      peerKind,
      peerName: peerKind === 'finder' ? rng.pick(SHOP_NAMES) : rng.pick(NICKNAMES),
      syncKeyType: rng.chance(0.5) ? 1 : 5,
      subType: rng.chance(0.7) ? 0 : 2,
      extinfo: rng.pick(EXTINFOS),
      jsonId: JSON.stringify(id),
      jsonMe: JSON.stringify(me),
      jsonPeer: JSON.stringify(peer),
    });
  }
  return { finder, wxid, finderName, sessions };
}
