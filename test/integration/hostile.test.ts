/**
 * Hostile input through the whole pipeline: every poison item becomes a dead letter with its
 * original bytes (or, where it is legal after all, a row), nothing crashes, and the messages
 * around it are stored.
 */
import { describe, expect, it } from 'vitest';

import { HOSTILE_KINDS, startSimulator } from '../../src/simulate/index.ts';
import { sql, startMsgpipe, waitFor, withTempDir, writeConfig } from '../helpers/msgpipe.ts';

interface DeadLetter {
  stage: string;
  error_code: string;
  original_base64: string;
}

/** The dead-letter code each hostile kind must get. */
const EXPECTED_CODE: Partial<Record<(typeof HOSTILE_KINDS)[number], string>> = {
  billion_laughs: 'MSGPIPE_ERR_XML_DTD',
  xxe: 'MSGPIPE_ERR_XML_DTD',
  invalid_utf8: 'MSGPIPE_ERR_UTF8',
  deep_xml: 'MSGPIPE_ERR_XML_LIMIT',
  wrong_types: 'MSGPIPE_ERR_SHAPE',
};

describe('hostile input', () => {
  it('dead-letters every poison item with its original bytes and stores everything around it', async () => {
    await withTempDir('hostile', async (dir) => {
      const sim = await startSimulator({
        accounts: [{ provider: 'gewe', id: 'g1', token: 'tok', appId: 'wx_g1', messages: 400, ratePerSec: 0.001, backlog: 100, pageSize: 25 }],
      });
      try {
        const poison = HOSTILE_KINDS.map((kind) => sim.injectHostile('g1', kind));
        sim.releaseMessages('g1', 100);
        const configFile = await writeConfig(dir, {
          tenants: [{ id: 'corp1', secret: 's' }],
          sources: [{ type: 'gewe', name: 'g1', tenant: 'corp1', baseUrl: sim.url, token: 'tok', appId: 'wx_g1', pollIntervalMs: 100 }],
          clickhouse: { path: `${dir}/ch` },
          sink: { maxAgeMs: 200 },
          // The poison is transformed in a worker thread: its dead letters cross back with their bytes.
          transform: { workers: 1 },
          query: { port: 0 },
        });
        const proc = startMsgpipe(['run', '--config', configFile]);
        await waitFor(() => sim.received('g1').at(-1)?.outcome === 'caught_up', 60_000, 'the pipeline to catch up');
        proc.child.kill('SIGTERM');
        expect(await proc.exited).toBe(0);

        const letters = await sql<DeadLetter>(configFile, 'SELECT stage, error_code, original_base64 FROM dead_letters');
        const messages = await sql<{ msgid: string }>(configFile, 'SELECT msgid FROM messages');
        const stored = new Set(messages.map((m) => m.msgid));
        for (const item of poison) {
          const letter = letters.find((l) => Buffer.from(l.original_base64, 'base64').includes(item.newMsgId));
          const code = EXPECTED_CODE[item.kind];
          if (code !== undefined) {
            expect(letter, item.kind).toBeDefined();
            expect(letter!.error_code, item.kind).toBe(code);
            expect(letter!.stage).toBe('transform');
            expect(stored.has(item.newMsgId), item.kind).toBe(false);
          } else {
            // A 5 MB text or a lone surrogate is legal JSON: stored as a row or kept as a dead letter, never lost.
            expect(letter !== undefined || stored.has(item.newMsgId), item.kind).toBe(true);
          }
        }
        const invalid = letters.find((l) => l.error_code === 'MSGPIPE_ERR_UTF8')!;
        expect([...Buffer.from(invalid.original_base64, 'base64')]).toEqual(expect.arrayContaining([0xff, 0xc3, 0x28]));
        // Every ordinary message, before and after the poison, is stored.
        const expected = sim.expected('g1').filter((m) => m.destination === 'messages');
        expect(expected.length).toBeGreaterThan(150);
        for (const m of expected) expect(stored.has(m.msgid)).toBe(true);
      } finally {
        await sim.close();
      }
    });
  });
});
