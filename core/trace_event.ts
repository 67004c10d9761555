/**
 * The enriched event: a decoded {@link TcpEvent} with where it happened
 * (node) and which Kubernetes pod and container made it, and the
 * {@link Enricher} stage that adds those. What every output format prints
 * and every filter looks at, in node and in cluster mode.
 *
 * @module
 */

import type { TcpEvent } from "./event.ts";
import type { DestinationName } from "./destination_name.ts";

/** What an address is in the cluster: a pod's or a service's. */
export interface Endpoint {
  kind: "pod" | "svc";
  namespace: string;
  name: string;
}

/** The Kubernetes fields of an event; empty strings when not applicable. */
export interface KubernetesFields {
  /** Node (host) name. */
  node: string;
  namespace: string;
  pod: string;
  container: string;
  /** Container id (64 hex digits); empty or absent for host processes. */
  containerId?: string;
  /** Pod UID; empty or absent for host processes. */
  podUid?: string;
  /** The pod or service the local address belongs to, if known (needs the API). */
  srcEndpoint?: Endpoint;
  /** The pod or service the remote address belongs to, if known (needs the API). */
  dstEndpoint?: Endpoint;
}

/** The name the remote address had for the process (`--names`, egress): see destination_name.ts. */
export interface NamedDestination {
  dstName?: DestinationName;
}

/** A decoded event with its enrichment: what the output formats print. */
export type TraceEvent = TcpEvent & KubernetesFields & NamedDestination;

/**
 * Adds Kubernetes fields to events. An enricher may fill in the object it
 * is given and return it (no allocation per event).
 */
export interface Enricher {
  enrich(event: TcpEvent): TraceEvent;
}

/**
 * Names the node only: every process is treated as a host process. Used
 * where no container metadata is available.
 *
 * @example
 * ```ts
 * import { NodeEnricher } from "./trace_event.ts";
 * import assert from "node:assert/strict";
 * const event = new NodeEnricher("node-a").enrich({
 *   type: "C", timeSec: 0, timeNsec: 0, pid: 1, tid: 1, uid: 0, gid: 0, comm: "curl",
 *   mntns: 0, netns: 0, cgroupId: 0, ipversion: 4, saddr: "10.0.0.1", sport: 40000,
 *   daddr: "10.0.0.2", dport: 80,
 * });
 * assert.deepEqual([event.node, event.pod], ["node-a", ""]);
 * ```
 */
export class NodeEnricher implements Enricher {
  readonly #node: string;

  constructor(node: string = Deno.hostname()) {
    this.#node = node;
  }

  enrich(event: TcpEvent): TraceEvent {
    const enriched = event as TraceEvent;
    enriched.node = this.#node;
    enriched.namespace = "";
    enriched.pod = "";
    enriched.container = "";
    return enriched;
  }
}
