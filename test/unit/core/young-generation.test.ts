/**
 * Node 24's young generation capped at Node 20's size for `run` and `demo` (ADR 0020): the
 * decision, and a real process started again with the flag, on whichever Node runs the tests
 * (CI runs the unit tests on Node 20 and on Node 24, and this file on Node 22).
 */
import { execFile, fork } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { describe, expect, it } from 'vitest';

import { heapSizingMemory, nodeTwentySemiSpaceMib, relaunchArgs, type RelaunchFacts } from '../../../src/core/young-generation.ts';
import { ROOT } from '../../helpers/msgpipe.ts';

const execFileAsync = promisify(execFile);
const MIB = 1024 ** 2;
const GIB = 1024 ** 3;

const facts = (over: Partial<RelaunchFacts> = {}): RelaunchFacts => ({
  nodeVersion: '24.11.0',
  execArgv: [],
  nodeOptions: undefined,
  memoryBytes: 16 * GIB,
  args: ['run', '--config', 'msgpipe.yaml'],
  hasIpcChannel: false,
  ...over,
});

describe('relaunchArgs', () => {
  it('adds the semi-space size for `run` and `demo` on Node 24, keeping the other Node options', () => {
    expect(relaunchArgs(facts({ execArgv: ['--enable-source-maps'] }))).toEqual(['--max-semi-space-size=16', '--enable-source-maps']);
    expect(relaunchArgs(facts({ nodeVersion: '25.2.1', args: ['demo'] }))).toEqual(['--max-semi-space-size=16']);
  });

  it('leaves Node 20 and 22 alone: they already give the smaller size', () => {
    expect(relaunchArgs(facts({ nodeVersion: '20.20.2' }))).toBeUndefined();
    expect(relaunchArgs(facts({ nodeVersion: '22.23.3' }))).toBeUndefined();
  });

  it('leaves short commands alone', () => {
    for (const args of [['sql', 'SELECT 1'], ['migrate'], ['simulate'], ['--help'], []]) expect(relaunchArgs(facts({ args }))).toBeUndefined();
  });

  it("keeps an operator's own size, on the command line or in NODE_OPTIONS, in either spelling, quoted or not", () => {
    expect(relaunchArgs(facts({ execArgv: ['--max-semi-space-size=64'] }))).toBeUndefined();
    expect(relaunchArgs(facts({ execArgv: ['--max_semi_space_size', '8'] }))).toBeUndefined();
    expect(relaunchArgs(facts({ execArgv: ['--min-semi-space-size=32'] }))).toBeUndefined();
    expect(relaunchArgs(facts({ nodeOptions: '--enable-source-maps  --max-semi-space-size=4' }))).toBeUndefined();
    expect(relaunchArgs(facts({ nodeOptions: '"--max-semi-space-size=32"' }))).toBeUndefined();
    // V8 aborts at start on --max-heap-size with both of the others.
    expect(relaunchArgs(facts({ nodeOptions: '--max-heap-size=1024 --max-old-space-size=768' }))).toBeUndefined();
    expect(relaunchArgs(facts({ nodeOptions: '--max-old-space-size=400' }))).toEqual(['--max-semi-space-size=16']);
  });

  it('gives the size Node 20 gives for the memory, and leaves 0.5 GiB and less alone', () => {
    expect(relaunchArgs(facts({ memoryBytes: 2 * GIB + 4096 }))).toEqual(['--max-semi-space-size=16']);
    expect(relaunchArgs(facts({ memoryBytes: 2 * GIB }))).toEqual(['--max-semi-space-size=8']);
    expect(relaunchArgs(facts({ memoryBytes: GIB }))).toEqual(['--max-semi-space-size=4']);
    expect(relaunchArgs(facts({ memoryBytes: 768 * MIB }))).toEqual(['--max-semi-space-size=4']);
    expect(relaunchArgs(facts({ memoryBytes: 512 * MIB }))).toBeUndefined();
  });

  it('leaves a forked child (IPC channel), a process under the inspector and one under the permission model alone', () => {
    expect(relaunchArgs(facts({ hasIpcChannel: true }))).toBeUndefined();
    expect(relaunchArgs(facts({ execArgv: ['--permission', '--allow-fs-read=*'] }))).toBeUndefined();
    expect(relaunchArgs(facts({ execArgv: ['--inspect-brk=0'] }))).toBeUndefined();
    expect(relaunchArgs(facts({ nodeOptions: '--inspect' }))).toBeUndefined();
  });
});

interface Stage {
  readonly stage: 'start' | 'after';
  readonly pid: number;
  readonly execArgv: string[];
  readonly heapSizeLimit: number;
}

/** Runs the fixture with a fixed old generation, so the heap limit minus it is the young generation. */
async function runFixture(command: string, nodeOptions?: string): Promise<{ stages: Stage[]; youngMib: number }> {
  const OLD_MIB = 1024;
  const env = { ...process.env };
  delete env['NODE_OPTIONS'];
  if (nodeOptions !== undefined) env['NODE_OPTIONS'] = nodeOptions;
  const { stdout } = await execFileAsync(
    process.execPath,
    ['--import', 'tsx', `--max-old-space-size=${String(OLD_MIB)}`, join(ROOT, 'test', 'fixtures', 'young-generation', 'relaunch.mts'), command],
    { cwd: ROOT, env },
  );
  const stages = stdout.trim().split('\n').map((l) => JSON.parse(l) as Stage);
  const after = stages.at(-1)!;
  expect(after.stage).toBe('after');
  return { stages, youngMib: after.heapSizeLimit / 1024 ** 2 - OLD_MIB };
}

const major = Number(process.versions.node.split('.')[0]);
const memory = heapSizingMemory();
const semiSpaceMib = nodeTwentySemiSpaceMib(memory);
/** Node 20's young generation for the memory, MiB, as measured (ADR 0020): what `run` must get on any version. */
const NODE_TWENTY_YOUNG_MIB = memory > 2 * GIB ? 48 : memory > GIB ? 24 : memory > 512 * MIB ? 12 : 3;
const execveRelaunches = major >= 24 && typeof (process as { execve?: unknown }).execve === 'function' && semiSpaceMib !== undefined;

describe('relaunchWithSmallYoungGeneration, in a real process', () => {
  it(`gives \`run\` Node 20's young generation on Node ${process.versions.node}`, async () => {
    const { stages, youngMib } = await runFixture('run');
    expect(youngMib).toBe(NODE_TWENTY_YOUNG_MIB);
    if (execveRelaunches) {
      // Started twice in one process: replaced, not a child.
      expect(stages.map((s) => s.stage)).toEqual(['start', 'start', 'after']);
      expect(new Set(stages.map((s) => s.pid)).size).toBe(1);
      expect(stages[1]!.execArgv).toEqual([`--max-semi-space-size=${String(semiSpaceMib)}`, '--import', 'tsx', '--max-old-space-size=1024']);
    } else {
      expect(stages.map((s) => s.stage)).toEqual(['start', 'after']);
    }
  });

  it("keeps an operator's NODE_OPTIONS size", async () => {
    const { stages, youngMib } = await runFixture('run', '--max-semi-space-size=32');
    expect(stages.map((s) => s.stage)).toEqual(['start', 'after']);
    expect(youngMib).toBe(3 * 32);
  });

  it('starts a forked child once, so that its IPC channel to the parent stays', async () => {
    const env = { ...process.env };
    delete env['NODE_OPTIONS'];
    const child = fork(join(ROOT, 'test', 'fixtures', 'young-generation', 'relaunch.mts'), ['run'], { cwd: ROOT, env, execArgv: ['--import', 'tsx'], silent: true });
    let stdout = '';
    child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(stdout.trim().split('\n').map((l) => (JSON.parse(l) as Stage).stage)).toEqual(['start', 'after']);
  });

  it('starts `sql` once, as it is', async () => {
    const { stages } = await runFixture('sql');
    expect(stages.map((s) => s.stage)).toEqual(['start', 'after']);
    expect(stages[0]!.execArgv).toEqual(['--import', 'tsx', '--max-old-space-size=1024']);
  });
});
