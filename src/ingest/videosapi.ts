/**
 * Source `videosapi`: VideosApi's WeChat Channels private letters.
 *
 * `POST {baseUrl}/finder/v2/api/finder/syncPrivateLetterMsg`, header `VideosApi-token`, body
 * `{appId, keyBuff}`; the envelope is GeWe's `{ret: 200, msg, data}`
 * (seeds/videosapi-syncPrivateLetterMsg.md).
 */
import type { FinderProvider } from './finder.ts';
import { checkRetEnvelope } from './gewe.ts';

export const videosapiProvider: FinderProvider = {
  type: 'videosapi',
  path: '/finder/v2/api/finder/syncPrivateLetterMsg',
  authHeader: 'VideosApi-token',
  accountField: 'appId',
  statusField: 'ret',
  checkEnvelope: checkRetEnvelope('videosapi'),
};
