/** The pollers' HTTP client against a real local server. */
import { getEventListeners } from 'node:events';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

import { afterEach, describe, expect, it, vi } from 'vitest';

import { TransientError } from '../../../src/core/errors.ts';
import { postBytes } from '../../../src/ingest/http.ts';

let servers: Server[] = [];
let responses: ServerResponse[] = [];

afterEach(async () => {
  for (const res of responses) res.destroy();
  responses = [];
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => { s.closeAllConnections(); s.close(() => { resolve(); }); })));
  servers = [];
});

/** A server whose answer is written by `answer`; resolves to its URL. */
async function serve(answer: (res: ServerResponse) => void): Promise<string> {
  const server = createServer((req, res) => {
    responses.push(res);
    req.resume();
    req.on('end', () => { answer(res); });
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${String((server.address() as AddressInfo).port)}/`;
}

/** Headers at once, then one byte every 50 ms for `ms`, then the end. */
function trickle(ms: number): (res: ServerResponse) => void {
  return (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const started = Date.now();
    const tick = setInterval(() => {
      if (Date.now() - started >= ms) {
        clearInterval(tick);
        res.end('1');
      } else res.write(' ');
    }, 50);
    res.on('close', () => { clearInterval(tick); });
  };
}

describe('postBytes', () => {
  it('takes every 5xx (a proxy 520 and 501 too) and 408/425/429 for transient, other 4xx for permanent', async () => {
    let status = 200;
    const url = await serve((res) => { res.writeHead(status).end(); });
    for (const s of [500, 501, 503, 520, 599, 408, 425, 429]) {
      status = s;
      await expect(postBytes(url, {}, '{}', { timeoutMs: 5000 }), String(s)).rejects.toBeInstanceOf(TransientError);
    }
    for (const s of [400, 404, 413]) {
      status = s;
      const outcome = postBytes(url, {}, '{}', { timeoutMs: 5000 });
      await expect(outcome, String(s)).rejects.toMatchObject({ code: 'MSGPIPE_ERR_HTTP_STATUS' });
      await expect(outcome).rejects.not.toBeInstanceOf(TransientError);
    }
  });

  it('gives up on a body that trickles in past the request timeout, though no gap between its chunks reaches it', async () => {
    const url = await serve(trickle(4000));
    const started = Date.now();
    const outcome = postBytes(url, {}, '{}', { timeoutMs: 300 });
    await expect(outcome).rejects.toBeInstanceOf(TransientError);
    await expect(outcome).rejects.toThrow('Provider request took longer than 300 ms.');
    // Well before the server's 4 s of trickling were over.
    expect(Date.now() - started).toBeLessThan(3000);
  });

  it('returns the body that arrives within the timeout', async () => {
    const url = await serve(trickle(150));
    const res = await postBytes(url, {}, '{}', { timeoutMs: 5000 });
    expect(res.status).toBe(200);
    expect(res.body.toString().trim()).toBe('1');
  });

  it('ends with the stop reason, not a timeout, when the caller stops it, and leaves no listener on the caller signal', async () => {
    const url = await serve(trickle(4000));
    const stop = new AbortController();
    const reason = new Error('stopping');
    const outcome = postBytes(url, {}, '{}', { timeoutMs: 10_000, signal: stop.signal });
    setTimeout(() => { stop.abort(reason); }, 100);
    await expect(outcome).rejects.toBe(reason);

    const long = new AbortController();
    const quick = await serve((res) => { res.end('{}'); });
    for (let i = 0; i < 20; i++) await postBytes(quick, {}, '{}', { timeoutMs: 5000, signal: long.signal });
    expect(getEventListeners(long.signal, 'abort')).toHaveLength(0);
  });

  it('answers a healthy account at once while 70 requests to the same host are held by the provider', async () => {
    // One server for both: a path held until the end of the test, and one answered at once.
    const held: ServerResponse[] = [];
    const url = await serve((res) => {
      if (res.req.url === '/held') held.push(res);
      else res.end('{"ok":1}');
    });
    const stop = new AbortController();
    const slow = Array.from({ length: 70 }, () => postBytes(`${url}held`, {}, '{}', { timeoutMs: 60_000, signal: stop.signal }).catch(() => undefined));
    try {
      await vi.waitFor(() => { expect(held).toHaveLength(70); }, { timeout: 10_000 });
      // No connection limit keeps it waiting behind the held ones (it used to time out in the queue).
      const fast = await postBytes(`${url}fast`, {}, '{}', { timeoutMs: 5_000 });
      expect(fast.body.toString()).toBe('{"ok":1}');
    } finally {
      stop.abort(new Error('test over'));
      await Promise.all(slow);
    }
  });

  it('refuses a header no request can carry as a configuration error, not a network failure to retry', async () => {
    const url = await serve((res) => { res.end('{}'); });
    const sent = postBytes(url, { 'x-gewe-token': 'SECRET-VALUE\n' }, '{}', { timeoutMs: 5_000 });
    await expect(sent).rejects.toMatchObject({ code: 'MSGPIPE_ERR_CONFIG', retriable: false });
    await expect(sent).rejects.not.toBeInstanceOf(TransientError);
    // Nor does the message carry the token.
    await expect(sent).rejects.not.toThrow(/SECRET-VALUE/);
  });
});
