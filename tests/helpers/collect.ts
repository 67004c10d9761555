/**
 * Gathering and comparing the events of a test's own connections.
 *
 * @module
 */

import { assertEquals } from "./assert.ts";
import type { TcpEvent } from "../../core/event.ts";
import type { TcpTracer } from "../../core/tracer.ts";

/** The fields a test asserts exactly. */
export type ExpectedEvent =
  & Pick<TcpEvent, "type" | "pid" | "comm" | "ipversion" | "saddr" | "sport" | "daddr" | "dport">
  & { error?: string };

/** The comparable part of an event. */
export function essentials(event: TcpEvent | ExpectedEvent): ExpectedEvent {
  const result: ExpectedEvent = {
    type: event.type,
    pid: event.pid,
    comm: event.comm,
    ipversion: event.ipversion,
    saddr: event.saddr,
    sport: event.sport,
    daddr: event.daddr,
    dport: event.dport,
  };
  if (event.error) result.error = event.error;
  return result;
}

function key(event: ExpectedEvent): string {
  return JSON.stringify(essentials(event));
}

/** Asserts the same events, each exactly as often, in any order. */
export function assertSameEvents(actual: ExpectedEvent[], expected: ExpectedEvent[]): void {
  assertEquals(
    actual.map(essentials).map(key).sort(),
    expected.map(essentials).map(key).sort(),
  );
}

/**
 * Reads events from `tracer` that touch one of `ports` (as local or remote
 * port) until `count` of them arrived, then for `graceMs` more to catch
 * duplicates, or until `timeoutMs`.
 */
export async function collectEvents(
  tracer: TcpTracer,
  ports: number[],
  count: number,
  { timeoutMs = 5000, graceMs = 300 } = {},
): Promise<TcpEvent[]> {
  const wanted = new Set(ports);
  const events: TcpEvent[] = [];
  const started = performance.now();
  let enoughAt: number | undefined;
  while (true) {
    tracer.drain((event) => {
      if (wanted.has(event.sport) || wanted.has(event.dport)) events.push(event);
    });
    const now = performance.now();
    if (events.length >= count) enoughAt ??= now;
    if (enoughAt !== undefined && now - enoughAt >= graceMs) break;
    if (now - started >= timeoutMs) break;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return events;
}
