/**
 * Source `gewe`: GeWe's WeChat Channels private letters.
 *
 * `POST {baseUrl}/gewe/v2/api/finder/syncPrivateLetterMsg`, header `X-GEWE-TOKEN`, body
 * `{appId, keyBuff}`; success is `ret == 200` (seeds/gewe-syncPrivateLetterMsg.openapi.md).
 * Errors come as HTTP 200 with `ret: 500` and a Chinese `msg`, e.g. `不可用或已过期` for a dead
 * token, sometimes with a nested `data: {code, msg}` holding the detail.
 */
import { type FinderProvider, providerError } from './finder.ts';

/** Checks `{ret, msg}` envelopes used by GeWe and VideosApi. */
export function checkRetEnvelope(provider: string) {
  return (envelope: Readonly<Record<string, unknown>>): void => {
    const ret = envelope['ret'];
    if (ret === 200 || ret === '200') return;
    const data = envelope['data'];
    const nested = data !== null && typeof data === 'object' ? (data as Record<string, unknown>)['msg'] : undefined;
    const message = [envelope['msg'], nested].filter((m) => typeof m === 'string').join(' / ');
    throw providerError(provider, String(ret), message);
  };
}

export const geweProvider: FinderProvider = {
  type: 'gewe',
  path: '/gewe/v2/api/finder/syncPrivateLetterMsg',
  authHeader: 'X-GEWE-TOKEN',
  accountField: 'appId',
  statusField: 'ret',
  checkEnvelope: checkRetEnvelope('gewe'),
};
