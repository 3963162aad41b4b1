/**
 * Renders docs/config.md from the configuration schema, so the reference cannot drift from the
 * code: `npm run gen` writes it and a test fails when the committed file differs.
 */
import { z } from 'zod';

import { configSchema, LOG_LEVELS } from './config.ts';

interface JsonSchema {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  pattern?: string;
  format?: string;
  secret?: boolean;
  properties?: Record<string, JsonSchema>;
  required?: string[];
  items?: JsonSchema;
  oneOf?: JsonSchema[];
  anyOf?: JsonSchema[];
}

interface Row {
  readonly key: string;
  readonly type: string;
  readonly required: boolean;
  readonly defaultValue: string;
  readonly description: string;
}

function typeOf(s: JsonSchema): string {
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((v) => `\`${JSON.stringify(v)}\``).join(' \\| ');
  // A union of literals (`z.union([z.literal(1), …])`) lists its values as an enum does.
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives !== undefined && alternatives.length > 0 && alternatives.every((a) => a.const !== undefined)) {
    return alternatives.map((a) => `\`${JSON.stringify(a.const)}\``).join(' \\| ');
  }
  const base = Array.isArray(s.type) ? s.type.join(' | ') : (s.type ?? 'any');
  if (base === 'array' && s.items?.type !== undefined && s.items.type !== 'object') return `${String(s.items.type)}[]`;
  const bounds = [
    s.minimum === undefined ? '' : `≥ ${s.minimum}`,
    s.maximum === undefined || s.maximum >= Number.MAX_SAFE_INTEGER ? '' : `≤ ${s.maximum}`,
    s.format ?? '',
  ].filter(Boolean);
  return bounds.length > 0 ? `${base} (${bounds.join(', ')})` : base;
}

function describe(s: JsonSchema): string {
  const text = (s.description ?? '').replace(/\|/g, '\\|');
  return s.secret === true ? `${text} **Secret**: give it as \`\${ENV}\`.` : text;
}

function walk(schema: JsonSchema, prefix: string, rows: Row[], heading: string[], sections: Map<string, Row[]>): void {
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const path = prefix ? `${prefix}.${key}` : key;
    const required = schema.required?.includes(key) === true && prop.default === undefined;
    const defaultValue = prop.default === undefined || (typeof prop.default === 'object' && prop.default !== null && !Array.isArray(prop.default)) ? '' : `\`${JSON.stringify(prop.default)}\``;
    const object = prop.properties ? prop : undefined;
    const arrayItems = prop.type === 'array' ? prop.items : undefined;
    rows.push({ key: path, type: object ? 'object' : typeOf(prop), required, defaultValue, description: describe(prop) });
    if (object) walk(object, path, rows, heading, sections);
    if (arrayItems?.properties) walk(arrayItems, `${path}[]`, rows, heading, sections);
    const variants = arrayItems?.oneOf ?? arrayItems?.anyOf;
    if (variants) {
      for (const variant of variants) {
        const tag = variant.properties?.['type']?.const;
        const variantRows: Row[] = [];
        walk(variant, `${path}[]`, variantRows, heading, sections);
        sections.set(`${path}[] with type ${JSON.stringify(tag)}`, variantRows);
      }
    }
  }
}

function table(rows: readonly Row[]): string {
  const lines = ['| key | type | required | default | meaning |', '|---|---|---|---|---|'];
  for (const r of rows) lines.push(`| \`${r.key}\` | ${r.type} | ${r.required ? 'yes' : ''} | ${r.defaultValue} | ${r.description} |`);
  return lines.join('\n');
}

/** The full text of docs/config.md. */
export function renderConfigDocs(): string {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  const rows: Row[] = [];
  const sections = new Map<string, Row[]>();
  walk(schema, '', rows, [], sections);
  const parts = [
    '# Configuration reference',
    '',
    '<!-- Generated from src/core/config.ts by `npm run gen`; do not edit by hand. -->',
    '',
    'A YAML file given by `--config` or `MSGPIPE_CONFIG`. `${NAME}` is replaced by the environment',
    'variable NAME (unset or empty is an error; `$${NAME}` keeps the text `${NAME}`). Any other',
    '`${…}`, such as the shell\'s `${NAME:-default}`, is an error too, rather than text taken as the',
    'value. Unknown keys are errors, so a typo cannot silently fall back to a default. Every problem',
    'is reported at once and the command exits with code 2. `msgpipe sql` and `msgpipe migrate` read',
    'only `clickhouse` and `log` (and report unknown keys): the variables of tenants and sources need',
    'not be set for them.',
    '',
    'Two environment variables are read besides: `MSGPIPE_CONFIG`, the file when `--config` is not',
    'given, and `MSGPIPE_LOG_LEVEL`, which overrides `log.level` (one of',
    `${LOG_LEVELS.map((l) => `\`${l}\``).join(', ')}; another value is an error, exit code 2).`,
    '',
    '## Top level',
    '',
    table(rows),
  ];
  for (const [title, sectionRows] of sections) parts.push('', `## \`${title}\``, '', table(sectionRows));
  return `${parts.join('\n')}\n`;
}
