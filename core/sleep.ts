/**
 * A pause that an abort signal cuts short: waits between retries end as
 * soon as the run is told to stop.
 *
 * @module
 */

/**
 * Resolves after `ms` milliseconds, or as soon as `signal` aborts (at once
 * if it already has). Never rejects.
 *
 * @example
 * ```ts
 * import { sleep } from "./sleep.ts";
 * import assert from "node:assert/strict";
 * const stop = new AbortController();
 * const started = performance.now();
 * setTimeout(() => stop.abort(), 10);
 * await sleep(60_000, stop.signal);
 * assert.ok(performance.now() - started < 5_000);
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
