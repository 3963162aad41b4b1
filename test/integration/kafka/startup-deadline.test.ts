/**
 * A stop during start-up with the broker hung: a sink+transform process with two consumers per
 * role is stopped while its second transform consumer joins, and the broker answers nothing.
 * The sink's consumers and the transform's started one each wait out their 20 s drain; side by
 * side the start-up ends within the drain, where one after the other they took 40 s and the
 * process missed its 30 s deadline (exit 70).
 */
import { rm } from 'node:fs/promises';
import { Writable } from 'node:stream';

import { pino } from 'pino';
import { describe, expect, it } from 'vitest';

import { parseConfig } from '../../../src/core/config.ts';
import { startDistributed } from '../../../src/kafka/roles.ts';
import { uniqueTopic, useOwnBroker } from '../../helpers/kafka.ts';
import { waitFor } from '../../helpers/msgpipe.ts';
import { openTempStore } from '../../unit/sink/helpers.ts';

const own = useOwnBroker();

describe('a stop during start-up with the broker hung', () => {
  it('drains the roles already started beside the one starting, within one drain time', async () => {
    const prefix = uniqueTopic('mpdead');
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    }));
    // Closed by the process's stop; only its directory is left to remove.
    const temp = await openTempStore();
    const config = parseConfig({ kafka: { brokers: own.brokers, topicPrefix: prefix, partitions: 2, consumers: 2 } }, {});
    const stop = new AbortController();
    const started = startDistributed({ config, roles: ['sink', 'transform'], log, signal: stop.signal, openStore: () => Promise.resolve(temp.store) });
    const outcome = started.then(
      () => 'resolved',
      (err: unknown) => (err instanceof Error ? err.message : String(err)),
    );
    let frozen = false;
    try {
      // The sink started (both consumers), the transform's first consumer joined: its second is joining.
      await waitFor(() => lines.some((l) => l.includes('Consumer has joined the group') && l.includes(`${prefix}.transform`)), 90_000, 'the first transform consumer to join');
      await own.freeze();
      frozen = true;
      const stoppedAt = Date.now();
      stop.abort();
      expect(await outcome).toBe('resolved');
      const took = Date.now() - stoppedAt;
      // One drain (20 s) and the leave's bound, well inside the 30 s deadline; not two drains.
      expect(took).toBeLessThan(27_000);
      expect(lines.join('')).toContain('Stopped during start-up');
    } finally {
      if (frozen) await own.thaw();
      await rm(temp.dir, { recursive: true, force: true });
    }
  }, 150_000);
});
