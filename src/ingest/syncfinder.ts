/**
 * Source `syncfinder`: the wkteam-style provider's `/syncFinder`.
 *
 * `POST {baseUrl}/syncFinder`, header `Authorization` (the value its login returned), body
 * `{wId, keyBuff}`; success is `code == "1000"`, failure `{"code":"1001","message":"失败"}`
 * (seeds/syncfinder.md). The message key is `message` or `msg` depending on the endpoint.
 */
import { type FinderProvider, providerError } from './finder.ts';

export const syncfinderProvider: FinderProvider = {
  type: 'syncfinder',
  path: '/syncFinder',
  authHeader: 'Authorization',
  accountField: 'wId',
  statusField: 'code',
  checkEnvelope: (envelope) => {
    const code = envelope['code'];
    if (code === '1000' || code === 1000) return;
    const message = [envelope['message'], envelope['msg']].filter((m) => typeof m === 'string').join(' / ');
    throw providerError('syncfinder', String(code), message);
  },
};
