import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { PROVIDER_TEXTS, startSimulator } from '../../../src/simulate/index.ts';
import type { SimulatorHandle } from '../../../src/simulate/index.ts';
import { parsePage, pullAll, splitItems, sync, uniqueKeys } from './client.ts';

function expectedKeys(sim: SimulatorHandle, id: string): Set<string> {
  return new Set(sim.expected(id).map((e) => `${e.msgSessionId}|${e.newMsgId}`));
}

describe('simulator faults', () => {
  let sim: SimulatorHandle;

  beforeEach(async () => {
    sim = await startSimulator({
      faultSeed: 7,
      accounts: [
        { provider: 'gewe', id: 'g', token: 'tok-g', appId: 'wx_g', messages: 200, seed: 11 },
        { provider: 'syncfinder', id: 's', token: 'tok-s', wId: 'w-s', messages: 60, seed: 12 },
      ],
    });
  });
  afterEach(async () => {
    await sim.close();
  });

  it('errorRate fails requests transiently without moving the cursor', async () => {
    const first = parsePage((await sync(sim, 'g', '')).text);
    sim.setFaults('g', { errorRate: 1 });
    const kinds = new Set<string>();
    for (let n = 0; n < 12; n++) {
      const res = await sync(sim, 'g', first.keyBuff);
      if (res.status === 200) {
        expect(parsePage(res.text).envelope['ret']).toBe(500);
        kinds.add('envelope');
      } else {
        expect(res.status).toBeGreaterThanOrEqual(500);
        kinds.add('http');
      }
    }
    expect(kinds).toEqual(new Set(['envelope', 'http']));
    expect(sim.received('g').slice(1).every((r) => r.outcome === 'error')).toBe(true);
    sim.clearFaults('g');
    const retried = parsePage((await sync(sim, 'g', first.keyBuff)).text);
    const second = parsePage((await sync(sim, 'g', first.keyBuff)).text);
    expect(retried.items.map((i) => i.newMsgId)).toEqual(second.items.map((i) => i.newMsgId));
    expect(retried.items[0]?.newMsgId).not.toBe(first.items[0]?.newMsgId);
  });

  it('rateLimitRate answers 429 with Retry-After', async () => {
    sim.setFaults('*', { rateLimitRate: 1, retryAfterSec: 3 });
    const res = await sync(sim, 's', '');
    expect(res.status).toBe(429);
    expect(res.headers['retry-after']).toBe('3');
    expect(sim.received('s').at(-1)?.outcome).toBe('rate_limited');
  });

  it('latencyMs delays answers', async () => {
    sim.setFaults('g', { latencyMs: 150, latencyJitterMs: 50 });
    const t0 = performance.now();
    await sync(sim, 'g', '');
    expect(performance.now() - t0).toBeGreaterThanOrEqual(145);
  });

  it('malformedRate sends bodies that are not JSON', async () => {
    sim.setFaults('g', { malformedRate: 1 });
    for (let n = 0; n < 6; n++) {
      const res = await sync(sim, 'g', '');
      expect(res.status).toBe(200);
      expect(() => JSON.parse(res.text) as unknown).toThrow();
    }
  });

  it('wrongTypesRate sends one wrongly typed item and does not advance the keyBuff', async () => {
    const first = parsePage((await sync(sim, 'g', '')).text);
    sim.setFaults('g', { wrongTypesRate: 1 });
    const res = await sync(sim, 'g', first.keyBuff);
    const page = parsePage(res.text);
    expect(page.ok).toBe(true);
    expect(page.keyBuff).toBe(first.keyBuff);
    const bad = splitItems(res.text).filter((raw) => raw.includes('"NewMsgId":{'));
    expect(bad).toHaveLength(1);
    expect(bad[0]).toMatch(/"Content":\{"string":\d+\}/);
  });

  it('a retrying client still gets every message through every fault', async () => {
    sim.setFaults('*', {
      errorRate: 0.2,
      rateLimitRate: 0.1,
      retryAfterSec: 0,
      malformedRate: 0.1,
      wrongTypesRate: 0.15,
    });
    const { items, failures } = await pullAll(sim, 'g');
    expect(failures).toBeGreaterThan(5);
    expect(new Set(uniqueKeys(items))).toEqual(expectedKeys(sim, 'g'));
    const outcomes = new Set(sim.received('g').map((r) => r.outcome));
    for (const o of ['error', 'rate_limited', 'malformed', 'wrong_types', 'page']) expect(outcomes).toContain(o);
  });

  it('tokenExpiresAfter refuses the token with the provider auth error until renewed', async () => {
    sim.setFaults('g', { tokenExpiresAfter: 2 });
    let kb = '';
    for (let n = 0; n < 2; n++) kb = parsePage((await sync(sim, 'g', kb)).text).keyBuff ?? '';
    const refused = await sync(sim, 'g', kb);
    expect(refused.status).toBe(200);
    expect(JSON.parse(refused.text)).toEqual({ ret: 500, msg: PROVIDER_TEXTS.gewe.invalidToken, data: null });
    expect(PROVIDER_TEXTS.gewe.invalidToken).toContain('不可用或已过期');
    expect(sim.received('g').at(-1)?.outcome).toBe('auth_refused');
    sim.renewToken('g');
    expect(parsePage((await sync(sim, 'g', kb)).text).ok).toBe(true);

    sim.setFaults('s', { tokenExpiresAfter: 0 });
    expect(JSON.parse((await sync(sim, 's', '')).text)).toEqual({
      code: '1001',
      message: PROVIDER_TEXTS.syncfinder.invalidToken,
      data: null,
    });
  });

  it('answers a missing or wrong token with the provider auth envelope', async () => {
    expect(JSON.parse((await sync(sim, 'g', '', { token: null })).text)).toEqual({
      ret: 500,
      msg: 'header:X-GEWE-TOKEN 不可为空',
      data: null,
    });
    expect(parsePage((await sync(sim, 'g', '', { token: 'nope' })).text).envelope['msg']).toBe(PROVIDER_TEXTS.gewe.invalidToken);
    sim.renewToken('g', 'fresh');
    expect(sim.accounts().find((a) => a.id === 'g')?.token).toBe('fresh');
    expect(parsePage((await sync(sim, 'g', '')).text).ok).toBe(true);
  });

  it('keyBuff reset restarts old cursors from the beginning, then delivers everything again', async () => {
    const first = parsePage((await sync(sim, 's', '')).text);
    const second = parsePage((await sync(sim, 's', first.keyBuff)).text);
    sim.resetKeyBuff('s');
    const restarted = parsePage((await sync(sim, 's', second.keyBuff)).text);
    expect(sim.received('s').at(-1)?.restarted).toBe(true);
    expect(restarted.items.map((i) => i.newMsgId)).toEqual(first.items.map((i) => i.newMsgId));
    expect(restarted.keyBuff).not.toBe(first.keyBuff); // a new epoch
    const { items } = await pullAll(sim, 's');
    expect(new Set(uniqueKeys(items))).toEqual(expectedKeys(sim, 's'));
  });

  it('refuseStaleKeyBuff refuses a keyBuff from before a reset; "" starts a new epoch', async () => {
    sim.setFaults('s', { refuseStaleKeyBuff: true });
    const first = parsePage((await sync(sim, 's', '')).text);
    // Before a reset the knob changes nothing.
    expect(parsePage((await sync(sim, 's', first.keyBuff)).text).ok).toBe(true);
    sim.resetKeyBuff('s');
    const refused = parsePage((await sync(sim, 's', first.keyBuff)).text);
    expect(refused.ok).toBe(false);
    expect(refused.envelope['message']).toBe('keyBuff 参数错误');
    expect(sim.received('s').at(-1)?.outcome).toBe('bad_keybuff');
    const fresh = parsePage((await sync(sim, 's', '')).text);
    expect(fresh.items.map((i) => i.newMsgId)).toEqual(first.items.map((i) => i.newMsgId));
    expect(parsePage((await sync(sim, 's', fresh.keyBuff)).text).ok).toBe(true);
  });

  it('changes faults and drives accounts through the admin API', async () => {
    const put = await fetch(`${sim.url}/_sim/accounts/g/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ rateLimitRate: 1 }),
    });
    expect(put.status).toBe(200);
    expect(sim.faults('g').rateLimitRate).toBe(1);
    expect((await sync(sim, 'g', '')).status).toBe(429);
    await fetch(`${sim.url}/_sim/accounts/g/faults`, { method: 'DELETE' });
    expect((await sync(sim, 'g', '')).status).toBe(200);

    const bad = await fetch(`${sim.url}/_sim/faults`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ errorRate: 2 }),
    });
    expect(bad.status).toBe(400);
    expect((await fetch(`${sim.url}/_sim/accounts/nope/requests`)).status).toBe(404);

    sim.setFaults('g', { tokenExpiresAfter: 1 });
    expect(parsePage((await sync(sim, 'g', '')).text).ok).toBe(true);
    expect(parsePage((await sync(sim, 'g', '')).text).ok).toBe(false);
    const renew = await fetch(`${sim.url}/_sim/accounts/g/renew-token`, { method: 'POST' });
    expect(await renew.json()).toEqual({ token: 'tok-g' });
    expect(parsePage((await sync(sim, 'g', '')).text).ok).toBe(true);

    const reset = await fetch(`${sim.url}/_sim/accounts/s/reset-keybuff`, { method: 'POST' });
    expect(reset.status).toBe(200);
    const accounts = (await (await fetch(`${sim.url}/_sim/accounts`)).json()) as { id: string }[];
    expect(accounts.map((a) => a.id)).toEqual(['g', 's']);
  });

  it('requires the admin token when one is configured', async () => {
    const locked = await startSimulator({
      adminToken: 'secret',
      accounts: [{ provider: 'gewe', token: 't', appId: 'wx_1', messages: 5 }],
    });
    try {
      expect((await fetch(`${locked.url}/_sim/accounts`)).status).toBe(401);
      const ok = await fetch(`${locked.url}/_sim/accounts`, { headers: { 'x-sim-admin-token': 'secret' } });
      expect(ok.status).toBe(200);
    } finally {
      await locked.close();
    }
  });
});
