import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';

import type { Store } from '../../../src/sink/clickhouse.ts';
import { applyEmbeddedTableSettings } from '../../../src/sink/embedded-settings.ts';
import { mergeBound, openTempStore, silent, type TempStore } from './helpers.ts';

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

  it('logs the bound it set, once, and nothing when the table already has it', async () => {
    temp = await openTempStore();
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line) as Record<string, unknown>); } });
    await applyEmbeddedTableSettings(temp.store, 33_554_432, log);
    await applyEmbeddedTableSettings(temp.store, 33_554_432, log);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, msg: 'Set the merge bound of messages for the embedded engine.', max_bytes_to_merge_at_max_space_in_pool: 33_554_432 });
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

  it('reads a value an operator set as a string, and resets it', async () => {
    temp = await openTempStore();
    await temp.store.command("ALTER TABLE messages MODIFY SETTING max_bytes_to_merge_at_max_space_in_pool = '20000000'");
    expect(await applyEmbeddedTableSettings(temp.store, 20_000_000, silent)).toBe(false);
    expect(await applyEmbeddedTableSettings(temp.store, 0, silent)).toBe(true);
    expect(await mergeBound(temp.store)).toBeUndefined();
  });
});
