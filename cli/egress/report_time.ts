/**
 * Times in reports: RFC 3339 in UTC with milliseconds (JSON, JUnit), and
 * the time of day alone (the stderr table).
 *
 * @module
 */

/**
 * RFC 3339 time, UTC, with milliseconds, of a wall-clock time given as
 * TcpEvent gives it (seconds since the epoch, nanoseconds).
 *
 * @example
 * ```ts
 * import { rfc3339, timeOfDay } from "./report_time.ts";
 * import assert from "node:assert/strict";
 * assert.equal(rfc3339(1700000000, 123456789), "2023-11-14T22:13:20.123Z");
 * assert.equal(timeOfDay(1700000000, 123456789), "22:13:20.123");
 * ```
 */
export function rfc3339(sec: number, nsec: number): string {
  return new Date(sec * 1000 + Math.floor(nsec / 1e6)).toISOString();
}

/** `HH:MM:SS.mmm` (UTC) of a wall-clock time. */
export function timeOfDay(sec: number, nsec: number): string {
  return rfc3339(sec, nsec).slice(11, 23);
}
