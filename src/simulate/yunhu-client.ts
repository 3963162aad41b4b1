/**
 * A small Yunhu client for the write endpoints (send-message, edit-message, recall-msg,
 * recall-msg-batch): what tests and the demo use to change messages the way the real API does,
 * over HTTP with protobuf bodies.
 */
import { randomBytes } from 'node:crypto';

import { postBytes } from '../ingest/http.ts';
import { YUNHU_OK, YUNHU_PATHS } from '../ingest/yunhu.ts';
import { encodeYunhu, readStatusResponse } from '../ingest/yunhu-proto.ts';

export interface YunhuChatRef {
  readonly chatId: string;
  readonly chatType: number;
}

export interface YunhuClient {
  /** Sends a message; returns its (client-made) msg_id. */
  send(chat: YunhuChatRef, message: { contentType?: number; content: Readonly<Record<string, unknown>>; quoteMsgId?: string; msgId?: string }): Promise<string>;
  /** Edits a message to the given text (content type 1 text, 3 markdown, 8 html). */
  edit(chat: YunhuChatRef, msgId: string, text: string, contentType?: number): Promise<void>;
  recall(chat: YunhuChatRef, msgId: string): Promise<void>;
  recallBatch(chat: YunhuChatRef, msgIds: readonly string[]): Promise<void>;
}

/** Thrown when the server answers with a status other than success. */
export class YunhuStatusError extends Error {
  readonly code: number;

  constructor(code: number, message: string) {
    super(`Yunhu answered status ${code}: ${message}`);
    this.name = 'YunhuStatusError';
    this.code = code;
  }
}

/** A client of the Yunhu API at `baseUrl` acting with `token`. */
export function yunhuClient(baseUrl: string, token: string, timeoutMs = 10_000): YunhuClient {
  const base = baseUrl.replace(/\/+$/, '');
  const call = async (path: string, body: Uint8Array): Promise<void> => {
    const res = await postBytes(`${base}${path}`, { 'content-type': 'application/x-protobuf', token }, body, { timeoutMs });
    const status = readStatusResponse(res.body);
    if (status?.code !== YUNHU_OK) throw new YunhuStatusError(status?.code ?? 0, status?.msg ?? 'no status');
  };
  return {
    send: async (chat, message) => {
      const msgId = message.msgId ?? randomBytes(16).toString('hex');
      await call(
        YUNHU_PATHS.sendMessage,
        encodeYunhu('SendMessageRequest', {
          msg_id: msgId,
          chat_id: chat.chatId,
          chat_type: chat.chatType,
          data: message.content,
          content_type: message.contentType ?? 1,
          quote_msg_id: message.quoteMsgId ?? '',
        }),
      );
      return msgId;
    },
    edit: (chat, msgId, text, contentType = 1) =>
      call(
        YUNHU_PATHS.editMessage,
        encodeYunhu('SendMessageRequest', { msg_id: msgId, chat_id: chat.chatId, chat_type: chat.chatType, data: { text }, content_type: contentType }),
      ),
    recall: (chat, msgId) => call(YUNHU_PATHS.recallMsg, encodeYunhu('RecallMsgRequest', { msg_id: [msgId], chat_id: chat.chatId, chat_type: chat.chatType })),
    recallBatch: (chat, msgIds) =>
      call(YUNHU_PATHS.recallMsgBatch, encodeYunhu('RecallMsgRequest', { msg_id: [...msgIds], chat_id: chat.chatId, chat_type: chat.chatType })),
  };
}
