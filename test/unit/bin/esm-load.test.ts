/**
 * Every module loads under Node's own ES module loader, as the built CLI runs. Vitest resolves
 * imports itself, so a named import that Node refuses (a CommonJS package such as kafkajs shows
 * Node only some of its exports by name) passed every test while `msgpipe` did not start.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { ROOT } from '../../helpers/msgpipe.ts';

/** Modules that act when loaded: the CLI entry point, and the transform's worker thread. */
const ACTS_ON_LOAD = new Set([join('src', 'bin', 'main.ts'), join('src', 'transform', 'thread.ts')]);

describe('the modules under Node', () => {
  it('all load with Node resolving their imports (tsx only strips the types)', async () => {
    const modules = readdirSync(join(ROOT, 'src'), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .map((f) => join('src', f))
      .filter((f) => !ACTS_ON_LOAD.has(f));
    expect(modules.length).toBeGreaterThan(100);
    const urls = modules.map((f) => pathToFileURL(join(ROOT, f)).href);
    const script = `for (const url of ${JSON.stringify(urls)}) await import(url); console.log('loaded');`;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: ROOT });
    expect(stdout.trim()).toBe('loaded');
  }, 60_000);
});
