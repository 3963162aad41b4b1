import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { parseConfig } from '../../../src/core/config.ts';
import { silentLogger } from '../../../src/core/logger.ts';
import { Wakeups } from '../../../src/core/pipeline.ts';
import { AuthError } from '../../../src/core/errors.ts';
import { CursorRefusedError, providerError } from '../../../src/ingest/finder.ts';
import { createSource } from '../../../src/ingest/registry.ts';
import { startSimulator } from '../../../src/simulate/index.ts';
import type { Source, SourceContext, SourcePage } from '../../../src/ingest/source.ts';

interface Call {
  readonly path: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: Record<string, unknown>;
}

type Handler = (call: Call, res: ServerResponse) => void;

const servers: Server[] = [];

afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A provider stand-in whose answers the test scripts call by call. */
async function scriptedProvider(handler: Handler): Promise<{ url: string; calls: Call[] }> {
  const calls: Call[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const call = { path: req.url ?? '', headers: req.headers, body: JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown> };
      calls.push(call);
      handler(call, res);
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, calls };
}

function reply(res: ServerResponse, body: string, status = 200, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(body);
}

const ITEM_A = '{"content":{"msg":{"NewMsgId":3876235366388279544,"Content":{"string":"哈喽"}}}}';
const ITEM_B = '{ "content" : {"msg":{"NewMsgId":1767797523284146072}} }';

function gewePage(items: string[], keyBuff: string): string {
  return `{"ret":200,"msg":"操作成功","data":{"list":[${items.join(',')}],"keyBuff":"${keyBuff}"}}`;
}

function sourceFor(type: 'gewe' | 'syncfinder', url: string, token = 't0k'): Source {
  const config = parseConfig({
    tenants: [{ id: 'corp1', secret: 's3cret' }],
    sources: [
      type === 'gewe'
        ? { type, name: `src-${token}`, tenant: 'corp1', baseUrl: url, token, appId: 'wx_app', pollIntervalMs: 50 }
        : { type, name: `src-${token}`, tenant: 'corp1', baseUrl: url, token, wId: 'w-1', pollIntervalMs: 50 },
    ],
  });
  return createSource(config.sources[0]!, { retry: { attempts: Infinity, minMs: 10, maxMs: 50, factor: 2 }, parkRetryMs: 100 });
}

/** Runs a source until `until` says so (or 5 s pass), collecting what it emits; `wakeups` wake it (tenant corp1). */
async function runUntil(
  source: Source,
  until: (pages: SourcePage[]) => boolean,
  cursor?: string,
  timeoutMs = 5000,
  wakeups = new Wakeups(),
): Promise<SourcePage[]> {
  const pages: SourcePage[] = [];
  const controller = new AbortController();
  const timer = setTimeout(() => { controller.abort(); }, timeoutMs);
  const ctx: SourceContext = {
    signal: controller.signal,
    log: silentLogger(),
    loadCursor: () => Promise.resolve(cursor),
    wakeup: wakeups.waiter('corp1'),
    emit: (page) => {
      pages.push(page);
      if (until(pages)) controller.abort();
      return Promise.resolve();
    },
  };
  await source.run(ctx);
  clearTimeout(timer);
  return pages;
}

describe('FinderSource', () => {
  it('emits the exact item bytes and follows keyBuff from "" onwards', async () => {
    const provider = await scriptedProvider((call, res) => {
      if (call.body['keyBuff'] === '') reply(res, gewePage([ITEM_A, ITEM_B], 'K1'));
      else reply(res, gewePage([], 'K2'));
    });
    const source = sourceFor('gewe', provider.url);
    const pages = await runUntil(source, (p) => p.length === 2);
    expect(pages[0]!.cursorBefore).toBe('');
    expect(pages[0]!.cursorAfter).toBe('K1');
    expect(pages[0]!.records.map((r) => Buffer.from(r.bytes).toString())).toEqual([ITEM_A, ITEM_B]);
    expect(pages[0]!.records[0]!.origin).toEqual({ source: 'src-t0k', sourceType: 'gewe', tenant: 'corp1', staffId: 'wx_app' });
    // An empty page whose keyBuff moved still carries the new cursor, with no records.
    expect(pages[1]).toMatchObject({ cursorBefore: 'K1', cursorAfter: 'K2', records: [] });
    expect(provider.calls[0]!.path).toBe('/gewe/v2/api/finder/syncPrivateLetterMsg');
    expect(provider.calls[0]!.headers['x-gewe-token']).toBe('t0k');
    expect(provider.calls[0]!.body).toEqual({ appId: 'wx_app', keyBuff: '' });
  });

  it('resumes from the stored cursor', async () => {
    const provider = await scriptedProvider((_call, res) => { reply(res, gewePage([ITEM_A], 'K9')); });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.length === 1, 'STORED');
    expect(provider.calls[0]!.body['keyBuff']).toBe('STORED');
    expect(pages[0]!.cursorBefore).toBe('STORED');
  });

  it('retries 5xx and 429 with the same keyBuff and honours Retry-After', async () => {
    let n = 0;
    const times: number[] = [];
    const provider = await scriptedProvider((_call, res) => {
      times.push(Date.now());
      n++;
      if (n === 1) reply(res, 'oops', 503);
      else if (n === 2) reply(res, '{}', 429, { 'retry-after': '1' });
      else reply(res, gewePage([ITEM_A], 'K1'));
    });
    const source = sourceFor('gewe', provider.url);
    const pages = await runUntil(source, (p) => p.length === 1);
    expect(provider.calls.map((c) => c.body['keyBuff'])).toEqual(['', '', '']);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(950);
    expect(pages[0]!.records).toHaveLength(1);
    expect(source.stats.errors).toBe(2);
  });

  it('dead-letters a malformed page with its bytes and does not move the cursor', async () => {
    let n = 0;
    const provider = await scriptedProvider((_call, res) => {
      n++;
      if (n === 1) reply(res, '{"ret":200,"data":{"list":[{"a":1},');
      else reply(res, gewePage([ITEM_A], 'K1'));
    });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.some((x) => x.records.length > 0));
    expect(pages[0]!.records).toHaveLength(0);
    expect(pages[0]!.cursorAfter).toBe('');
    expect(pages[0]!.deadLetters).toHaveLength(1);
    expect(pages[0]!.deadLetters[0]!.error_code).toBe('MSGPIPE_ERR_PAGE_MALFORMED');
    expect(Buffer.from(pages[0]!.deadLetters[0]!.original_base64, 'base64').toString()).toBe('{"ret":200,"data":{"list":[{"a":1},');
    expect(pages[1]!.cursorAfter).toBe('K1');
  });

  it.each([
    ['a gateway\'s own JSON', 'gewe', '{"error":"upstream timed out"}'],
    ['another provider\'s envelope (a wrong baseUrl)', 'gewe', '{"code":"1000","message":"处理成功","data":{"list":[],"keyBuff":"X"}}'],
    ['a GeWe envelope at a syncfinder source', 'syncfinder', '{"ret":200,"msg":"操作成功","data":{"list":[],"keyBuff":"X"}}'],
  ] as const)('dead-letters %s as a malformed page, keeping the cursor', async (_name, type, body) => {
    let n = 0;
    const provider = await scriptedProvider((_call, res) => {
      n++;
      if (n === 1) reply(res, body);
      else if (type === 'gewe') reply(res, gewePage([ITEM_A], 'K1'));
      else reply(res, `{"code":"1000","message":"处理成功","data":{"list":[${ITEM_A}],"keyBuff":"K1"}}`);
    });
    const pages = await runUntil(sourceFor(type, provider.url), (p) => p.some((x) => x.records.length > 0));
    expect(pages[0]!.deadLetters.map((d) => [d.error_code, Buffer.from(d.original_base64, 'base64').toString()])).toEqual([['MSGPIPE_ERR_PAGE_MALFORMED', body]]);
    expect(pages[0]!.cursorAfter).toBe('');
    expect(pages.at(-1)!.cursorAfter).toBe('K1');
  });

  it('parks an account whose token is refused and keeps the others running', async () => {
    const provider = await scriptedProvider((call, res) => {
      if (call.headers.authorization === 'bad') reply(res, '{"code":"1001","message":"授权已过期","data":null}');
      else reply(res, `{"code":"1000","message":"处理成功","data":{"list":[${ITEM_A}],"keyBuff":"K${Date.now()}"}}`);
    });
    const bad = sourceFor('syncfinder', provider.url, 'bad');
    const good = sourceFor('syncfinder', provider.url, 'good');
    const [badPages, goodPages] = await Promise.all([
      runUntil(bad, () => false, undefined, 600),
      runUntil(good, (p) => p.length === 5),
    ]);
    expect(badPages).toHaveLength(0);
    expect(bad.stats.parked).toBe(true);
    expect(goodPages).toHaveLength(5);
    expect(provider.calls.filter((c) => c.headers.authorization === 'bad').length).toBeGreaterThan(1);
  });

  it('keeps a parked account at its slow pace however often a sync is asked for', async () => {
    const provider = await scriptedProvider((_call, res) => { reply(res, '{"code":"1001","message":"授权已过期","data":null}'); });
    const wakeups = new Wakeups();
    const source = sourceFor('syncfinder', provider.url, 'refused');
    const syncs = setInterval(() => { wakeups.trigger('corp1'); }, 20);
    // parkRetryMs is 100 here: about 10 tries a second, against 50 syncs.
    await runUntil(source, () => false, undefined, 1000, wakeups);
    clearInterval(syncs);
    expect(source.stats.parked).toBe(true);
    expect(provider.calls.length).toBeGreaterThanOrEqual(2);
    expect(provider.calls.length).toBeLessThanOrEqual(12);
  });

  it('polls again at once after a sync asked for during a poll, not after its backoff', async () => {
    const wakeups = new Wakeups();
    let inFlight: (() => void) | undefined;
    const provider = await scriptedProvider((_call, res) => {
      // The first answer waits until the test has asked for a sync; it says there is nothing new.
      if (provider.calls.length === 1) inFlight = () => { reply(res, gewePage([], 'K0')); };
      else reply(res, gewePage([ITEM_A], 'K1'));
    });
    const config = parseConfig({
      tenants: [{ id: 'corp1', secret: 's3cret' }],
      sources: [{ type: 'gewe', name: 'slow', tenant: 'corp1', baseUrl: provider.url, token: 't', appId: 'wx_app', pollIntervalMs: 60_000 }],
    });
    const source = createSource(config.sources[0]!);
    const running = runUntil(source, (pages) => pages.some((p) => p.records.length > 0), undefined, 5000, wakeups);
    await vi.waitFor(() => { expect(inFlight).toBeDefined(); });
    // Nobody waits yet: the request is kept for the source's next wait.
    expect(wakeups.trigger('corp1')).toBe(0);
    inFlight?.();
    const pages = await running;
    expect(provider.calls).toHaveLength(2);
    expect(pages.at(-1)?.records).toHaveLength(1);
  });

  it('stops promptly when aborted during a slow request', async () => {
    const provider = await scriptedProvider((_call, res) => {
      setTimeout(() => { reply(res, gewePage([], 'K')); }, 3000).unref();
    });
    const source = sourceFor('gewe', provider.url);
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => { controller.abort(); }, 100);
    await source.run({
      signal: controller.signal,
      log: silentLogger(),
      loadCursor: () => Promise.resolve(undefined),
      wakeup: () => new Promise(() => undefined),
      emit: () => Promise.resolve(),
    });
    expect(Date.now() - started).toBeLessThan(1500);
  });
});

describe('FinderSource page checks', () => {
  it('dead-letters a page whose data.list is not an array instead of skipping it', async () => {
    let n = 0;
    const provider = await scriptedProvider((_call, res) => {
      n++;
      if (n === 1) reply(res, `{"ret":200,"msg":"ok","data":{"list":{"0":${ITEM_A}},"keyBuff":"K-object"}}`);
      else reply(res, gewePage([ITEM_A], 'K1'));
    });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.some((x) => x.records.length > 0));
    expect(pages[0]!.deadLetters[0]!.error_code).toBe('MSGPIPE_ERR_PAGE_MALFORMED');
    expect(pages[0]!.cursorAfter).toBe('');
    expect(pages.map((p) => p.cursorAfter)).not.toContain('K-object');
    expect(pages.at(-1)!.cursorAfter).toBe('K1');
  });

  it('reads a page that starts with a UTF-8 byte order mark', async () => {
    const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(gewePage([ITEM_A, ITEM_B], 'K-bom'))]);
    const provider = await scriptedProvider((_call, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.length === 1);
    expect(pages[0]!.cursorAfter).toBe('K-bom');
    expect(pages[0]!.records.map((r) => r.bytes.toString())).toEqual([ITEM_A, ITEM_B]);
  });

  it('reads a page whose envelope says "Data" (seen in the wild)', async () => {
    const provider = await scriptedProvider((_call, res) => { reply(res, gewePage([ITEM_A], 'K-cap').replace('"data"', '"Data"')); });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.length === 1);
    expect(pages[0]!.cursorAfter).toBe('K-cap');
    expect(pages[0]!.records.map((r) => r.bytes.toString())).toEqual([ITEM_A]);
  });

  it('dead-letters a page whose items the byte scan cannot slice instead of moving past them', async () => {
    let n = 0;
    const provider = await scriptedProvider((_call, res) => {
      n++;
      // `"li\u0073t"` is `"list"` to a JSON parser but not to the byte scan.
      if (n === 1) reply(res, gewePage([ITEM_A], 'K-escaped').replace('"list"', '"li\\u0073t"'));
      else reply(res, gewePage([ITEM_A], 'K1'));
    });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.some((x) => x.records.length > 0));
    expect(pages[0]!.deadLetters[0]!.error_code).toBe('MSGPIPE_ERR_PAGE_MALFORMED');
    expect(pages.map((p) => p.cursorAfter)).not.toContain('K-escaped');
    expect(pages.at(-1)).toMatchObject({ cursorAfter: 'K1' });
  });

  it('waits before asking again when a page hands back items with the keyBuff it was asked with', async () => {
    // A provider replaying the same items at the same position: polling at once would loop.
    const times: number[] = [];
    const provider = await scriptedProvider((call, res) => {
      times.push(Date.now());
      reply(res, gewePage([ITEM_A], String(call.body['keyBuff'])));
    });
    const source = sourceFor('gewe', provider.url);
    // Stopped by the fourth answer, not by a clock: a loaded machine only makes it slower.
    const pages = await runUntil(source, (p) => p.length === 4, 'K7', 20_000);
    // pollIntervalMs is 50, doubling while nothing moves: 50, 100, 200 ms … between the polls.
    expect(provider.calls).toHaveLength(4);
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(45 * 2 ** (i - 1));
    // Nothing is dropped: each answer's items are passed on, at the cursor they came with.
    expect(pages).toHaveLength(4);
    expect(pages.every((p) => p.cursorBefore === 'K7' && p.cursorAfter === 'K7' && p.records.length === 1)).toBe(true);
  });

  it('starts again from "" after the provider refuses the stored keyBuff 5 times in a row', async () => {
    // A provider that forgot its cursors (a re-login on its side) refuses the old keyBuff.
    const provider = await scriptedProvider((call, res) => {
      if (call.body['keyBuff'] === 'K-stale') reply(res, '{"ret":500,"msg":"keyBuff 参数错误","data":null}');
      else if (call.body['keyBuff'] === '') reply(res, gewePage([ITEM_A, ITEM_B], 'K1'));
      else reply(res, gewePage([], 'K1'));
    });
    const source = sourceFor('gewe', provider.url);
    const pages = await runUntil(source, (p) => p.length === 1, 'K-stale');
    expect(provider.calls.map((c) => c.body['keyBuff'])).toEqual(['K-stale', 'K-stale', 'K-stale', 'K-stale', 'K-stale', '']);
    expect(pages[0]).toMatchObject({ cursorBefore: '', cursorAfter: 'K1' });
    expect(pages[0]!.records.map((r) => Buffer.from(r.bytes).toString())).toEqual([ITEM_A, ITEM_B]);
    expect(source.stats.errors).toBe(5);
  });

  it('reads the whole stream again from a simulator that forgot its cursors and refuses the old one', async () => {
    const sim = await startSimulator({ accounts: [{ provider: 'gewe', id: 'g', token: 't0k', appId: 'wx_app', messages: 60, pageSize: 20, duplicateRate: 0 }] });
    try {
      const first = await runUntil(sourceFor('gewe', sim.url), (p) => p.length === 1);
      // A request the stop abandoned has reached the simulator before the reset.
      await new Promise((r) => setTimeout(r, 100));
      sim.setFaults('g', { refuseStaleKeyBuff: true });
      sim.resetKeyBuff('g');
      const ids = (pages: SourcePage[]): string[] =>
        pages.flatMap((p) => p.records.map((r) => /"NewMsgId":(\d+)/.exec(Buffer.from(r.bytes).toString())?.[1] ?? '?'));
      const expected = sim.expected('g').map((e) => e.newMsgId);
      const stale = first[0]!.cursorAfter;
      const restartedAt = Date.now();
      const pages = await runUntil(sourceFor('gewe', sim.url), (p) => ids(p).length >= expected.length, stale);
      const second = sim.received('g').filter((r) => r.at >= restartedAt);
      expect(second.slice(0, 6).map((r) => [r.keyBuff === '' ? '""' : r.keyBuff === stale ? 'stale' : 'other', r.outcome])).toEqual([
        ...Array<[string, string]>(5).fill(['stale', 'bad_keybuff']),
        ['""', 'page'],
      ]);
      expect(pages[0]!.cursorBefore).toBe('');
      expect(new Set(ids(pages))).toEqual(new Set(expected));
    } finally {
      await sim.close();
    }
  });

  it('keeps the stored keyBuff through provider errors that do not name it', async () => {
    let n = 0;
    const provider = await scriptedProvider((_call, res) => {
      n++;
      // Neither a busy provider nor a refused token is a reason to read the history again.
      if (n <= 7) reply(res, '{"ret":500,"msg":"系统繁忙","data":null}');
      else reply(res, gewePage([ITEM_A], 'K2'));
    });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.length === 1, 'K-kept');
    expect(provider.calls.map((c) => c.body['keyBuff'])).toEqual(Array<string>(8).fill('K-kept'));
    expect(pages[0]).toMatchObject({ cursorBefore: 'K-kept', cursorAfter: 'K2' });
  });

  it('reads a refusal that names the keyBuff as a cursor error and one that names the token as an auth error', () => {
    expect(providerError('gewe', '500', 'keyBuff 参数错误')).toBeInstanceOf(CursorRefusedError);
    expect(providerError('gewe', '500', 'keyBuff expired')).toBeInstanceOf(CursorRefusedError);
    expect(providerError('gewe', '500', 'token expired')).toBeInstanceOf(AuthError);
    expect(providerError('gewe', '500', 'token 与 keyBuff 不匹配')).toBeInstanceOf(AuthError);
    expect(providerError('gewe', '500', '系统繁忙')).not.toBeInstanceOf(CursorRefusedError);
  });

  it('treats "list": null as an empty page', async () => {
    const provider = await scriptedProvider((_call, res) => { reply(res, '{"ret":200,"msg":"ok","data":{"list":null,"keyBuff":"K2"}}'); });
    const pages = await runUntil(sourceFor('gewe', provider.url), (p) => p.length === 1);
    expect(pages[0]).toMatchObject({ cursorAfter: 'K2', records: [], deadLetters: [] });
  });

  it('stops the source when the sink refuses a dead letter', async () => {
    const provider = await scriptedProvider((_call, res) => { reply(res, 'not json'); });
    const source = sourceFor('gewe', provider.url);
    await expect(
      source.run({
        signal: new AbortController().signal,
        log: silentLogger(),
        loadCursor: () => Promise.resolve(undefined),
        wakeup: () => new Promise(() => undefined),
        emit: () => Promise.reject(new Error('sink is down')),
      }),
    ).rejects.toThrow('sink is down');
  });
});
