import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { openConfiguredStore } from '../../../src/bin/run.ts';
import { parseConfig } from '../../../src/core/config.ts';
import { mergeBound, silent } from '../sink/helpers.ts';

describe('openConfiguredStore on the embedded engine', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'msgpipe-open-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  /** Opens the store at `dir` as a command does, and reads the merge bound of `messages`. */
  async function open(clickhouse: Record<string, unknown>, migrate: boolean): Promise<number | undefined> {
    const config = parseConfig({
      clickhouse: { path: dir, ...clickhouse },
      tenants: [{ id: 'corp123', secret: 'open-store-test-secret-0123456789' }],
      sources: [{ type: 'gewe', name: 'shop-a', tenant: 'corp123', baseUrl: 'http://127.0.0.1:9', token: 't', appId: 'wx_shop_a' }],
    });
    const store = await openConfiguredStore(config, silent, { migrate });
    try {
      return await mergeBound(store);
    } finally {
      await store.close();
    }
  }

  it('bounds the merges of messages with the migrations, 32 MiB unless configured, and follows a changed configuration', async () => {
    expect(await open({}, true)).toBe(32 * 1024 * 1024);
    expect(await open({ maxMergeBytes: 67_108_864 }, true)).toBe(67_108_864);
    expect(await open({ maxMergeBytes: 0 }, true)).toBeUndefined();
  });

  it('leaves the table alone when it does not migrate (msgpipe sql)', async () => {
    expect(await open({ maxMergeBytes: 67_108_864 }, true)).toBe(67_108_864);
    expect(await open({}, false)).toBe(67_108_864);
  });
});
