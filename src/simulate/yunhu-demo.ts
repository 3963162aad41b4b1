/**
 * The Yunhu account `msgpipe simulate` and `msgpipe demo` run, the msgpipe source that polls it,
 * and live traffic: messages from the chat members, and own messages that are sent, edited and
 * recalled through the API (send-message, edit-message, recall-msg), as a real client would.
 */
import type { Logger } from 'pino';

import { yunhuClient } from './yunhu-client.ts';
import { startYunhuSimulator, type StartYunhuSimulatorOptions, type YunhuSimAccountInput, type YunhuSimulatorHandle } from './yunhu-server.ts';

export const YUNHU_DEMO = { id: 'yunhu-demo', token: 'sim-yunhu-token', userId: '7311890' } as const;

const CHATS = [
  { chatId: '51309476', chatType: 2 },
  { chatId: '7356214', chatType: 1 },
  { chatId: '82041957', chatType: 3 },
] as const;

/**
 * Starts the Yunhu simulator beside the finder simulators `first`, which it closes when it cannot
 * start: a server left listening would keep the process alive after the failure.
 */
export async function startYunhuBeside(first: { close(): Promise<void> }, options: StartYunhuSimulatorOptions): Promise<YunhuSimulatorHandle> {
  try {
    return await startYunhuSimulator(options);
  } catch (err) {
    await first.close();
    throw err;
  }
}

/** The demo account: a group, a friend and a bot, `messages` spread over them. */
export function defaultYunhuAccount(messages = 600): YunhuSimAccountInput {
  return {
    id: YUNHU_DEMO.id,
    token: YUNHU_DEMO.token,
    userId: YUNHU_DEMO.userId,
    name: '阿杰',
    seed: 'yunhu-demo',
    chats: [
      { ...CHATS[0], messages: Math.ceil(messages * 0.6), name: '周末徒步群' },
      { ...CHATS[1], messages: Math.ceil(messages * 0.3) },
      { ...CHATS[2], messages: Math.ceil(messages * 0.1), name: '天气助手' },
    ],
  };
}

/** The msgpipe `sources[]` entry polling the demo account at `baseUrl` (add `tenant`). */
export function yunhuSimulatorSource(baseUrl: string): { type: 'yunhu'; name: string; baseUrl: string; token: string; userId: string } {
  return { type: 'yunhu', name: YUNHU_DEMO.id, baseUrl, token: YUNHU_DEMO.token, userId: YUNHU_DEMO.userId };
}

/**
 * Live traffic on the demo account every `intervalMs`: a member's message, and every third tick
 * an own message sent, one edited and now and then one recalled through the HTTP API.
 * Returns a function that stops it.
 */
export function startYunhuTraffic(sim: YunhuSimulatorHandle, intervalMs: number, log?: Logger): () => void {
  const client = yunhuClient(sim.url, YUNHU_DEMO.token);
  let tick = 0;
  let busy = false;
  const own: { chat: (typeof CHATS)[number]; msgId: string }[] = [];
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    tick++;
    const chat = CHATS[tick % CHATS.length] ?? CHATS[0];
    const step = async (): Promise<void> => {
      sim.postAsPeer(YUNHU_DEMO.id, chat.chatType, chat.chatId);
      if (tick % 3 !== 0) return;
      own.push({ chat, msgId: await client.send(chat, { content: { text: `第 ${tick} 条消息` } }) });
      const editable = own.at(-2);
      if (editable !== undefined) await client.edit(editable.chat, editable.msgId, `第 ${tick} 条消息（已编辑）`);
      if (tick % 9 === 0 && own.length > 3) {
        const victim = own.splice(own.length - 4, 1)[0];
        if (victim !== undefined) await client.recall(victim.chat, victim.msgId);
      }
      if (own.length > 50) own.splice(0, own.length - 50);
    };
    step()
      .catch((err: unknown) => log?.warn({ err }, 'Yunhu demo traffic failed.'))
      .finally(() => {
        busy = false;
      });
  }, intervalMs);
  timer.unref();
  return () => {
    clearInterval(timer);
  };
}
