/**
 * The query API over a real socket in real processes: `msgpipe demo` prints signed curl
 * examples that work against it while it runs; then `msgpipe run` (all roles by default) serves
 * the same store, answering URLs signed by `msgpipe sign`, and stops cleanly on SIGTERM.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { BIN, ROOT, startMsgpipe, waitFor, withTempDir } from '../helpers/msgpipe.ts';

const execFileAsync = promisify(execFile);

interface Envelope {
  code: number;
  message: string;
  data: { items: Record<string, unknown>[]; total: number } | null;
}

async function getJson(url: string): Promise<{ status: number; body: Envelope }> {
  const res = await fetch(url);
  return { status: res.status, body: (await res.json()) as Envelope };
}

async function signCli(tenant: string, secret: string, path: string): Promise<string> {
  const { stdout } = await execFileAsync(process.execPath, [BIN, 'sign', '--tenant', tenant, '--secret', secret, path], { cwd: ROOT });
  return stdout.trim();
}

describe('query API in real processes', () => {
  it('demo prints working signed requests; run serves the store with signed URLs', async () => {
    await withTempDir('query', async (dir) => {
      const demoRequests: string[] = [];
      const demo = startMsgpipe(['demo', '--data', dir, '--port', '0', '--query-port', '0', '--messages', '300', '--duration', '120']);
      try {
        await waitFor(() => demo.stdout().includes('The API is described at'), 90_000, 'the demo to print its examples');
        const out = demo.stdout();
        const curls = out.split('\n').filter((l) => l.trim().startsWith("curl '")).map((l) => /curl '([^']+)'/.exec(l)![1]!);
        expect(curls).toHaveLength(3);
        const base = new URL(curls[0]!).origin;
        demoRequests.push(curls[0]!);
        for (const url of curls) {
          const res = await getJson(url);
          expect(res.status, url).toBe(200);
          expect(res.body.code, url).toBe(0);
          expect(res.body.data!.total, url).toBeGreaterThan(0);
          for (const item of res.body.data!.items) expect(item['ext_corp_id']).toBe('demo');
        }
        // The POST /sync example, as printed.
        const post = /-d '([^']+)' '([^']+)'/.exec(out.split('\n').find((l) => l.includes('-X POST'))!)!;
        const sync = await fetch(post[2]!, { method: 'POST', headers: { 'content-type': 'application/json' }, body: post[1]! });
        expect(await sync.json()).toEqual({ code: 0, message: '同步任务已启动', data: null });
        // A changed byte: refused, no data.
        const forged = await getJson(curls[1]!.replace('page_size=20', 'page_size=21'));
        expect(forged.status).toBe(401);
        expect(forged.body.data).toBeNull();
        // The OpenAPI document.
        const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { openapi: string };
        expect(doc.openapi).toBe('3.1.0');
      } finally {
        demo.child.kill('SIGTERM');
        expect(await demo.exited).toBe(0);
      }

      // `msgpipe run` on the demo's store (its simulators are gone; the stored data is served).
      const demoRequest = new URL(demoRequests[0] ?? 'http://127.0.0.1/no-request-printed');
      demoRequest.searchParams.delete('signature');
      const run = startMsgpipe(['run', '--config', join(dir, 'msgpipe.yaml')]);
      try {
        await waitFor(() => run.stderr().includes('Query API listening.'), 60_000, 'the query API to listen');
        const line = run.stderr().split('\n').find((l) => l.includes('Query API listening.'))!;
        const url = (JSON.parse(line) as { url: string }).url;
        const signed = await signCli('demo', 'demo-secret-change-me', '/api/v1/chat-msg/sessions?session_type=external&ext_staff_id=nobody');
        const empty = await getJson(`${url}${signed}`);
        expect(empty.body).toMatchObject({ code: 0, data: { total: 0, items: [] } });
        // The demo's first example request, signed anew: what the demo stored is served.
        const stored = await getJson(`${url}${await signCli('demo', 'demo-secret-change-me', `${demoRequest.pathname}${demoRequest.search}`)}`);
        expect(stored.body.code).toBe(0);
        expect(stored.body.data!.total).toBeGreaterThan(0);
        expect(stored.body.data!.items.length).toBeGreaterThan(0);
        for (const item of stored.body.data!.items) expect(item['ext_corp_id']).toBe('demo');
        const wrongSecret = await signCli('demo', 'not-the-secret', '/api/v1/chat-msg/sessions?session_type=external&ext_staff_id=nobody');
        expect((await getJson(`${url}${wrongSecret}`)).status).toBe(401);
        // Neither the secret nor a signature appears in the logs.
        expect(run.stderr()).not.toContain('demo-secret-change-me');
        expect(run.stderr()).not.toContain(signed.split('signature=')[1]!);
      } finally {
        run.child.kill('SIGTERM');
        expect(await run.exited).toBe(0);
      }
    });
  });
});
