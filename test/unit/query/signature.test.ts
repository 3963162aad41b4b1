/**
 * Signatures as clients compute them: the seed's JavaScript and Python examples (the Python one
 * run for real with python3), strict mode (timestamp window, single-use nonces), `signUrl`, and
 * properties of the canonical strings.
 */
import { execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';

import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { canonicalEncoded, canonicalRaw, NonceCache, quotePlus, sign, signUrl, verifySignature } from '../../../src/query/signature.ts';
import { buildQueryApp } from '../../../src/query/app.ts';
import { conversation, type Fixture, get, openFixture, SECRET_A, SECRET_B, signedQuery, testConfig } from './helpers.ts';

const SESSIONS = '/api/v1/chat-msg/sessions';
const MSGS = '/api/v1/chat-msg/session-msgs';
const SEARCH = '/api/v1/chat-msg/search';

// The seed's JavaScript example, as written there (sorted keys, raw `key=value`, hex HMAC).
function generateSignature(params: Record<string, string | number>, secret: string): string {
  const sortedParams = Object.keys(params).sort().reduce<Record<string, string | number>>((result, key) => {
    result[key] = params[key]!;
    return result;
  }, {});
  const queryString = Object.keys(sortedParams)
    .map((key) => `${key}=${sortedParams[key]!}`)
    .join('&');
  return createHmac('sha256', secret).update(queryString).digest('hex');
}

// The seed's Python example, run by python3: prints the query string `requests` would send.
const PYTHON = `
import hmac, hashlib, json, sys
from urllib.parse import urlencode

def generate_signature(params, secret):
    sorted_params = sorted(params.items())
    query_string = urlencode(sorted_params)
    return hmac.new(secret.encode('utf-8'), query_string.encode('utf-8'), hashlib.sha256).hexdigest()

params = json.loads(sys.argv[1])
params['signature'] = generate_signature(params, sys.argv[2])
print(urlencode(params))
`;

function pythonQuery(params: Record<string, string | number>, secret: string): string {
  return execFileSync('python3', ['-c', PYTHON, JSON.stringify(params), secret], { encoding: 'utf8' }).trim();
}

const clock = { now: Date.UTC(2024, 5, 1) };
let fx: Fixture;
beforeAll(async () => {
  fx = await openFixture(
    conversation(4, { content_text: '这是我们最新的产品介绍，请您查看', content: '{"content":"这是我们最新的产品介绍，请您查看"}' }),
  );
});
afterAll(async () => {
  await fx.dispose();
});

describe('the seed examples', () => {
  it('builds the seed canonical string and signature', () => {
    const params = { ext_staff_id: 'staff123', session_type: 'external', ext_corp_id: 'corp123', page: '1', page_size: '20' };
    expect(canonicalRaw(params)).toBe('ext_corp_id=corp123&ext_staff_id=staff123&page=1&page_size=20&session_type=external');
    expect(sign(params, 'secret_key')).toBe(generateSignature(params, 'secret_key'));
  });

  it('accepts the JavaScript example request (URL built with searchParams)', async () => {
    const params = { ext_staff_id: 'staff123', session_type: 'external', ext_corp_id: 'corp123', page: 1, page_size: 20, name: '张 三&x=1' };
    const url = new URL(SESSIONS, 'http://localhost:9002');
    for (const key of Object.keys(params)) url.searchParams.append(key, String(params[key as keyof typeof params]));
    url.searchParams.append('signature', generateSignature(params, SECRET_A));
    const res = await get(fx.app, url.pathname, url.search.slice(1));
    expect(res.body.code).toBe(0);
  });

  it('accepts the Python example request, Chinese and spaces included', async () => {
    const msgs = pythonQuery({ ext_staff_id: 'staff123', receiver_id: 'customer456', ext_corp_id: 'corp123', page: 1, page_size: 20 }, SECRET_A);
    const res = await get(fx.app, MSGS, msgs);
    expect(res.body.code).toBe(0);
    expect((res.body.data as { total: number }).total).toBe(4);
    const search = pythonQuery(
      { keyword: '产品介绍', ext_staff_id: 'staff123', ext_peer_id: 'customer456', ext_corp_id: 'corp123', page: 1, page_size: 20 },
      SECRET_A,
    );
    expect(search).toContain('%E4%BA%A7');
    const found = await get(fx.app, SEARCH, search);
    expect((found.body.data as { total: number }).total).toBe(4);
    const spaced = pythonQuery({ keyword: '产品 介绍*~', ext_staff_id: 'staff123', ext_peer_id: 'customer456', ext_corp_id: 'corp123' }, SECRET_A);
    expect((await get(fx.app, SEARCH, spaced)).body.code).toBe(0);
    // Signed by Python with another tenant's secret: refused.
    const foreign = pythonQuery({ ext_staff_id: 'staff123', receiver_id: 'customer456', ext_corp_id: 'corp123' }, SECRET_B);
    expect((await get(fx.app, MSGS, foreign)).status).toBe(401);
  });

  it("encodes like Python's quote_plus", () => {
    const samples = fc.sample(fc.string({ unit: 'binary', maxLength: 20 }), 200).filter((s) => Buffer.from(s, 'utf8').toString('utf8') === s);
    const python = execFileSync(
      'python3',
      ['-c', 'import json,sys\nfrom urllib.parse import quote_plus\nprint(json.dumps([quote_plus(s) for s in json.loads(sys.stdin.read())]))'],
      { input: JSON.stringify(samples), encoding: 'utf8' },
    );
    expect(samples.map(quotePlus)).toEqual(JSON.parse(python));
  });
});

describe('signature properties', () => {
  const paramsArb = fc.dictionary(
    fc.stringMatching(/^[a-z_]{1,12}$/).filter((k) => k !== 'signature'),
    fc.string({ maxLength: 16 }),
    { minKeys: 1, maxKeys: 6 },
  );

  it('verifies what it signs, in both spellings, and nothing changed', () => {
    fc.assert(
      fc.property(paramsArb, fc.string({ minLength: 1, maxLength: 20 }), fc.nat(), (params, secret, pick) => {
        expect(verifySignature({ ...params, signature: sign(params, secret) }, secret)).toBe(true);
        const encodedMac = createHmac('sha256', secret).update(canonicalEncoded(params)).digest('hex');
        expect(verifySignature({ ...params, signature: encodedMac }, secret)).toBe(true);
        expect(verifySignature({ ...params, signature: sign(params, secret) }, `${secret}x`)).toBe(false);
        const keys = Object.keys(params);
        const key = keys[pick % keys.length]!;
        const changed = { ...params, [key]: `${params[key] ?? ''}\u0001` };
        expect(verifySignature({ ...changed, signature: sign(params, secret) }, secret)).toBe(false);
        const added = { ...params, zzz_extra: '' };
        expect(verifySignature({ ...added, signature: sign(params, secret) }, secret)).toBe(false);
      }),
    );
  });

  it('never accepts an empty secret', () => {
    const params = { ext_corp_id: 'corp123' };
    expect(verifySignature({ ...params, signature: sign(params, '') }, '')).toBe(false);
  });

  it('signUrl makes URLs the server accepts', async () => {
    const url = signUrl('/api/v1/chat-msg/sessions?ext_staff_id=staff123&session_type=external&name=张', SECRET_A, { tenant: 'corp123' });
    expect(url.startsWith('/api/v1/chat-msg/sessions?')).toBe(true);
    const res = await fx.app.inject({ method: 'GET', url });
    expect(JSON.parse(res.body)).toMatchObject({ code: 0 });
  });
});

describe('strict mode', () => {
  const strictApp = async (now: () => number): Promise<ReturnType<typeof buildQueryApp>> =>
    buildQueryApp({
      store: fx.temp.store,
      config: testConfig({ strict: true }),
      log: (await import('pino')).pino({ level: 'silent' }),
      sync: { trigger: () => 0 },
      clock: now,
    });

  it('requires a fresh timestamp and a single-use nonce', async () => {
    const app = await strictApp(() => clock.now);
    try {
      const base = { ext_corp_id: 'corp123', ext_staff_id: 'staff123', receiver_id: 'customer456' };
      const now = Math.floor(clock.now / 1000);
      const call = async (extra: Record<string, string | number>, secret = SECRET_A): Promise<number> =>
        (await get(app, MSGS, signedQuery({ ...base, ...extra }, secret))).body.code;
      expect(await call({})).toBe(401);
      expect(await call({ timestamp: now })).toBe(401);
      expect(await call({ nonce: 'n-0000000001' })).toBe(401);
      expect(await call({ timestamp: now - 301, nonce: 'n-0000000002' })).toBe(401);
      expect(await call({ timestamp: now + 301, nonce: 'n-0000000003' })).toBe(401);
      expect(await call({ timestamp: now - 299, nonce: 'n-0000000004' })).toBe(0);
      // The same nonce again, even with other parameters or time: refused.
      expect(await call({ timestamp: now - 299, nonce: 'n-0000000004' })).toBe(401);
      expect(await call({ timestamp: now, nonce: 'n-0000000004', page: 2 })).toBe(401);
      // A wrong signature does not burn the nonce; the right one then passes once.
      expect(await call({ timestamp: now, nonce: 'n-0000000005' }, SECRET_B)).toBe(401);
      expect(await call({ timestamp: now, nonce: 'n-0000000005' })).toBe(0);
      // A reused nonce never returns data.
      const replay = await get(app, MSGS, signedQuery({ ...base, timestamp: now, nonce: 'n-0000000005' }, SECRET_A));
      expect(replay.body).toEqual({ code: 401, message: 'signature verification failed', data: null });
      // signUrl with timestamp and nonce passes.
      const url = signUrl(`${SESSIONS}?ext_staff_id=staff123&session_type=external`, SECRET_A, { tenant: 'corp123', timestamp: now, nonce: 'n-0000000006' });
      expect(JSON.parse((await app.inject({ method: 'GET', url })).body)).toMatchObject({ code: 0 });
    } finally {
      await app.close();
    }
  });

  it('keeps a nonce first used at the lower edge of its window until the upper edge, which is accepted too', async () => {
    const at = { now: 0 };
    const app = await strictApp(() => at.now);
    try {
      const ts = Math.floor(clock.now / 1000);
      const query = signedQuery({ ext_corp_id: 'corp123', ext_staff_id: 'staff123', receiver_id: 'customer456', timestamp: ts, nonce: 'n-edge-00001' }, SECRET_A);
      const code = async (nowMs: number): Promise<number> => {
        at.now = nowMs;
        return (await get(app, MSGS, query)).body.code;
      };
      expect(await code(ts * 1000 - 300_000)).toBe(0);
      expect(await code(ts * 1000 + 299_999)).toBe(401);
      expect(await code(ts * 1000 + 300_000)).toBe(401);
      // Past the window the timestamp itself is refused.
      expect(await code(ts * 1000 + 301_000)).toBe(401);
    } finally {
      await app.close();
    }
  });
});

describe('strict mode and the rate limit', () => {
  it('spends a nonce only when the rate limit lets its request through', async () => {
    const app = buildQueryApp({
      store: fx.temp.store,
      config: testConfig({ strict: true, rateLimit: 1 }),
      log: (await import('pino')).pino({ level: 'silent' }),
      sync: { trigger: () => 0 },
      clock: () => clock.now,
    });
    try {
      // The rate limiter reads Date.now(): with only Date faked, its window moves when the test
      // says so, however slowly a loaded machine answers (timers stay real).
      vi.useFakeTimers({ toFake: ['Date'], now: clock.now });
      const now = Math.floor(clock.now / 1000);
      const signed = (nonce: string): string =>
        signedQuery({ ext_corp_id: 'corp123', ext_staff_id: 'staff123', receiver_id: 'customer456', timestamp: now, nonce }, SECRET_A);
      expect((await get(app, MSGS, signed('n-rate-00001'))).body.code).toBe(0);
      const second = signed('n-rate-00002');
      expect((await get(app, MSGS, second)).body.code).toBe(429);
      // The window passes: the refused request's URL, sent again, is answered.
      vi.setSystemTime(clock.now + 1100);
      expect((await get(app, MSGS, second)).body.code).toBe(0);
      vi.setSystemTime(clock.now + 2200);
      expect((await get(app, MSGS, second)).body.code).toBe(401);
    } finally {
      vi.useRealTimers();
      await app.close();
    }
  });

  it('keeps as many nonces per tenant as the rate limit lets through in their lifetime', () => {
    // 1 request a second for 601 s: every nonce stays known, and a reuse is refused.
    const cache = new NonceCache(601_000, 1 * 602);
    for (let s = 0; s < 601; s++) expect(cache.use('corp123', `n-${String(s).padStart(8, '0')}`, s * 1000)).toBe(true);
    expect(cache.use('corp123', 'n-00000000', 600_000)).toBe(false);
    expect(cache.used('corp123', 'n-00000000', 600_000)).toBe(true);
    expect(cache.used('corp123', 'n-00000000', 601_000)).toBe(false);
  });
});

describe('every parameter is signed', () => {
  it('signs a parameter named __proto__ like any other', async () => {
    const base = `ext_corp_id=corp123&ext_staff_id=staff123&receiver_id=customer456`;
    const canonical = (extra: string): string => `${extra}ext_corp_id=corp123&ext_staff_id=staff123&receiver_id=customer456`;
    const mac = (text: string): string => createHmac('sha256', SECRET_A).update(text).digest('hex');
    // Signed without it: an unsigned parameter, refused.
    const unsigned = await get(fx.app, MSGS, `${base}&__proto__=evil&signature=${mac(canonical(''))}`);
    expect(unsigned.body.code).toBe(401);
    // Signed with it, as the seed's rule says (sorted: `_` comes before `e`): accepted.
    const signed = await get(fx.app, MSGS, `${base}&__proto__=evil&signature=${mac(canonical('__proto__=evil&'))}`);
    expect(signed.body.code).toBe(0);
    // signUrl signs it too.
    const url = signUrl(`${MSGS}?${base}&__proto__=evil`, SECRET_A);
    expect(url).toContain(`signature=${mac(canonical('__proto__=evil&'))}`);
    expect(JSON.parse((await fx.app.inject({ method: 'GET', url })).body)).toMatchObject({ code: 0 });
  });
});
