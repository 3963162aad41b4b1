/**
 * The Yunhu simulator's fault dice (src/simulate/yunhu-server.ts): each account draws on its
 * own, seeded from `faultSeed` and its id, so a run with several accounts replays.
 */
import { describe, expect, it } from 'vitest';

import { encodeYunhu } from '../../../src/ingest/yunhu-proto.ts';
import { startYunhuSimulator, type YunhuSimAccountInput } from '../../../src/simulate/yunhu-server.ts';

const ACCOUNT: YunhuSimAccountInput = {
  token: 'tok-yh',
  userId: '7311890',
  chats: [{ chatId: '7356214', chatType: 1, messages: 12 }],
  pageSize: 10,
};

describe('yunhu simulator faults', () => {
  it("draws each account's faults on its own dice: another account's traffic does not change them", async () => {
    const other: YunhuSimAccountInput = { ...ACCOUNT, token: 'tok-other', userId: '9900001' };
    const outcomes = async (interleave: boolean): Promise<string[]> => {
      const sim = await startYunhuSimulator({ accounts: [ACCOUNT, other], faults: { errorRate: 0.3, errorStatusRate: 0.3 }, faultSeed: 5 });
      try {
        const list = (token: string): Promise<Response> =>
          fetch(`${sim.url}/v1/msg/list-message-by-seq`, {
            method: 'POST',
            headers: { 'content-type': 'application/x-protobuf', token },
            body: encodeYunhu('ListMessageBySeqRequest', { msg_start: '0', chat_type: 1, chat_id: '7356214' }),
          });
        for (let n = 0; n < 30; n++) {
          await (await list('tok-yh')).arrayBuffer();
          if (interleave && n % 3 === 0) await (await list('tok-other')).arrayBuffer();
        }
        if (interleave) expect(sim.received('9900001')).toHaveLength(10);
        return sim.received('7311890').map((r) => r.outcome);
      } finally {
        await sim.close();
      }
    };
    const alone = await outcomes(false);
    // Both kinds of fault and plain pages: the dice really decided.
    expect(new Set(alone)).toEqual(new Set(['error', 'error_status', 'page']));
    expect(await outcomes(true)).toEqual(alone);
  });
});
