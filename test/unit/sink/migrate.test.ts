import { createHash } from 'node:crypto';
import { appendFile, cp, mkdtemp, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterEach, beforeEach, describe, expect, it } from 'vitest';

import { migrate, MIGRATIONS_DIR, parseMigration, readMigrations } from '../../../src/sink/migrate.ts';
import { openTempStore, silent, type TempStore } from './helpers.ts';

describe('migrate', () => {
  let temp: TempStore;
  let dir: string;

  beforeEach(async () => {
    temp = await openTempStore({ migrate: false });
    dir = await mkdtemp(join(tmpdir(), 'msgpipe-migrations-'));
    await cp(MIGRATIONS_DIR, dir, { recursive: true });
  });
  afterEach(async () => {
    await temp.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('applies every migration in order and records version, name and sha256', async () => {
    const files = await readMigrations(dir);
    const result = await migrate(temp.store, silent, { dir });
    expect(result.applied).toEqual(files.map((f) => f.version));
    expect(result.applied[0]).toBe(1);

    const recorded = await temp.store.query<{ version: number; name: string; checksum: string }>(
      'SELECT version, name, checksum FROM schema_migrations ORDER BY version',
    );
    const firstBytes = await readFile(join(dir, '0001_create_messages.sql'));
    expect(recorded[0]).toEqual({
      version: 1,
      name: 'create_messages',
      checksum: createHash('sha256').update(firstBytes).digest('hex'),
    });
    expect(recorded.map((r) => r.version)).toEqual(result.applied);

    const tables = await temp.store.query<{ name: string }>(
      'SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name',
    );
    expect(tables.map((t) => t.name)).toEqual([
      'cursors',
      'dead_letters',
      'events',
      'message_edits',
      'messages',
      'schema_migrations',
      'sessions',
      'sessions_agg',
      'sessions_mv',
    ]);
  });

  it('is idempotent: a second run applies and records nothing', async () => {
    await migrate(temp.store, silent, { dir });
    const again = await migrate(temp.store, silent, { dir });
    expect(again.applied).toEqual([]);
    expect(again.alreadyApplied.length).toBeGreaterThanOrEqual(7);
    const [count] = await temp.store.query<{ c: string }>('SELECT count() AS c FROM schema_migrations');
    expect(Number(count?.c)).toBe(again.alreadyApplied.length);
  });

  it('applies only the new migration when one is added later', async () => {
    await migrate(temp.store, silent, { dir });
    await writeFile(join(dir, '0100_add_messages_note.sql'), "ALTER TABLE messages ADD COLUMN IF NOT EXISTS note String DEFAULT ''\n");
    const result = await migrate(temp.store, silent, { dir });
    expect(result.applied).toEqual([100]);
    const cols = await temp.store.query<{ name: string }>(
      "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'messages' AND name = 'note'",
    );
    expect(cols).toHaveLength(1);
  });

  it('refuses to run when an applied migration was changed, before applying anything', async () => {
    await migrate(temp.store, silent, { dir });
    await appendFile(join(dir, '0005_create_events.sql'), '\n-- edited after the fact\n');
    await writeFile(join(dir, '0100_create_extra.sql'), 'CREATE TABLE extra (a UInt8) ENGINE = MergeTree ORDER BY a');
    await expect(migrate(temp.store, silent, { dir })).rejects.toMatchObject({
      code: 'MSGPIPE_ERR_MIGRATION',
      details: { version: 5 },
    });
    const extra = await temp.store.query("SELECT name FROM system.tables WHERE database = currentDatabase() AND name = 'extra'");
    expect(extra).toEqual([]);
  });

  it('refuses to run an older set of files against a newer schema', async () => {
    await migrate(temp.store, silent, { dir });
    await unlink(join(dir, '0007_create_cursors.sql'));
    await expect(migrate(temp.store, silent, { dir })).rejects.toMatchObject({ code: 'MSGPIPE_ERR_MIGRATION' });
  });
});

describe('parseMigration', () => {
  it('takes one statement, with comments and a trailing semicolon', () => {
    const m = parseMigration('0003_create_x.sql', Buffer.from("-- a; comment\nCREATE TABLE x (s String DEFAULT 'a;b') ENGINE = Memory;\n"));
    expect(m.version).toBe(3);
    expect(m.name).toBe('create_x');
    expect(m.sql.endsWith('ENGINE = Memory')).toBe(true);
  });

  it('rejects two statements, an empty file and a bad name', () => {
    expect(() => parseMigration('0001_create_x.sql', Buffer.from('SELECT 1; SELECT 2'))).toThrow(/more than one statement/);
    expect(() => parseMigration('0001_create_x.sql', Buffer.from('-- nothing\n'))).toThrow(/empty/);
    expect(() => parseMigration('1_x.sql', Buffer.from('SELECT 1'))).toThrow(/NNNN_<verb>_<object>/);
  });
});

describe('shipped migrations', () => {
  it('are well-formed, numbered without gaps and named NNNN_<verb>_<object>.sql', async () => {
    const files = await readMigrations();
    expect(files.map((f) => f.version)).toEqual(files.map((_, i) => i + 1));
    for (const f of files) expect(f.name).toMatch(/^(create|add|drop|alter|modify|rename)_[a-z0-9_]+$/);
  });
});
