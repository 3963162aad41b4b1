/**
 * Reads the Prometheus text exposition format (what `GET /metrics` serves) into samples, so
 * tests can assert on series scraped over HTTP.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

// `msgpipe_source_polls_total{source="g1",source_type="gewe"} 12`
const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
// `source="g1"` with the three escapes of the format (\\, \", \n).
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses every sample line; comments (`# HELP`, `# TYPE`) and blank lines are skipped. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`not a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL)) {
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    }
    const raw = m[3]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

function matches(sample: Sample, name: string, labels: Readonly<Record<string, string>>): boolean {
  return sample.name === name && Object.entries(labels).every(([k, v]) => sample.labels[k] === v);
}

/** The value of the one sample with this name whose labels include `labels`; throws when there is not exactly one. */
export function sampleValue(samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  const found = samples.filter((s) => matches(s, name, labels));
  if (found.length !== 1) throw new Error(`expected one sample ${name} ${JSON.stringify(labels)}, found ${found.length}`);
  return found[0]!.value;
}

/** The sum over every sample with this name whose labels include `labels` (0 when none). */
export function sumSamples(samples: readonly Sample[], name: string, labels: Readonly<Record<string, string>> = {}): number {
  return samples.filter((s) => matches(s, name, labels)).reduce((acc, s) => acc + s.value, 0);
}
