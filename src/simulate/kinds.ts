/**
 * The vocabulary of simulated message kinds and what each one is on the wire and downstream.
 *
 * A kind is finer than DESIGN §6's `msg_type`: it names what the simulator generated (a file
 * placeholder and the file that replaces it are two kinds), and carries the wire codes (MsgType,
 * appmsg `<type>`, sysmsg `type`) plus where msgpipe should put it (`messages`, `events`, or
 * nowhere), so tests can compare ClickHouse with the ground truth without re-deriving it.
 */

import type { MsgType } from '../core/types.ts';

export const SIM_KINDS = [
  'text',
  'image',
  'voice',
  'video',
  'emoji',
  'location',
  'card',
  'link',
  'file_placeholder',
  'file',
  'chatrecord',
  'weapp',
  'finder_feed',
  'finder_live',
  'quote',
  'transfer',
  'redpacket',
  'revoke',
  'pat',
  'system',
  'functionmsg',
  'finderliveclose',
  'statusnotify',
  'unknown_msgtype',
  'unknown_appmsg',
] as const;
export type SimKind = (typeof SIM_KINDS)[number];

/** Where msgpipe is expected to store an item of the kind (DESIGN §3). */
export type Destination = 'messages' | 'events' | 'none';

export interface KindInfo {
  /** Top-level `MsgType`. */
  readonly msgType: number;
  /** appmsg `<type>` for MsgType 49, else 0. */
  readonly appType: number;
  /** sysmsg `type` attribute for MsgType 10002, else ''. */
  readonly sysType: string;
  readonly destination: Destination;
  /** DESIGN §6 `msg_type` of the row, for kinds stored in `messages`. */
  readonly designType: MsgType | undefined;
  /** The `event_type` for kinds stored in `events`. */
  readonly eventType: string | undefined;
}

function msg(msgType: number, appType: number, sysType: string, designType: MsgType): KindInfo {
  return { msgType, appType, sysType, destination: 'messages', designType, eventType: undefined };
}

function event(msgType: number, sysType: string, eventType: string): KindInfo {
  return { msgType, appType: 0, sysType, destination: 'events', designType: undefined, eventType };
}

export const KIND_INFO: Readonly<Record<SimKind, KindInfo>> = {
  text: msg(1, 0, '', 'text'),
  image: msg(3, 0, '', 'image'),
  voice: msg(34, 0, '', 'voice'),
  video: msg(43, 0, '', 'video'),
  emoji: msg(47, 0, '', 'emotion'),
  location: msg(48, 0, '', 'location'),
  card: msg(42, 0, '', 'card'),
  link: msg(49, 5, '', 'link'),
  // The upload-in-progress placeholder yields no message row (the type-6 file that follows
  // replaces it), but a `file_upload` event (src/transform/appmsg/file.ts).
  file_placeholder: { msgType: 49, appType: 74, sysType: '', destination: 'events', designType: undefined, eventType: 'file_upload' },
  file: msg(49, 6, '', 'file'),
  chatrecord: msg(49, 19, '', 'chatrecord'),
  weapp: msg(49, 33, '', 'weapp'),
  finder_feed: msg(49, 51, '', 'finder_feed'),
  finder_live: msg(49, 63, '', 'finder_live'),
  quote: msg(49, 57, '', 'quote'),
  transfer: msg(49, 2000, '', 'transfer'),
  redpacket: msg(49, 2001, '', 'redpacket'),
  revoke: msg(10002, 0, 'revokemsg', 'revoke'),
  pat: msg(10002, 0, 'pat', 'pat'),
  system: msg(10000, 0, '', 'system'),
  functionmsg: event(10002, 'functionmsg', 'functionmsg'),
  finderliveclose: event(10002, 'finderliveclosenotifymsg', 'finderliveclosenotifymsg'),
  statusnotify: event(51, '', 'statusnotify'),
  unknown_msgtype: msg(9999, 0, '', 'unknown'),
  unknown_appmsg: msg(49, 999, '', 'unknown'),
};

/**
 * The default mix, in percent. Roughly 70 % text, 15 % image, 10 % appmsg and sysmsg, 5 % the
 * rest, which is what a shop's letter inbox looks like: mostly questions, screenshots, and feed
 * shares.
 */
export const DEFAULT_MIX: Readonly<Record<SimKind, number>> = {
  text: 70,
  image: 15,
  // appmsg and sysmsg: 10
  link: 1.5,
  file_placeholder: 1.0,
  file: 0,
  chatrecord: 0.5,
  weapp: 0.7,
  finder_feed: 2.5,
  finder_live: 0.7,
  quote: 1.2,
  transfer: 0.3,
  redpacket: 0.3,
  revoke: 0.6,
  pat: 0.4,
  functionmsg: 0.2,
  finderliveclose: 0.1,
  // the rest: 5
  voice: 1.3,
  video: 1.0,
  emoji: 1.2,
  location: 0.3,
  card: 0.3,
  system: 0.4,
  statusnotify: 0.1,
  unknown_msgtype: 0.05,
  unknown_appmsg: 0.05,
};
