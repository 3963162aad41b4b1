/**
 * The token field of a source's configuration: it goes out as an HTTP header value, so what no
 * header can carry is refused when the configuration is read, not retried as a network failure
 * forever. A token read from a file (a Kubernetes secret) often ends in a newline.
 */
import { z } from 'zod';

/** Visible ASCII and inner spaces (`Bearer abc`): what every HTTP client sends as it is. */
const HEADER_SAFE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** A source token, described as `description`. */
export function tokenSchema(description: string): z.ZodString {
  return z
    .string()
    .min(1)
    .regex(HEADER_SAFE, 'a token is sent as an HTTP header: visible ASCII only, no white space at either end (a newline from a file?)')
    .meta({ secret: true })
    .describe(description);
}
