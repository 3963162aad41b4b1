import { describe, expect, it } from 'vitest';

import { ConfigError } from '../../../src/core/errors.ts';
import {
  DEFAULT_MIX,
  defaultSimulatorAccounts,
  MessageStream,
  parseSimulatorOptions,
  SIM_KINDS,
  simulatorSources,
  startSimulator,
} from '../../../src/simulate/index.ts';
import type { SimulatorAccountInput } from '../../../src/simulate/index.ts';
import { parsePage, pullAll, sync } from './client.ts';

const config = {
  provider: 'gewe' as const,
  seed: 99,
  messages: 5000,
  sessions: 30,
  startTime: 1_730_419_200,
  secondsPerMessage: 20,
  mix: DEFAULT_MIX,
};

describe('message stream', () => {
  it('is random-access: message i is the same whether built alone or in sequence', () => {
    const a = new MessageStream(config);
    const b = new MessageStream(config);
    const sequential = Array.from({ length: 400 }, (_, i) => a.messageAt(i));
    for (const i of [399, 7, 250, 0, 33, 5]) expect(b.messageAt(i)).toEqual(sequential[i]);
  });

  it('keeps NewMsgIds unique and within int64', () => {
    const s = new MessageStream(config);
    const ids = s.expected().map((e) => e.newMsgId);
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(BigInt(id) <= 9_223_372_036_854_775_807n && BigInt(id) > 0n).toBe(true);
    // Pseudo ids (MsgId == NewMsgId == CreateTime) exist, on revokes and server instructions only.
    const pseudo = s.expected().filter((e) => e.newMsgId === String(e.createTime));
    expect(pseudo.length).toBeGreaterThan(0);
    for (const p of pseudo) expect(['revoke', 'functionmsg', 'finderliveclose']).toContain(p.kind);
  });

  it('follows the configured mix roughly', () => {
    const s = new MessageStream(config);
    const kinds = s.expected().map((e) => e.kind);
    const share = (k: string): number => kinds.filter((x) => x === k).length / kinds.length;
    expect(share('text')).toBeGreaterThan(0.62);
    expect(share('text')).toBeLessThan(0.78);
    expect(share('image')).toBeGreaterThan(0.11);
    expect(share('image')).toBeLessThan(0.19);
    const onlyText = new MessageStream({ ...config, mix: { ...DEFAULT_MIX, ...Object.fromEntries(SIM_KINDS.map((k) => [k, 0])), text: 1 } });
    expect(onlyText.expected(500).slice(40).every((e) => e.kind === 'text')).toBe(true);
  });

  it('writes text with astral emoji and @mentions followed by U+2005', () => {
    const s = new MessageStream(config);
    const texts = s.expected(200).filter((e) => e.kind === 'text');
    expect(texts.some((e) => /\p{Extended_Pictographic}/u.test(e.text) && /[\u{10000}-\u{10FFFF}]/u.test(e.text))).toBe(true);
    expect(texts.some((e) => /^@[^\u2005]+\u2005/.test(e.text))).toBe(true);
  });
});

describe('simulator determinism and release', () => {
  const accounts: SimulatorAccountInput[] = [
    { provider: 'syncfinder', id: 'a', token: 't', wId: 'w', messages: 80, seed: 'same', duplicateRate: 0.1 },
  ];

  async function pageBytes(seed: string): Promise<string[]> {
    const sim = await startSimulator({ accounts: accounts.map((a) => ({ ...a, seed })) });
    try {
      const bodies: string[] = [];
      let kb = '';
      for (let n = 0; n < 8; n++) {
        const res = await sync(sim, 'a', kb);
        bodies.push(res.text);
        kb = parsePage(res.text).keyBuff ?? kb;
      }
      return bodies;
    } finally {
      await sim.close();
    }
  }

  it('gives the same bytes for the same seed and different bytes for another', async () => {
    const one = await pageBytes('same');
    const two = await pageBytes('same');
    const other = await pageBytes('other');
    expect(two).toEqual(one);
    expect(other[0]).not.toEqual(one[0]);
  });

  it('releases messages over time, and on demand', async () => {
    const sim = await startSimulator({
      accounts: [{ provider: 'gewe', id: 'live', token: 't', appId: 'wx_l', messages: 100, ratePerSec: 0.001, backlog: 5 }],
    });
    try {
      expect(sim.expected('live')).toHaveLength(5);
      expect((await pullAll(sim, 'live')).items).toHaveLength(5);
      expect(sim.releaseMessages('live', 10)).toBe(15);
      const last = sim.received('live').at(-1)?.keyBuff ?? '';
      const page = parsePage((await sync(sim, 'live', last)).text);
      expect(page.items).toHaveLength(10);
      expect(page.items.map((i) => i.newMsgId)).toEqual(sim.expected('live').slice(5).map((e) => e.newMsgId));
    } finally {
      await sim.close();
    }
  });
});

describe('simulator options', () => {
  it('lists every problem at once', () => {
    try {
      parseSimulatorOptions({ port: -1, accounts: [{ provider: 'gewe', token: '', appId: 'x', pageSize: 0 }] });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.length).toBeGreaterThanOrEqual(3);
    }
  });

  it('refuses two accounts with the same id or login', () => {
    expect(() =>
      parseSimulatorOptions({
        accounts: [
          { provider: 'gewe', token: 'a', appId: 'wx_1' },
          { provider: 'gewe', id: 'other', token: 'b', appId: 'wx_1' },
        ],
      }),
    ).toThrow(/share the login/);
  });

  it('offers a default account per provider and matching msgpipe sources', () => {
    const accounts = defaultSimulatorAccounts();
    expect(accounts.map((a) => a.provider)).toEqual(['gewe', 'videosapi', 'syncfinder']);
    const sources = simulatorSources(accounts, 'http://127.0.0.1:8801');
    expect(sources[2]).toMatchObject({ type: 'syncfinder', name: 'syncfinder-demo', baseUrl: 'http://127.0.0.1:8801' });
    expect(sources[2]?.wId).toBeDefined();
    expect(sources[0]?.appId).toBe('wx_sim_gewe_0001');
    expect(() => parseSimulatorOptions({ accounts })).not.toThrow();
  });
});
