import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { HOSTILE_KINDS, startSimulator } from '../../../src/simulate/index.ts';
import type { SimulatorHandle } from '../../../src/simulate/index.ts';
import { parsePage, pullAll, splitItems, sync, uniqueKeys } from './client.ts';

describe('simulator hostile items', () => {
  let sim: SimulatorHandle;
  const bodies: Buffer[] = [];

  beforeAll(async () => {
    sim = await startSimulator({
      accounts: [{ provider: 'gewe', id: 'g', token: 't', appId: 'wx_g', messages: 30, seed: 5, duplicateRate: 0 }],
    });
    for (const kind of HOSTILE_KINDS) sim.injectHostile('g', kind);
    // Drain by hand, keeping the raw bytes of every page.
    let kb = '';
    for (let n = 0; n < 50; n++) {
      const res = await sync(sim, 'g', kb);
      bodies.push(res.bytes);
      const page = parsePage(res.text);
      if (page.items.length === 0) break;
      kb = page.keyBuff ?? kb;
    }
  });
  afterAll(async () => {
    await sim.close();
  });

  it('lists injected items as poison, apart from the ground truth', () => {
    const poison = sim.poison('g');
    expect(poison.map((p) => p.kind)).toEqual([...HOSTILE_KINDS]);
    expect(poison.every((p) => p.anchor === 30)).toBe(true);
    const expectedIds = new Set(sim.expected('g').map((e) => e.newMsgId));
    for (const p of poison) expect(expectedIds.has(p.newMsgId)).toBe(false);
  });

  it('delivers each hostile item after the released messages', () => {
    const all = Buffer.concat(bodies);
    const text = all.toString('latin1');
    expect(text).toContain('<!ENTITY lol9');
    expect(all.toString('utf8')).toContain('<!DOCTYPE msg [<!ENTITY xxe SYSTEM \\"file:///etc/passwd\\">]>');
    expect(text).toContain('<a>'.repeat(10_000));
    expect(all.toString('utf8')).toContain('\\ud83d');
    // Raw invalid UTF-8 bytes inside a JSON string.
    expect(all.includes(Buffer.from([0xc3, 0x28, 0x20, 0xff]))).toBe(true);
    const huge = bodies.flatMap((b) => splitItems(b.toString('utf8'))).find((raw) => raw.length > 5 * 1024 * 1024 / 3);
    expect(Buffer.byteLength(huge ?? '', 'utf8')).toBeGreaterThanOrEqual(5 * 1024 * 1024);
    const wrong = bodies.flatMap((b) => splitItems(b.toString('utf8'))).filter((raw) => raw.includes('"NewMsgId":{"$numberLong"'));
    expect(wrong).toHaveLength(1);
    // Every poison item was sent once (well-typed ones carry their id as a number).
    for (const p of sim.poison('g')) {
      const hits = (all.toString('latin1').match(new RegExp(p.newMsgId, 'g')) ?? []).length;
      expect(hits).toBe(1);
    }
  });

  it('keeps the regular messages flowing around the poison', async () => {
    const { items } = await pullAll(sim, 'g');
    const expected = new Set(sim.expected('g').map((e) => `${e.msgSessionId}|${e.newMsgId}`));
    const got = new Set(uniqueKeys(items));
    for (const k of expected) expect(got.has(k)).toBe(true);
  });

  it('injects through the admin API', async () => {
    const res = await fetch(`${sim.url}/_sim/accounts/g/hostile`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'xxe' }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { kind: string }).kind).toBe('xxe');
    expect(sim.poison('g')).toHaveLength(HOSTILE_KINDS.length + 1);
    const bad = await fetch(`${sim.url}/_sim/accounts/g/hostile`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'nope' }),
    });
    expect(bad.status).toBe(400);
  });
});
