/**
 * docker-compose.yml and deploy/ checked without a Docker engine: compose's own variable
 * interpolation applied with deploy/compose.env.example, every msgpipe service's configuration
 * through the real parseConfig, its roles through the real CLI, health checks, Prometheus
 * targets, Grafana provisioning, and every dashboard query run on a migrated chDB store.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';

import { loadConfig } from '../../src/core/config.ts';
import { newSourceStats } from '../../src/ingest/source.ts';
import { Metrics } from '../../src/ops/metrics.ts';
import { SinkWriter } from '../../src/sink/writer.ts';
import { parseMetrics } from '../helpers/metrics.ts';
import { BIN, ROOT } from '../helpers/msgpipe.ts';
import { deadLetter, event, openTempStore, realisticMessages, silent } from '../unit/sink/helpers.ts';

const execFileAsync = promisify(execFile);

/** The roles of DESIGN §7 (`msgpipe run --role`). */
const DESIGN_ROLES = ['ingest', 'transform', 'sink', 'query'];

type Env = Record<string, string>;

interface Healthcheck {
  test?: string[];
  disable?: boolean;
}

interface Service {
  image?: string;
  build?: unknown;
  command?: string[];
  environment?: Record<string, string | number>;
  volumes?: string[];
  ports?: string[];
  restart?: string;
  healthcheck?: Healthcheck;
  depends_on?: Record<string, { condition: string }>;
}

interface Compose {
  services: Record<string, Service>;
}

/** Reads KEY=VALUE lines (comments and blanks skipped), as compose reads `.env`. */
function parseEnvFile(text: string): Env {
  const env: Env = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (m) env[m[1]!] = m[2]!;
  }
  return env;
}

/**
 * Compose's interpolation of one string: `$$` is a literal `$`; `${V}`, `$V`, `${V:-d}`,
 * `${V-d}`, `${V:?err}`, `${V?err}`, `${V:+r}`, `${V+r}`.
 */
function interpolateString(value: string, env: Env, where: string): string {
  return value.replace(
    /\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_whole, dollar: string | undefined, name: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
      if (dollar !== undefined) return '$';
      const key = (name ?? bare)!;
      const v = env[key];
      const unsetOrEmpty = v === undefined || (op?.startsWith(':') === true && v === '');
      if (unsetOrEmpty && (op === ':?' || op === '?')) throw new Error(`${where}: ${arg ?? `${key} is required`}`);
      if (op === ':-' || op === '-') return unsetOrEmpty ? (arg ?? '') : v;
      if (op === ':+' || op === '+') return unsetOrEmpty ? '' : (arg ?? '');
      return v ?? '';
    },
  );
}

function interpolate(value: unknown, env: Env, where = ''): unknown {
  if (typeof value === 'string') return interpolateString(value, env, where);
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, env, `${where}[${i}]`));
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env, where ? `${where}.${k}` : k)]));
  }
  return value;
}

async function readCompose(env: Env): Promise<Compose> {
  const raw: unknown = parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true });
  return interpolate(raw, env) as Compose;
}

function serviceEnv(service: Service): Env {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, String(v)]));
}

function isMsgpipe(service: Service): boolean {
  return service.image === 'msgpipe:local';
}

function runServices(compose: Compose): [string, Service][] {
  return Object.entries(compose.services).filter(([, s]) => isMsgpipe(s) && s.command?.[0] === 'run');
}

/** The port of the first `http://127.0.0.1:<port>/…` a healthcheck probes. */
function probedPort(service: Service): number | undefined {
  const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec((service.healthcheck?.test ?? []).join(' '));
  return m ? Number(m[1]) : undefined;
}

const SECRETS = ['CLICKHOUSE_PASSWORD', 'MSGPIPE_TENANT_SECRET', 'GRAFANA_ADMIN_PASSWORD'];

/** deploy/compose.env.example as copied to .env, read as compose reads it. */
let copiedEnv: Env;
/** The same once the user has set the secrets, as the example asks. */
let exampleEnv: Env;
let compose: Compose;

beforeAll(async () => {
  copiedEnv = parseEnvFile(await readFile(join(ROOT, 'deploy', 'compose.env.example'), 'utf8'));
  exampleEnv = { ...copiedEnv, ...Object.fromEntries(SECRETS.map((s) => [s, `set-${s.toLowerCase()}`])) };
  compose = await readCompose(exampleEnv);
});

describe('docker-compose.yml', () => {
  it('has the services DESIGN §8 names, each with a health check (one-shot jobs awaited instead)', () => {
    const names = Object.keys(compose.services);
    for (const name of ['kafka', 'clickhouse', 'grafana', 'ingest', 'transform', 'sink', 'query']) expect(names).toContain(name);
    expect(compose.services['kafka']!.image).toBe('apache/kafka:4.1.1');
    expect(compose.services['clickhouse']!.image).toMatch(/^clickhouse\/clickhouse-server:/);

    for (const [name, service] of Object.entries(compose.services)) {
      if (service.healthcheck?.disable === true) {
        // A one-shot job: never restarted, and whoever needs it waits for it to complete.
        expect(service.restart, name).toBe('no');
        const dependents = Object.values(compose.services).filter((s) => s.depends_on?.[name] !== undefined);
        expect(dependents.length, name).toBeGreaterThan(0);
        for (const d of dependents) expect(d.depends_on![name]!.condition).toBe('service_completed_successfully');
      } else {
        expect(service.healthcheck?.test?.length ?? 0, `${name} has a healthcheck`).toBeGreaterThan(1);
      }
      for (const [target, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(compose.services[target], `${name} depends on ${target}`).toBeDefined();
        if (condition === 'service_healthy') expect(compose.services[target]!.healthcheck?.disable).not.toBe(true);
      }
    }
  });

  it('refuses to start without the secrets (no defaults in the repository, none in the example .env)', async () => {
    for (const secret of SECRETS) {
      const env = Object.fromEntries(Object.entries(exampleEnv).filter(([k]) => k !== secret));
      await expect(readCompose(env)).rejects.toThrow(secret);
      // The example copied as it is: the secret is there, empty.
      expect(copiedEnv[secret]).toBe('');
      await expect(readCompose({ ...exampleEnv, [secret]: '' })).rejects.toThrow(secret);
    }
  });

  it('runs every msgpipe role of DESIGN §7 with a configuration parseConfig accepts', async () => {
    const roles = runServices(compose).flatMap(([, s]) => s.command![s.command!.indexOf('--role') + 1]!.split(','));
    expect([...roles].sort()).toEqual([...DESIGN_ROLES].sort());

    const configured = Object.entries(compose.services).filter(([, s]) => isMsgpipe(s) && s.command?.[0] !== 'simulate');
    expect(configured.map(([n]) => n).sort()).toEqual(['ingest', 'migrate', 'query', 'sink', 'transform']);
    for (const [name, service] of configured) {
      const env = serviceEnv(service);
      const mount = (service.volumes ?? []).find((v) => v.split(':')[1] === env['MSGPIPE_CONFIG']);
      expect(mount, `${name} mounts its MSGPIPE_CONFIG`).toBeDefined();
      const file = join(ROOT, mount!.split(':')[0]!);
      // The container's environment is all the configuration sees.
      const config = await loadConfig(file, env);
      expect(config.kafka?.brokers).toEqual(['kafka:9092']);
      expect(compose.services['kafka']!.environment!['KAFKA_ADVERTISED_LISTENERS']).toBe('PLAINTEXT://kafka:9092');
      expect(new URL(config.clickhouse.url!).hostname).toBe('clickhouse');
      expect(config.clickhouse.password).toBe(exampleEnv['CLICKHOUSE_PASSWORD']);
      expect(config.tenants[0]?.secret).toBe(exampleEnv['MSGPIPE_TENANT_SECRET']);
      expect(config.metrics).toEqual({ enabled: true, host: '0.0.0.0', port: 9464 });
      if (service.command?.[0] === 'run') expect(probedPort(service), `${name} probes its /readyz`).toBe(config.metrics.port);
      // The default sources poll the bundled simulator on the port it listens on.
      const sim = compose.services['simulator']!;
      const simPort = sim.command![sim.command!.indexOf('--port') + 1];
      for (const source of config.sources) expect(source.baseUrl).toBe(`http://simulator:${simPort}`);
      if (name === 'query') expect(service.ports).toEqual([`9002:${config.query.port}`]);
    }
  });

  it('names only roles the msgpipe CLI knows', async () => {
    const missing = join(ROOT, 'no-such-config.yaml');
    const attempt = async (role: string): Promise<string> => {
      try {
        await execFileAsync(process.execPath, [BIN, 'run', '--role', role, '--config', missing], { cwd: ROOT });
        return '';
      } catch (err) {
        return (err as { stderr: string }).stderr;
      }
    };
    // One process for all of them (the CLI takes a comma list): past argument parsing, it
    // fails only on the missing file.
    const roles = runServices(compose).map(([, s]) => s.command![s.command!.indexOf('--role') + 1]!);
    const stderr = await attempt(roles.join(','));
    expect(stderr).not.toContain('unknown role');
    expect(stderr).toContain('cannot read the file');
    expect(await attempt('bogus')).toContain('unknown role');
  });

  it('builds the image the services run from a Dockerfile whose inputs exist', async () => {
    const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile).toContain('ENTRYPOINT ["node", "/app/bin/msgpipe.js"]');
    for (const m of dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(' ')) expect(existsSync(join(ROOT, src)), `COPY ${src}`).toBe(true);
    }
    for (const [, service] of Object.entries(compose.services).filter(([, s]) => isMsgpipe(s))) expect(service.build).toBe('.');
  });
});

describe('deploy/', () => {
  it('has Prometheus scrape every run role on its metrics port', async () => {
    const prometheus = compose.services['prometheus']!;
    const mount = prometheus.volumes!.find((v) => v.endsWith(':/etc/prometheus/prometheus.yml:ro'))!;
    const config = parse(await readFile(join(ROOT, mount.split(':')[0]!), 'utf8')) as {
      scrape_configs: { static_configs: { targets: string[] }[] }[];
    };
    const targets = config.scrape_configs.flatMap((c) => c.static_configs.flatMap((s) => s.targets)).sort();
    expect(targets).toEqual(runServices(compose).map(([name]) => `${name}:9464`).sort());
  });

  it('provisions Grafana data sources from the container environment, used by the dashboards', async () => {
    const grafana = compose.services['grafana']!;
    const env = serviceEnv(grafana);
    const provisioning = grafana.volumes!.find((v) => v.split(':')[1] === '/etc/grafana/provisioning')!.split(':')[0]!;
    const text = await readFile(join(ROOT, provisioning, 'datasources', 'datasources.yaml'), 'utf8');
    // Grafana expands ${VAR} in provisioning files from its environment.
    for (const [, name] of text.matchAll(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g)) expect(env[name!], name).toBeDefined();
    const { datasources } = parse(text) as { datasources: { uid: string; type: string; url?: string; jsonData?: { host?: string; port?: number } }[] };
    const ch = datasources.find((d) => d.type === 'grafana-clickhouse-datasource')!;
    expect(ch.jsonData).toMatchObject({ host: 'clickhouse', port: 8123 });
    expect(env['GF_PLUGINS_PREINSTALL']).toContain('grafana-clickhouse-datasource');

    const dashboards = grafana.volumes!.find((v) => v.split(':')[1] === '/var/lib/grafana/dashboards')!.split(':')[0]!;
    const provider = parse(await readFile(join(ROOT, provisioning, 'dashboards', 'dashboards.yaml'), 'utf8')) as {
      providers: { options: { path: string } }[];
    };
    expect(provider.providers[0]!.options.path).toBe('/var/lib/grafana/dashboards');
    const uids = new Set(datasources.map((d) => d.uid));
    for (const file of ['msgpipe-messages.json', 'msgpipe-operations.json']) {
      const dash = JSON.parse(await readFile(join(ROOT, dashboards, file), 'utf8')) as Dashboard;
      for (const panel of dash.panels) for (const t of panel.targets) expect(uids).toContain(t.datasource.uid);
    }
  });
});

interface Target {
  datasource: { uid: string; type: string };
  rawSql?: string;
  expr?: string;
  format?: number;
}
interface Dashboard {
  panels: { title: string; targets: Target[] }[];
}

/** The ClickHouse plugin's macros, expanded as the plugin does for a time range. */
function expandMacros(sql: string, from: Date, to: Date, intervalS: number): string {
  const f = Math.floor(from.getTime() / 1000);
  const t = Math.floor(to.getTime() / 1000);
  return sql
    .replace(/\$__timeFilter\(([^)]+)\)/g, (_, col: string) => `${col} >= toDateTime(${f}) AND ${col} <= toDateTime(${t})`)
    .replace(/\$__timeInterval\(([^)]+)\)/g, (_, col: string) => `toStartOfInterval(toDateTime(${col}), INTERVAL ${intervalS} second)`);
}

describe('Grafana dashboards', () => {
  it('runs every ClickHouse panel query on the msgpipe schema, and counts what was stored', async () => {
    const dash = JSON.parse(await readFile(join(ROOT, 'deploy/grafana/dashboards/msgpipe-messages.json'), 'utf8')) as Dashboard;
    const temp = await openTempStore();
    try {
      // A second account in the same sessions: its sessions are its own.
      const first = realisticMessages(500);
      const messages = [...first, ...first.slice(0, 50).map((m, i) => ({ ...m, staff_id: 'staff-b', msgid: String(9_000_000_000_000_000_000n + BigInt(i)) }))];
      const sessionOf = (m: { staff_id: string; session_id: string }): string => `${m.staff_id}/${m.session_id}`;
      const writer = new SinkWriter(temp.store, silent);
      await writer.add({
        output: { messages, events: [event()], deadLetters: [deadLetter(new Uint8Array([0xff, 0x00]))], recalls: [] },
        cursor: { source: 'shop-a', stream: 'wx', cursor: 'k1' },
      });
      await writer.close();
      const times = messages.map((m) => m.msg_time);
      const from = new Date(Math.min(...times) - 86_400_000);
      const to = new Date(Math.max(...times) + 86_400_000);
      for (const panel of dash.panels) {
        for (const target of panel.targets) {
          expect(target.rawSql, panel.title).toBeDefined();
          const rows = await temp.store.query<Record<string, unknown>>(expandMacros(target.rawSql!, from, to, 3600));
          if (panel.title === 'Messages in range') expect(Number(rows[0]!['messages'])).toBe(messages.length);
          if (panel.title === 'Messages per source') {
            expect(rows.reduce((n, r) => n + Number(r['messages']), 0)).toBe(messages.length);
            expect(Object.keys(rows[0]!)).toEqual(['time', 'source', 'messages']);
          }
          if (panel.title === 'Active sessions in range') {
            expect(Number(rows[0]!['sessions'])).toBe(new Set(messages.map(sessionOf)).size);
            // Sessions active in a part of the range, not only those whose latest message is in it.
            const early = new Date(Math.min(...times) + 99_000);
            const [part] = await temp.store.query<{ sessions: string }>(expandMacros(target.rawSql!, from, early, 3600));
            const active = new Set(messages.filter((m) => m.msg_time <= early.getTime()).map(sessionOf));
            expect(Number(part!.sessions)).toBe(active.size);
            expect(active.size).toBeLessThan(new Set(messages.map(sessionOf)).size);
          }
          if (panel.title === 'Busiest sessions') {
            const counts = new Map<string, number>();
            for (const m of messages) counts.set(sessionOf(m), (counts.get(sessionOf(m)) ?? 0) + 1);
            for (const r of rows) expect(Number(r['messages'])).toBe(counts.get(sessionOf(r as { staff_id: string; session_id: string })));
          }
        }
      }
      // The panels see the data: a range before it shows nothing.
      const [none] = await temp.store.query<{ messages: string }>(
        expandMacros('SELECT count() AS messages FROM messages WHERE $__timeFilter(msg_time)', new Date(0), new Date(1000), 60),
      );
      expect(Number(none!.messages)).toBe(0);
    } finally {
      await temp.dispose();
    }
  });

  it('charts only Prometheus series that msgpipe exports', async () => {
    const dash = JSON.parse(await readFile(join(ROOT, 'deploy/grafana/dashboards/msgpipe-operations.json'), 'utf8')) as Dashboard;
    const metrics = new Metrics();
    metrics.watchSources([
      { name: 's', origin: { source: 's', sourceType: 'gewe', tenant: 't', staffId: 'x' }, stats: newSourceStats(), run: () => Promise.resolve() },
    ]);
    const temp = await openTempStore();
    let exported: Set<string>;
    try {
      const writer = new SinkWriter(temp.store, silent, { observer: metrics.sinkObserver });
      metrics.watchSink(writer.stats);
      await writer.add({ output: { messages: [], events: [], deadLetters: [deadLetter(new Uint8Array([1]))], recalls: [] } });
      await writer.close();
      exported = new Set(parseMetrics(await metrics.text()).map((s) => s.name));
    } finally {
      await temp.dispose();
    }
    const used = dash.panels.flatMap((p) => p.targets.flatMap((t) => [...(t.expr ?? '').matchAll(/\b((?:msgpipe|process|nodejs)_[a-z_]+)\b/g)].map((m) => m[1]!)));
    expect(used.length).toBeGreaterThan(5);
    for (const name of used) expect(exported, name).toContain(name);
  });
});
