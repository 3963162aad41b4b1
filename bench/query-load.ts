/**
 * The load generator of the query benchmark, run as its own process so it does not share the
 * server's event loop: autocannon with `connections` keep-alive connections for `seconds`, each
 * request a random path of the list file. Prints one JSON object: requests, req/s, latency
 * percentiles from every response's own time, non-2xx and errors.
 *
 * Usage: node --import tsx bench/query-load.ts <base url> <paths.json> <connections> <seconds>
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

interface Instance {
  on(event: 'response', listener: (client: unknown, status: number, bytes: number, ms: number) => void): void;
}
interface Result {
  requests: { total: number; average: number };
  non2xx: number;
  errors: number;
  duration: number;
}
type Autocannon = ((options: Record<string, unknown>, done: (err: Error | null, result: Result) => void) => Instance);

// autocannon ships no type declarations; the two calls used here are typed above.
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const [url, file, connections, seconds] = process.argv.slice(2) as [string, string, string, string];
const paths = JSON.parse(readFileSync(file, 'utf8')) as string[];
const times: number[] = [];

const result = await new Promise<Result>((resolve, reject) => {
  const instance = autocannon(
    {
      url,
      connections: Number(connections),
      duration: Number(seconds),
      requests: [
        {
          setupRequest: (request: Record<string, unknown>) => ({
            ...request,
            path: paths[Math.floor(Math.random() * paths.length)],
          }),
        },
      ],
    },
    (err, res) => { if (err) reject(err); else resolve(res); },
  );
  instance.on('response', (_client, _status, _bytes, ms) => { times.push(ms); });
});

times.sort((a, b) => a - b);
const at = (q: number): number => Math.round((times[Math.min(times.length - 1, Math.floor(q * times.length))] ?? 0) * 10) / 10;
process.stdout.write(
  `${JSON.stringify({
    requests: times.length,
    reqPerSec: Math.round(times.length / result.duration),
    p50Ms: at(0.5),
    p95Ms: at(0.95),
    p99Ms: at(0.99),
    non2xx: result.non2xx,
    errors: result.errors,
  })}\n`,
);
