/**
 * How long tcpgadget waits for the Kubernetes API server: every request,
 * the answer to a watch, the opening of an exec stream. A server that
 * accepts connections and never answers (a stuck proxy, a firewall that
 * drops packets, a TLS endpoint that is not an API server) is then an error
 * naming it, not a wait without end.
 *
 * @module
 */

import { UsageError } from "../../core/errors.ts";

/** The bound when nothing else is said. */
export const DEFAULT_API_TIMEOUT_MS = 20_000;

/** The environment variable that changes it (seconds). */
export const API_TIMEOUT_VARIABLE = "TCPGADGET_API_TIMEOUT";

/**
 * The bound in milliseconds: `TCPGADGET_API_TIMEOUT` (seconds) if set,
 * else 20 s.
 *
 * @example
 * ```ts
 * import { apiTimeoutMs } from "./api_timeout.ts";
 * import assert from "node:assert/strict";
 * assert.equal(apiTimeoutMs(() => undefined), 20_000);
 * assert.equal(apiTimeoutMs(() => "1.5"), 1500);
 * assert.throws(() => apiTimeoutMs(() => "soon"), /TCPGADGET_API_TIMEOUT must be/);
 * ```
 */
export function apiTimeoutMs(
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): number {
  const value = env(API_TIMEOUT_VARIABLE);
  if (value === undefined || value === "") return DEFAULT_API_TIMEOUT_MS;
  const seconds = Number(value);
  // setTimeout's limit (about 24.8 days) is far above any useful bound.
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) {
    throw new UsageError(
      `${API_TIMEOUT_VARIABLE} must be a number of seconds above 0 and at most 86400, not "${value}"`,
    );
  }
  return Math.round(seconds * 1000);
}

/**
 * A bound as the messages say it.
 *
 * @example
 * ```ts
 * import { secondsText } from "./api_timeout.ts";
 * import assert from "node:assert/strict";
 * assert.equal(secondsText(20_000), "20 s");
 * assert.equal(secondsText(1500), "1.5 s");
 * ```
 */
export function secondsText(milliseconds: number): string {
  return `${milliseconds / 1000} s`;
}
