/**
 * Decoding a line of the JSON output back into an event: what an agent pod
 * sends in cluster mode is decoded here, before the client enriches,
 * filters and formats it.
 *
 * @module
 */

import { OPERATIONS } from "../../core/event.ts";
import type { TraceEvent } from "../../core/trace_event.ts";
import { NONE } from "./columns.ts";

/**
 * Reads back a line of {@link JsonFormatter} output (what an agent pod
 * sends in cluster mode).
 *
 * @example
 * ```ts
 * import { parseJsonEvent } from "./json_event.ts";
 * import { JsonFormatter } from "./json_formatter.ts";
 * import type { TraceEvent } from "../../core/trace_event.ts";
 * import assert from "node:assert/strict";
 * const event: TraceEvent = {
 *   type: "C", timeSec: 1_700_000_000, timeNsec: 5, pid: 42, tid: 43, uid: 0, gid: 0,
 *   comm: "curl", mntns: 1, netns: 2, cgroupId: 0, ipversion: 4, saddr: "10.0.0.1",
 *   sport: 40000, daddr: "10.0.0.2", dport: 80, node: "node-a", namespace: "shop",
 *   pod: "web-0", container: "nginx", containerId: "", podUid: "",
 * };
 * assert.deepEqual(parseJsonEvent(new JsonFormatter().format(event)), event);
 * ```
 */
export function parseJsonEvent(line: string): TraceEvent {
  // deno-lint-ignore no-explicit-any
  const o: Record<string, any> = JSON.parse(line);
  const type = (Object.entries(OPERATIONS).find(([, operation]) => operation === o.operation)
    ?.[0] ?? "U") as TraceEvent["type"];
  const time = Date.parse(String(o.timestamp).replace(/\.\d+Z$/, "Z"));
  const fraction = String(o.timestamp).match(/\.(\d{9})Z$/)?.[1] ?? "0";
  const unnamed = (value: unknown) => value === NONE ? "" : String(value ?? "");
  const event: TraceEvent = {
    type,
    timeSec: Math.floor(time / 1000),
    timeNsec: Number(fraction),
    pid: o.pid,
    tid: o.tid ?? o.pid,
    uid: o.uid ?? 0,
    gid: o.gid ?? 0,
    comm: o.comm,
    mntns: o.mntns ?? 0,
    netns: o.netns ?? 0,
    cgroupId: 0,
    ipversion: o.ipversion,
    saddr: o.saddr,
    sport: o.sport,
    daddr: o.daddr,
    dport: o.dport,
    node: o.node,
    namespace: unnamed(o.namespace),
    pod: unnamed(o.pod),
    container: unnamed(o.container),
    containerId: o.containerid ?? "",
    podUid: o.poduid ?? "",
  };
  if (o.srcendpoint) event.srcEndpoint = o.srcendpoint;
  if (o.dstendpoint) event.dstEndpoint = o.dstendpoint;
  if (o.error) event.error = o.error;
  return event;
}
