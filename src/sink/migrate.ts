/**
 * Forward-only schema migrations (DESIGN §5): `migrations/NNNN_<verb>_<object>.sql`, one
 * statement per file, applied in version order and recorded in `schema_migrations` with the
 * sha256 of the file.
 *
 * Table `schema_migrations` (created here, not by a migration, since it records them):
 *   version UInt32, name String, checksum String (sha256 hex of the file bytes),
 *   applied_at DateTime64(3, 'UTC').
 *
 * Rules: a recorded file whose bytes changed, a recorded version with no file, two files with one
 * version, or a file with more than one statement stop the run with MSGPIPE_ERR_MIGRATION before
 * anything is applied. Re-running applies nothing. Statements use unqualified table names and run
 * with the store's database as the current database, so the same files serve chDB and a server.
 * Each statement is written to be safe to repeat (`IF NOT EXISTS`), so a crash between applying
 * and recording heals on the next run.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';

import { MsgpipeError } from '../core/errors.ts';
import type { Store } from './clickhouse.ts';

/** The migrations shipped with the package (`<package>/migrations`, from src/sink or dist/sink). */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** `0001_create_messages.sql`: four digits, then `<verb>_<object>` in lower snake case. */
const FILE_NAME = /^(\d{4})_([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\.sql$/;

/** A migration file as read from disk. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly checksum: string;
  readonly sql: string;
}

export interface MigrateOptions {
  /** Directory of the migration files; default {@link MIGRATIONS_DIR}. */
  readonly dir?: string;
}

/** What a run did. */
export interface MigrateResult {
  /** Versions applied by this run, in order. */
  readonly applied: readonly number[];
  /** Versions that were already recorded. */
  readonly alreadyApplied: readonly number[];
}

const CREATE_SCHEMA_MIGRATIONS = `CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY version`;

function migrationError(message: string, details?: Record<string, string | number>): MsgpipeError {
  return new MsgpipeError('MSGPIPE_ERR_MIGRATION', message, details === undefined ? {} : { details });
}

/**
 * Removes comments and string literals and returns what is left, to count statements.
 * ClickHouse SQL: `--` and `#` line comments, `/* *\/` block comments, '…', "…" and `…` quoting
 * with backslash or doubled-quote escapes.
 */
function codeOnly(sql: string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i] ?? '';
    const next = sql[i + 1] ?? '';
    if ((c === '-' && next === '-') || c === '#') {
      while (i < sql.length && sql[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? sql.length : end + 2;
    } else if (c === "'" || c === '"' || c === '`') {
      i++;
      while (i < sql.length) {
        if (sql[i] === '\\') i += 2;
        else if (sql[i] === c && sql[i + 1] === c) i += 2;
        else if (sql[i] === c) break;
        else i++;
      }
      i++;
      out += ' ';
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Parses one migration file; exported for tests. */
export function parseMigration(fileName: string, bytes: Buffer): Migration {
  const match = FILE_NAME.exec(fileName);
  if (!match) {
    throw migrationError(`Migration file "${fileName}" is not named NNNN_<verb>_<object>.sql.`, { file: fileName });
  }
  const text = bytes.toString('utf8');
  const sql = text.trim().replace(/;\s*$/, '');
  const code = codeOnly(sql).trim();
  if (code === '') throw migrationError(`Migration "${fileName}" is empty.`, { file: fileName });
  if (code.includes(';')) {
    throw migrationError(`Migration "${fileName}" holds more than one statement.`, { file: fileName });
  }
  return {
    version: Number(match[1]),
    name: match[2] ?? '',
    checksum: createHash('sha256').update(bytes).digest('hex'),
    sql,
  };
}

/** Reads and checks every `*.sql` file of `dir`, ordered by version. */
export async function readMigrations(dir: string = MIGRATIONS_DIR): Promise<Migration[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const migrations: Migration[] = [];
  const seen = new Map<number, string>();
  for (const file of files) {
    const migration = parseMigration(file, await readFile(`${dir.replace(/\/$/, '')}/${file}`));
    const other = seen.get(migration.version);
    if (other !== undefined) {
      throw migrationError(`Migrations "${other}" and "${file}" share version ${migration.version}.`, {
        version: migration.version,
      });
    }
    seen.set(migration.version, file);
    migrations.push(migration);
  }
  return migrations;
}

interface AppliedRow {
  readonly version: number;
  readonly name: string;
  readonly checksum: string;
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`, in version order.
 *
 * Not safe against a second process migrating the same database at the same instant beyond what
 * `IF NOT EXISTS` gives (both would apply and record; the duplicate record is harmless).
 *
 * @throws MsgpipeError MSGPIPE_ERR_MIGRATION when a recorded migration changed or vanished, or a
 *   file is malformed; MSGPIPE_ERR_CLICKHOUSE when a statement fails (the run stops there; what
 *   was applied before stays recorded).
 */
export async function migrate(store: Store, log: Logger, options: MigrateOptions = {}): Promise<MigrateResult> {
  const migrations = await readMigrations(options.dir);
  await store.command(CREATE_SCHEMA_MIGRATIONS);
  // The first record of a version wins: a later duplicate can only come from a concurrent run.
  const rows = await store.query<AppliedRow>(
    `SELECT version, argMin(name, applied_at) AS name, argMin(checksum, applied_at) AS checksum
     FROM schema_migrations GROUP BY version ORDER BY version`,
  );
  const applied = new Map(rows.map((r) => [r.version, r]));
  const byVersion = new Map(migrations.map((m) => [m.version, m]));

  // Validate everything before applying anything.
  for (const [version, row] of applied) {
    const file = byVersion.get(version);
    if (file === undefined) {
      throw migrationError(
        `Migration ${version} (${row.name}) is recorded in the database but missing here; refusing to run an older schema.`,
        { version },
      );
    }
    if (file.checksum !== row.checksum) {
      throw migrationError(
        `Migration ${version} (${row.name}) was changed after it was applied; add a new migration instead.`,
        { version, recorded: row.checksum, found: file.checksum },
      );
    }
  }

  const done: number[] = [];
  for (const migration of migrations) {
    if (applied.has(migration.version)) continue;
    const started = Date.now();
    await store.command(migration.sql);
    await store.insert(
      'schema_migrations',
      [{ version: migration.version, name: migration.name, checksum: migration.checksum, applied_at: Date.now() }],
      { dedupToken: `schema_migrations:${migration.version}:${migration.checksum}` },
    );
    done.push(migration.version);
    log.info(
      { version: migration.version, migration: migration.name, ms: Date.now() - started },
      'Migration applied.',
    );
  }
  if (done.length === 0) log.debug({ versions: migrations.length }, 'Schema is up to date.');
  return { applied: done, alreadyApplied: [...applied.keys()] };
}
