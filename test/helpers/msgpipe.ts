/**
 * Helpers that run the real `msgpipe` executable (bin/msgpipe.js → dist/) as child processes.
 *
 * `npm test` builds dist/ before vitest runs. The embedded store allows one process per data
 * directory, so results are read with `msgpipe sql` once the pipeline process has exited.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { stringify } from 'yaml';

const execFileAsync = promisify(execFile);

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const BIN = join(ROOT, 'bin', 'msgpipe.js');

/** A temporary directory removed after `fn`, whatever happens. */
export async function withTempDir<T>(prefix: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), `msgpipe-${prefix}-`));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Writes a configuration object as YAML and returns its path. */
export async function writeConfig(dir: string, config: unknown): Promise<string> {
  const file = join(dir, 'msgpipe.yaml');
  await writeFile(file, stringify(config));
  return file;
}

/** A running `msgpipe` process with its output collected. */
export interface MsgpipeProcess {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  readonly exited: Promise<number | string>;
}

/** Starts `msgpipe <args>` in its own process group. */
export function startMsgpipe(args: readonly string[], env: NodeJS.ProcessEnv = {}): MsgpipeProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: { ...process.env, MSGPIPE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => { resolve(code ?? signal ?? -1); });
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** The operations listener URL from the "Operations listener started." log line (info level). */
export function listenerUrl(proc: MsgpipeProcess): string | undefined {
  for (const line of proc.stderr().split('\n')) {
    if (!line.includes('Operations listener started.')) continue;
    const { url } = JSON.parse(line) as { url?: string };
    return url;
  }
  return undefined;
}

/** Runs `msgpipe sql` and returns the rows. */
export async function sql<T = Record<string, unknown>>(configFile: string, query: string): Promise<T[]> {
  const { stdout } = await execFileAsync(process.execPath, [BIN, 'sql', '--config', configFile, '--format', 'jsonl', query], {
    cwd: ROOT,
    env: { ...process.env, MSGPIPE_LOG_LEVEL: 'warn' },
    maxBuffer: 256 * 1024 * 1024,
  });
  return stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as T);
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
