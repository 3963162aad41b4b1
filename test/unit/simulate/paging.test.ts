import { Buffer } from 'node:buffer';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import {
  INT64_MAX_ID,
  JUST_ABOVE_2_53_ID,
  SEED_FUNCTIONMSG_ID,
  SIM_KINDS,
  startSimulator,
} from '../../../src/simulate/index.ts';
import type { SimulatorHandle } from '../../../src/simulate/index.ts';
import { parsePage, pullAll, splitItems, sync, uniqueKeys } from './client.ts';

describe('simulator paging', () => {
  let sim: SimulatorHandle;

  beforeAll(async () => {
    sim = await startSimulator({
      accounts: [
        { provider: 'gewe', id: 'g', token: 'tok-g', appId: 'wx_g', messages: 300, duplicateRate: 0.1, seed: 1 },
        { provider: 'videosapi', id: 'v', token: 'tok-v', appId: 'wx_v', messages: 120, seed: 2 },
        { provider: 'syncfinder', id: 's', token: 'tok-s', wId: 'w-s', messages: 120, seed: 3, pageSize: 7 },
      ],
    });
  });
  afterAll(async () => {
    await sim.close();
  });

  it('pages to the end and delivers exactly the expected unique messages', async () => {
    for (const id of ['g', 'v', 's']) {
      const { items } = await pullAll(sim, id);
      const expected = sim.expected(id);
      expect(new Set(uniqueKeys(items))).toEqual(new Set(expected.map((e) => `${e.msgSessionId}|${e.newMsgId}`)));
      // Content arrives exactly as the ground truth says.
      const byId = new Map(items.map((i) => [`${i.msgSessionId}|${i.newMsgId}`, i.content]));
      for (const e of expected) expect(byId.get(`${e.msgSessionId}|${e.newMsgId}`)).toBe(e.content);
    }
  });

  it('records every keyBuff received, in order, also on the admin route', async () => {
    const before = sim.received('v').length;
    const { sent } = await pullAll(sim, 'v');
    const got = sim.received('v').slice(before);
    expect(got.map((r) => r.keyBuff)).toEqual(sent);
    expect(got.at(-1)?.outcome).toBe('caught_up');
    const res = await fetch(`${sim.url}/_sim/accounts/v/requests`);
    const viaHttp = (await res.json()) as { keyBuff: string }[];
    expect(viaHttp.slice(before).map((r) => r.keyBuff)).toEqual(sent);
  });

  it('answers a caught-up client with an empty list and the same keyBuff', async () => {
    const { sent } = await pullAll(sim, 's');
    const last = sent.at(-1) ?? '';
    const page = parsePage((await sync(sim, 's', last)).text);
    expect(page.items).toHaveLength(0);
    expect(page.keyBuff).toBe(last);
  });

  it('summarises the ground truth without building it', async () => {
    const expected = sim.expected('g');
    const summary = sim.summary('g');
    expect(summary.released).toBe(expected.length);
    for (const k of SIM_KINDS) expect(summary.byKind[k]).toBe(expected.filter((e) => e.kind === k).length);
    expect(summary.byDestination.events).toBe(expected.filter((e) => e.destination === 'events').length);
    expect(sim.lastReceived('g')).toEqual(sim.received('g').at(-1));
    const viaHttp = (await (await fetch(`${sim.url}/_sim/accounts/g`)).json()) as { byDestination: unknown };
    expect(viaHttp.byDestination).toEqual(summary.byDestination);
  });

  it('puts every message kind in the first 40 messages', () => {
    const kinds = new Set(sim.expected('g').slice(0, 40).map((e) => e.kind));
    expect([...SIM_KINDS].filter((k) => !kinds.has(k))).toEqual([]);
  });

  it('links revokes, quotes and files to earlier messages of the same session', () => {
    const expected = sim.expected('g');
    const byId = new Map(expected.map((e) => [e.newMsgId, e]));
    const revokes = expected.filter((e) => e.kind === 'revoke');
    expect(revokes.length).toBeGreaterThan(0);
    for (const r of revokes) {
      const target = byId.get(r.fields['targetNewMsgId'] ?? '');
      expect(target?.msgSessionId).toBe(r.msgSessionId);
      expect(target?.recalledBy).toBe(r.newMsgId);
      expect(r.content).toContain(`<newmsgid>${target?.newMsgId}</newmsgid>`);
    }
    for (const f of expected.filter((e) => e.kind === 'file')) {
      const placeholder = byId.get(f.fields['overwriteNewMsgId'] ?? '');
      expect(placeholder?.kind).toBe('file_placeholder');
      expect(placeholder?.index).toBe(f.index - 1);
    }
    for (const q of expected.filter((e) => e.kind === 'quote')) {
      const quoted = byId.get(q.fields['referNewMsgId'] ?? '');
      expect(quoted?.msgSessionId).toBe(q.msgSessionId);
      // The quoted message's XML travels entity-encoded.
      if (quoted?.content.startsWith('<')) expect(q.content).toContain('&lt;');
    }
  });

  it('re-sends duplicates with identical bytes and keeps them out of expected()', async () => {
    const { items } = await pullAll(sim, 'g');
    const seen = new Map<string, string>();
    let dups = 0;
    for (const i of items) {
      const key = `${i.msgSessionId}|${i.newMsgId}`;
      const prior = seen.get(key);
      if (prior !== undefined) {
        dups++;
        expect(i.raw).toBe(prior);
      }
      seen.set(key, i.raw);
    }
    expect(dups).toBeGreaterThan(5);
    expect(sim.expected('g')).toHaveLength(300);
    expect(sim.received('g').some((r) => r.duplicates > 0)).toBe(true);
  });

  it('counts re-sends toward the page size ("Largest page, in items")', async () => {
    const dense = await startSimulator({ accounts: [{ provider: 'gewe', id: 'd', token: 'tok-d', appId: 'wx_d', messages: 200, duplicateRate: 0.5, pageSize: 5, pageSizeVariation: 0, seed: 4 }] });
    try {
      await pullAll(dense, 'd');
      const pages = dense.received('d').filter((r) => r.outcome === 'page');
      expect(pages.some((r) => r.duplicates > 0)).toBe(true);
      expect(Math.max(...pages.map((r) => r.items))).toBe(5);
      expect(dense.expected('d')).toHaveLength(200);
    } finally {
      await dense.close();
    }
  });

  it('emits 64-bit ids as bare JSON numbers with every digit', async () => {
    const res = await sync(sim, 'g', '');
    // The first page holds the whole opening plan only if it is large enough: read two pages.
    const next = parsePage(res.text).keyBuff ?? '';
    const body = res.text + (await sync(sim, 'g', next)).text;
    expect(body).toContain(`"NewMsgId":${INT64_MAX_ID},`);
    expect(body).toContain(`"NewMsgId":${JUST_ABOVE_2_53_ID},`);
    expect(body).not.toMatch(/"NewMsgId":"/);
    const ids = [...body.matchAll(/"NewMsgId":(\d+)/g)].map((m) => BigInt(m[1] ?? '0'));
    expect(ids.filter((n) => n > 2n ** 53n).length).toBeGreaterThan(ids.length / 2);
    // uint64 finder objectIds above 2^63 inside the feed XML.
    const objectIds = sim
      .expected('g')
      .flatMap((e) => (e.fields['objectId'] === undefined ? [] : [BigInt(e.fields['objectId'])]));
    expect(objectIds.some((n) => n > 2n ** 63n)).toBe(true);
    const syncfinder = (await sync(sim, 's', '')).text + (await pullAll(sim, 's')).items.map((i) => i.raw).join('');
    expect(syncfinder).toContain(`"NewMsgId":${SEED_FUNCTIONMSG_ID},`);
  });

  it('speaks each provider envelope and item layout', async () => {
    const g = (await sync(sim, 'g', '')).text;
    expect(g.startsWith('{"ret":200,"msg":"操作成功","data":{"list":[{"syncKeyType":')).toBe(true);
    expect(splitItems(g)[0]).toMatch(/^\{"syncKeyType":[15],"itemType":1,"content":\{"msg":\{"MsgId":-?\d+,"FromUserName":\{"string":/);
    const s = (await sync(sim, 's', '')).text;
    expect(s.startsWith('{"code":"1000","message":"处理成功","data":{"list":[{"syncKeyType":')).toBe(true);
    expect(splitItems(s)[0]).toMatch(/^\{"syncKeyType":[15],"itemType":1,"subType":\d,"content":\{"msg":\{"Status":3,"ImgBuf"/);
    // VideosApi escapes <, >, & like Go's encoding/json; GeWe writes them raw.
    const v = (await sync(sim, 'v', '')).text;
    expect(v).toContain('\\u003cmsg\\u003e');
    expect(v).not.toContain('<msg>');
    expect(g).toContain('<msg>');
    // Server instructions carry msgSessionId "" and, on syncFinder, no extinfo.
    const events = sim.expected('s').filter((e) => e.destination === 'events' && e.kind !== 'statusnotify' && e.kind !== 'file_placeholder');
    expect(events.length).toBeGreaterThan(0);
    for (const e of events) expect(e.msgSessionId).toBe('');
  });

  it('varies page sizes within pageSize', () => {
    const sizes = sim
      .received('s')
      .filter((r) => r.outcome === 'page')
      .map((r) => r.items - r.duplicates);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(7);
    expect(new Set(sizes.slice(0, -1)).size).toBeGreaterThan(1);
  });

  it('issues protobuf-shaped base64 keyBuffs and refuses mangled ones', async () => {
    const page = parsePage((await sync(sim, 'g', '')).text);
    const kb = page.keyBuff ?? '';
    expect(kb).toMatch(/^[A-Za-z0-9+/]+=*$/);
    const bytes = Buffer.from(kb, 'base64');
    expect(bytes[0]).toBe(0x0a); // repeated BypSyncKeyPair, field 1
    expect([...bytes.subarray(-2)]).toEqual([0x10, 0x00]); // reset = false
    const mangled = kb.toLowerCase();
    const res = parsePage((await sync(sim, 'g', mangled)).text);
    expect(res.ok).toBe(false);
    expect(res.envelope['ret']).toBe(500);
    expect(sim.received('g').at(-1)?.outcome).toBe('bad_keybuff');
    // A keyBuff that is not a string is refused the same way, and recorded as its JSON text.
    const numeric = parsePage((await sync(sim, 'g', undefined, { body: JSON.stringify({ appId: 'wx_g', keyBuff: 12 }) })).text);
    expect(numeric.ok).toBe(false);
    expect(sim.received('g').at(-1)).toMatchObject({ outcome: 'bad_keybuff', keyBuff: '12' });
  });

  it('serves the same bytes page for page after prerender', async () => {
    const other = await startSimulator({
      accounts: [{ provider: 'gewe', id: 'g', token: 'tok-g', appId: 'wx_g', messages: 300, duplicateRate: 0.1, seed: 1 }],
    });
    try {
      other.prerender('g');
      let keyBuff = '';
      for (let n = 0; n < 100; n++) {
        const [a, b] = await Promise.all([sync(sim, 'g', keyBuff), sync(other, 'g', keyBuff)]);
        expect(b.bytes.equals(a.bytes)).toBe(true);
        const page = parsePage(a.text);
        if (page.items.length === 0) break;
        keyBuff = page.keyBuff ?? '';
      }
      expect(other.summary('g').requests).toBeGreaterThan(3);
    } finally {
      await other.close();
    }
  });
});
