/**
 * The msg-server compatible query API (DESIGN §6): what the rest of msgpipe imports.
 */
export { API_PREFIX, buildQueryApp, type QueryService, type QueryServiceOptions, startQueryService } from './app.ts';
export { API_CODES, type ApiCode } from './envelope.ts';
export { canonicalEncoded, canonicalRaw, sign, signUrl, verifySignature } from './signature.ts';
export type { SyncTrigger } from './sync.ts';
