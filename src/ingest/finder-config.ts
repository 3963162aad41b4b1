/**
 * Configuration of the WeChat Channels private-letter sources (gewe, videosapi, syncfinder).
 *
 * The three providers wrap the same WeChat call and differ only in path, auth header and the
 * account field (`appId` or `wId`), so they share one schema shape (DESIGN §7).
 */
import { z } from 'zod';

import { tokenSchema } from './token-config.ts';

const common = {
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'use letters, digits, ".", "_" and "-" (at most 64)')
    .describe('Unique source name; cursors, logs and metrics use it.'),
  tenant: z.string().min(1).describe('The tenant (`ext_corp_id`) whose data this source feeds; must be listed in `tenants`.'),
  baseUrl: z.url({ protocol: /^https?$/ }).describe('Provider API base URL, e.g. http://127.0.0.1:8801.'),
  token: tokenSchema('Provider API token.'),
  staffId: z.string().min(1).optional().describe('The `ext_staff_id` this account stands for (default: appId or wId).'),
  pollIntervalMs: z
    .number()
    .int()
    .min(50)
    .max(3_600_000)
    .default(1000)
    .describe('Wait after an empty page; doubles while pages stay empty, up to 10×.'),
  requestTimeoutMs: z.number().int().min(100).max(300_000).default(30_000).describe('Timeout of one provider request.'),
};

export const geweSourceSchema = z.strictObject({
  type: z.literal('gewe'),
  ...common,
  appId: z.string().min(1).describe('GeWe device id (`appId`).'),
});

export const videosapiSourceSchema = z.strictObject({
  type: z.literal('videosapi'),
  ...common,
  appId: z.string().min(1).describe('VideosApi device id (`appId`).'),
});

export const syncfinderSourceSchema = z.strictObject({
  type: z.literal('syncfinder'),
  ...common,
  wId: z.string().min(1).describe('Login instance id (`wId`).'),
});

export type GeweSourceConfig = z.infer<typeof geweSourceSchema>;
export type VideosapiSourceConfig = z.infer<typeof videosapiSourceSchema>;
export type SyncfinderSourceConfig = z.infer<typeof syncfinderSourceSchema>;
export type FinderSourceConfig = GeweSourceConfig | VideosapiSourceConfig | SyncfinderSourceConfig;

/** The account id a finder source polls: `appId` or `wId`. */
export function finderAccount(config: FinderSourceConfig): string {
  return config.type === 'syncfinder' ? config.wId : config.appId;
}
