/**
 * The `metrics` section of the configuration (the operations listener), kept apart from the
 * server so loading the configuration does not load fastify.
 */
import { z } from 'zod';

/** Port of the listener by default (the usual Prometheus exporter port). */
export const DEFAULT_METRICS_PORT = 9464;

export const metricsConfigSchema = z
  .strictObject({
    enabled: z.boolean().default(true).describe('Serve `/metrics`, `/healthz` and `/readyz`; false = no listener.'),
    host: z
      .string()
      .min(1)
      .default('127.0.0.1')
      .describe('Address of the operations listener (`0.0.0.0` in a container so Prometheus and probes reach it).'),
    port: z
      .number()
      .int()
      .min(0)
      .max(65_535)
      .default(DEFAULT_METRICS_PORT)
      .describe('Port of the operations listener (0 = any free port, logged at start).'),
  })
  .describe('The operations listener: Prometheus metrics and health checks (docs/operations.md).');

export type MetricsConfig = z.infer<typeof metricsConfigSchema>;

