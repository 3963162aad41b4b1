/**
 * Configuration of the Yunhu (云湖) source (DESIGN §2, §7): one account token, the chats to
 * poll (or discovery through the conversation list), the per-chat paging and the re-read window
 * that picks up edits and recalls.
 */
import { z } from 'zod';

import { tokenSchema } from './token-config.ts';

const chatSchema = z.strictObject({
  chatId: z.string().min(1).describe('Chat id: the user, group or bot id.'),
  chatType: z
    .union([z.literal(1), z.literal(2), z.literal(3)])
    .describe('1 user, 2 group, 3 bot (session_type external for 1 and 3, group for 2).'),
});

export const yunhuSourceSchema = z.strictObject({
  type: z.literal('yunhu'),
  name: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'use letters, digits, ".", "_" and "-" (at most 64)')
    .describe('Unique source name; cursors, logs and metrics use it.'),
  tenant: z.string().min(1).describe('The tenant (`ext_corp_id`) whose data this source feeds; must be listed in `tenants`.'),
  baseUrl: z.url({ protocol: /^https?$/ }).describe('Yunhu API base URL (https://chat-go.jwzhd.com, or a simulator).'),
  token: tokenSchema('Account token (request header `token`).'),
  userId: z.string().min(1).describe('The account\'s own Yunhu user id (the receiver of messages in 1:1 chats).'),
  staffId: z.string().min(1).optional().describe('The `ext_staff_id` this account stands for (default: userId).'),
  chats: z
    .array(chatSchema)
    .min(1)
    .optional()
    .describe('Chats to poll. Absent: every chat of the conversation list, refreshed while polling.'),
  pollIntervalMs: z
    .number()
    .int()
    .min(50)
    .max(3_600_000)
    .default(1000)
    .describe('Wait after a round in which no chat had new messages; doubles while rounds stay empty, up to 10×.'),
  requestTimeoutMs: z.number().int().min(100).max(300_000).default(30_000).describe('Timeout of one request.'),
  rereadWindow: z
    .number()
    .int()
    .min(0)
    .max(10_000)
    .default(50)
    .describe('Latest messages per chat read again each round to pick up edits and recalls (0: never).'),
  conversationRefreshMs: z
    .number()
    .int()
    .min(1000)
    .default(60_000)
    .describe('How often the conversation list is read again when `chats` is absent.'),
});

export type YunhuSourceConfig = z.infer<typeof yunhuSourceSchema>;
