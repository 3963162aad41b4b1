import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, describe, expect, it } from 'vitest';

import { openConfiguredStore } from '../../../src/bin/run.ts';
import { parseConfig } from '../../../src/core/config.ts';
import type { Store } from '../../../src/sink/clickhouse.ts';
import { applyEmbeddedTableSettings } from '../../../src/sink/embedded-settings.ts';
import { openTempStore, silent, type TempStore } from './helpers.ts';

/** The merge bound `messages` carries in its definition, or undefined. */
async function mergeBound(store: Store): Promise<number | undefined> {
  const [row] = await store.query<{ definition: string }>(
    "SELECT create_table_query AS definition FROM system.tables WHERE database = currentDatabase() AND name = 'messages'",
  );
  const found = /max_bytes_to_merge_at_max_space_in_pool = (\d+)/.exec(row?.definition ?? '');
  return found === null ? undefined : Number(found[1]);
}

describe('applyEmbeddedTableSettings', () => {
  let temp: TempStore | undefined;
  afterEach(async () => {
    await temp?.dispose();
    temp = undefined;
  });

  it('sets the merge bound of messages on chDB to the configured value, and only when it differs', async () => {
    temp = await openTempStore();
    expect(await mergeBound(temp.store)).toBeUndefined();
    expect(await applyEmbeddedTableSettings(temp.store, 33_554_432, silent)).toBe(true);
    expect(await mergeBound(temp.store)).toBe(33_554_432);
    expect(await applyEmbeddedTableSettings(temp.store, 33_554_432, silent)).toBe(false);
    // A changed configuration wins over what the table holds, and 0 gives ClickHouse's default back.
    expect(await applyEmbeddedTableSettings(temp.store, 1_000_000, silent)).toBe(true);
    expect(await mergeBound(temp.store)).toBe(1_000_000);
    expect(await applyEmbeddedTableSettings(temp.store, 0, silent)).toBe(true);
    expect(await mergeBound(temp.store)).toBeUndefined();
    expect(await applyEmbeddedTableSettings(temp.store, 0, silent)).toBe(false);
  });

  it('does nothing before the migrations, nor on a ClickHouse server', async () => {
    temp = await openTempStore({ migrate: false });
    expect(await applyEmbeddedTableSettings(temp.store, 33_554_432, silent)).toBe(false);

    const calls: string[] = [];
    const server = {
      backend: 'server',
      query: (sql: string) => { calls.push(sql); return Promise.resolve([]); },
      command: (sql: string) => { calls.push(sql); return Promise.resolve(); },
    } as unknown as Store;
    expect(await applyEmbeddedTableSettings(server, 33_554_432, silent)).toBe(false);
    expect(calls).toEqual([]);
  });

  it('is applied with the migrations when a command opens the embedded store, 32 MiB by default', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'msgpipe-embedded-'));
    const open = async (clickhouse: Record<string, unknown>): Promise<number | undefined> => {
      const config = parseConfig({
        clickhouse: { path: dir, ...clickhouse },
        tenants: [{ id: 'corp123', secret: 'embedded-settings-test-secret-0123456789' }],
        sources: [{ type: 'gewe', name: 'shop-a', tenant: 'corp123', baseUrl: 'http://127.0.0.1:9', token: 't', appId: 'wx_shop_a' }],
      });
      const store = await openConfiguredStore(config, silent, { migrate: true });
      try {
        return await mergeBound(store);
      } finally {
        await store.close();
      }
    };
    try {
      expect(await open({})).toBe(32 * 1024 * 1024);
      expect(await open({ maxMergeBytes: 67_108_864 })).toBe(67_108_864);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
