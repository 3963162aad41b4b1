import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { loadConfig, parseConfig } from '../../../src/core/config.ts';
import { ConfigError } from '../../../src/core/errors.ts';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('parseConfig', () => {
  it('applies the defaults of DESIGN §7', () => {
    const config = parseConfig({});
    expect(config.clickhouse).toEqual({ path: './data/clickhouse', database: 'msgpipe', maxMergeBytes: 33_554_432 });
    expect(config.query).toEqual({ host: '127.0.0.1', port: 9002, rateLimit: 100, timezone: 'Asia/Shanghai', strict: false });
    expect(config.kafka).toBeUndefined();
    expect(Object.isFrozen(config.query)).toBe(true);
  });

  it('leaves transform.workers to the machine unless set, and bounds it', () => {
    expect(parseConfig({}).transform.workers).toBeUndefined();
    expect(parseConfig({ transform: { workers: 0 } }).transform.workers).toBe(0);
    expect(parseConfig({ transform: { workers: 4 } }).transform.workers).toBe(4);
    expect(problemsOf(() => parseConfig({ transform: { workers: 17 } })).join('\n')).toContain('transform.workers');
    expect(problemsOf(() => parseConfig({ transform: { workers: 1.5 } })).join('\n')).toContain('transform.workers');
    expect(problemsOf(() => parseConfig({ transform: { threads: 2 } })).join('\n')).toContain('threads');
  });

  it('refuses an unknown query time zone', () => {
    expect(() => parseConfig({ query: { timezone: 'Mars/Olympus' } })).toThrow(/query\.timezone: not a time zone name/);
    expect(() => parseConfig({ clickhouse: { maxMergeBytes: 1_000_000 } })).toThrow(/clickhouse\.maxMergeBytes: use 0 .* or at least 8388608/);
    expect(parseConfig({ clickhouse: { maxMergeBytes: 0 } }).clickhouse.maxMergeBytes).toBe(0);
  });

  it('refuses a tenant secret of only whitespace', () => {
    expect(() => parseConfig({ tenants: [{ id: 't', secret: '${S}' }] }, { S: '  \t' })).toThrow(/tenants\[0\]\.secret: a secret of only whitespace is no secret/);
    expect(parseConfig({ tenants: [{ id: 't', secret: ' s ' }] }).tenants[0]?.secret).toBe(' s ');
  });

  it('reads a comma list of brokers in one item (KAFKA_BROKERS in deploy/msgpipe.yaml) and refuses what is not host:port', () => {
    const config = parseConfig({ kafka: { brokers: ['${KAFKA_BROKERS}', 'k3:9094'] } }, { KAFKA_BROKERS: '127.0.0.1:9092, kafka-2:9093,' });
    expect(config.kafka?.brokers).toEqual(['127.0.0.1:9092', 'kafka-2:9093', 'k3:9094']);
    expect(() => parseConfig({ kafka: { brokers: ['kafka'] } })).toThrow(/kafka\.brokers\[0\]: a broker is host:port \(port 1-65535; no IPv6 address literal\), not "kafka"/);
    expect(() => parseConfig({ kafka: { brokers: ['[::1]:9092'] } })).toThrow(/kafka\.brokers\[0\]: .* not "\[::1\]:9092"/);
    expect(() => parseConfig({ kafka: { brokers: ['a:9092,b:70000'] } })).toThrow(/kafka\.brokers\[1\]: .* not "b:70000"/);
    expect(() => parseConfig({ kafka: { brokers: [' , '] } })).toThrow(/kafka\.brokers/);
  });

  it('interpolates ${ENV} and keeps $${X} literal', () => {
    const config = parseConfig(
      {
        tenants: [{ id: 'corp123', secret: '${SECRET}' }],
        sources: [{ type: 'gewe', name: 'shop-a', tenant: 'corp123', baseUrl: 'http://127.0.0.1:8801', token: 'Bearer ${TOKEN}', appId: '$${APP}' }],
      },
      { SECRET: 'k', TOKEN: 'abc' },
    );
    expect(config.tenants[0]!.secret).toBe('k');
    expect(config.sources[0]!.token).toBe('Bearer abc');
    expect(config.sources[0]).toMatchObject({ appId: '${APP}', pollIntervalMs: 1000 });
  });

  it('refuses a ${…} that is not a plain variable reference instead of keeping its text as the value', () => {
    const problems = problemsOf(() =>
      parseConfig(
        {
          tenants: [
            { id: 'a', secret: '${SECRET:-changeme}' },
            { id: 'b', secret: '${SECRET-CORP}' },
            { id: 'c', secret: '${ SECRET }' },
            { id: 'd', secret: 'pre-${SECRET' },
            { id: 'e', secret: '${constructor}' },
            { id: 'f', secret: '${EMPTY}' },
          ],
          sources: [{ type: 'gewe', name: 's', tenant: 'a', baseUrl: '${NO_URL}', token: 't', appId: 'x' }],
        },
        { SECRET: 'from-env', EMPTY: '' },
      ),
    );
    expect(problems).toEqual([
      'tenants[0].secret: "${SECRET:-changeme}" is not a variable reference: write ${NAME} (letters, digits and "_"), or $${ for a literal "${"',
      'tenants[1].secret: "${SECRET-CORP}" is not a variable reference: write ${NAME} (letters, digits and "_"), or $${ for a literal "${"',
      'tenants[2].secret: "${ SECRET }" is not a variable reference: write ${NAME} (letters, digits and "_"), or $${ for a literal "${"',
      'tenants[3].secret: "${SECRET" is not a variable reference: write ${NAME} (letters, digits and "_"), or $${ for a literal "${"',
      // Not Object.prototype.constructor: only the environment's own variables.
      'tenants[4].secret: environment variable constructor is not set',
      'tenants[5].secret: environment variable EMPTY is empty',
      // One problem per value: not also "Invalid URL" for the '' left in its place.
      'sources[0].baseUrl: environment variable NO_URL is not set',
    ]);
    expect(parseConfig({ tenants: [{ id: 'a', secret: '$${SECRET:-x}' }] }, {}).tenants[0]!.secret).toBe('${SECRET:-x}');
  });

  it('reads only the sections asked for, still naming keys it does not know', () => {
    const raw = {
      tenants: [{ id: 'corp123', secret: '${UNSET_SECRET}' }],
      sources: [{ type: 'gewe', name: 's', tenant: 'corp123', baseUrl: '${UNSET_URL}', token: '${UNSET_TOKEN}', appId: 'x' }],
      clickhouse: { path: '${STORE}' },
    };
    const config = parseConfig(raw, { STORE: '/srv/store' }, { only: ['clickhouse', 'log'] });
    expect(config.clickhouse.path).toBe('/srv/store');
    expect(config.tenants).toEqual([]);
    expect(problemsOf(() => parseConfig({ ...raw, clickhuose: {} }, {}, { only: ['clickhouse', 'log'] }))).toEqual([
      'clickhouse.path: environment variable STORE is not set',
      '(root): Unrecognized key: "clickhuose"',
    ]);
    // The whole file, as run reads it, needs every variable.
    expect(problemsOf(() => parseConfig(raw, { STORE: '/srv/store' }))).toHaveLength(3);
  });

  it('refuses a token that cannot go out as an HTTP header, such as one read from a file with its newline', () => {
    const source = (token: string): Record<string, unknown> => ({ type: 'gewe', name: 's', tenant: 'corp123', baseUrl: 'http://127.0.0.1:8801', token, appId: 'x' });
    const yunhu = (token: string): Record<string, unknown> => ({ type: 'yunhu', name: 'y', tenant: 'corp123', baseUrl: 'http://127.0.0.1:8802', token, userId: '1' });
    const problems = problemsOf(() =>
      parseConfig({ tenants: [{ id: 'corp123', secret: 'k' }], sources: [source('tok\n'), yunhu(' tok'), { ...source('令牌'), name: 's2' }] }, {}),
    );
    expect(problems.map((p) => p.split(':')[0])).toEqual(['sources[0].token', 'sources[1].token', 'sources[2].token']);
    expect(problems[0]).toContain('visible ASCII only, no white space at either end');
    // Inner spaces are fine (`Bearer …`), and the token stays as written.
    expect(parseConfig({ tenants: [{ id: 'corp123', secret: 'k' }], sources: [source('Bearer a.b-c_d')] }, {}).sources[0]!.token).toBe('Bearer a.b-c_d');
  });

  it('refuses the query API and the operations listener on one port', () => {
    expect(problemsOf(() => parseConfig({ query: { port: 9100 }, metrics: { port: 9100 } }, {}))).toEqual([
      'metrics.port: 9100 is query.port too; the query API and the operations listener need a port each',
    ]);
    expect(problemsOf(() => parseConfig({ query: { port: 9100, host: '0.0.0.0' }, metrics: { port: 9100 } }, {}))).toHaveLength(1);
    // localhost is one of the loopback addresses, whichever the machine binds.
    expect(problemsOf(() => parseConfig({ query: { port: 9100, host: 'localhost' }, metrics: { port: 9100, host: '127.0.0.1' } }, {}))).toHaveLength(1);
    expect(problemsOf(() => parseConfig({ query: { port: 9100, host: '::1' }, metrics: { port: 9100, host: 'LocalHost' } }, {}))).toHaveLength(1);
    expect(parseConfig({ query: { port: 9100, host: '::1' }, metrics: { port: 9100, host: '127.0.0.1' } }, {}).query.port).toBe(9100);
    // Different addresses, port 0 (any free port) or no operations listener: no conflict.
    expect(parseConfig({ query: { port: 9100, host: '127.0.0.2' }, metrics: { port: 9100 } }, {}).query.port).toBe(9100);
    expect(parseConfig({ query: { port: 0 }, metrics: { port: 0 } }, {}).query.port).toBe(0);
    expect(parseConfig({ query: { port: 9100 }, metrics: { port: 9100, enabled: false } }, {}).query.port).toBe(9100);
  });

  it('lists every problem at once', () => {
    const problems = problemsOf(() =>
      parseConfig(
        {
          tenants: [{ id: 'corp123', secret: '${UNSET_SECRET}' }, { id: 'corp123', secret: 'x' }],
          sources: [
            { type: 'gewe', name: 'a', tenant: 'nope', baseUrl: 'ftp://x', token: 't', appId: 'x' },
            { type: 'syncfinder', name: 'a', tenant: 'corp123', baseUrl: 'http://h', token: 't' },
            { type: 'carrier-pigeon', name: 'b', tenant: 'corp123' },
          ],
          query: { port: 'nine' },
          surprise: true,
        },
        {},
      ),
    );
    const text = problems.join('\n');
    expect(text).toContain('tenants[0].secret: environment variable UNSET_SECRET is not set');
    expect(text).toContain('sources[0].baseUrl');
    expect(text).toContain('sources[1].wId');
    expect(text).toContain('sources[2].type');
    expect(text).toContain('query.port');
    expect(text).toContain('surprise');
    expect(problems.length).toBeGreaterThanOrEqual(6);
  });

  it('reports duplicate names and unknown tenants', () => {
    const problems = problemsOf(() =>
      parseConfig({
        tenants: [{ id: 't', secret: 's' }],
        sources: [
          { type: 'gewe', name: 'a', tenant: 't', baseUrl: 'http://h', token: 'x', appId: 'x' },
          { type: 'videosapi', name: 'a', tenant: 'u', baseUrl: 'http://h', token: 'x', appId: 'y' },
        ],
      }),
    );
    expect(problems).toEqual(['sources[1].name: duplicate source name "a"', 'sources[1].tenant: tenant "u" is not listed in tenants']);
  });

  it('lists duplicates and unknown tenants beside the other problems, not only once those are fixed', () => {
    const problems = problemsOf(() =>
      parseConfig({
        tenants: [{ id: 't', secret: 's' }, { id: 't', secret: '' }],
        sources: [
          { type: 'gewe', name: 'a', tenant: 'u', baseUrl: 'not a url', token: 'x', appId: 'x' },
          { type: 'videosapi', name: 'a', tenant: 't', baseUrl: 'http://h', token: 'x', appId: 'y' },
          { type: 'nope', name: 7 },
        ],
        sink: { maxRows: 0 },
      }),
    );
    expect(problems).toEqual(
      expect.arrayContaining([
        'tenants[1].secret: an empty secret would let anyone sign requests',
        'tenants[1].id: duplicate tenant "t"',
        'sources[1].name: duplicate source name "a"',
        'sources[0].tenant: tenant "u" is not listed in tenants',
        expect.stringMatching(/^sources\[0\]\.baseUrl: /),
        expect.stringMatching(/^sources\[2\]\.type: /),
        expect.stringMatching(/^sink\.maxRows: /),
      ]),
    );
  });
});

describe('loadConfig', () => {
  it('reads YAML and reports syntax errors and missing files', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'msgpipe-config-'));
    const good = join(dir, 'good.yaml');
    await writeFile(good, 'clickhouse:\n  database: analytics\nlog:\n  level: warn\n');
    const config = await loadConfig(good, {});
    expect(config.clickhouse.database).toBe('analytics');
    const bad = join(dir, 'bad.yaml');
    await writeFile(bad, 'tenants: [\n');
    await expect(loadConfig(bad, {})).rejects.toBeInstanceOf(ConfigError);
    await expect(loadConfig(join(dir, 'missing.yaml'), {})).rejects.toThrow(/cannot read the file \(ENOENT\)/);
  });

  it('refuses aliases that would expand without end as a configuration error', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'msgpipe-config-'));
    const bomb = join(dir, 'bomb.yaml');
    const levels = ['a: &a [x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 9; i++) levels.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
    await writeFile(bomb, `${levels.join('\n')}\n`);
    const outcome = loadConfig(bomb, {});
    await expect(outcome).rejects.toBeInstanceOf(ConfigError);
    await expect(outcome).rejects.toThrow(/bomb\.yaml: .*alias/i);
  });
});
