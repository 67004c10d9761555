/**
 * Connect events as the tracer and the enrichers make them, for the egress
 * policy tests (which need no kernel).
 *
 * @module
 */

import type { TraceEvent } from "../../core/trace_event.ts";

// Each event its own ephemeral source port, as the kernel would pick.
let nextSourcePort = 40000;

/** A connect (C) event from a host process, with fields overridden. */
export function connectEvent(fields: Partial<TraceEvent> = {}): TraceEvent {
  const ipversion = fields.ipversion ?? (fields.daddr?.includes(":") ? 6 : 4);
  return {
    type: "C",
    timeSec: 1_765_000_000,
    timeNsec: 0,
    pid: 4242,
    tid: 4242,
    uid: 1000,
    gid: 1000,
    comm: "curl",
    mntns: 4026531840,
    netns: 4026531992,
    cgroupId: 1,
    ipversion,
    saddr: ipversion === 6 ? "2001:db8::100" : "192.0.2.100",
    sport: nextSourcePort++,
    daddr: "192.0.2.1",
    dport: 443,
    node: "node-a",
    namespace: "",
    pod: "",
    container: "",
    ...fields,
  };
}

/** A connect event from a container of a pod. */
export function podConnectEvent(
  namespace: string,
  pod: string,
  container: string,
  fields: Partial<TraceEvent> = {},
): TraceEvent {
  return connectEvent({ namespace, pod, container, ...fields });
}
