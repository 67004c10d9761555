/**
 * Enrichment: the step between decoding and output that says where an
 * event happened (node) and which Kubernetes pod and container made it.
 *
 * @module
 */

import type { TcpEvent } from "../core/event.ts";

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

/** What an address is in the cluster: a pod's or a service's. */
export interface Endpoint {
  kind: "pod" | "svc";
  namespace: string;
  name: string;
}

/** Finds the pod or service of an address. */
export interface EndpointDirectory {
  endpoint(ip: string): Endpoint | undefined;
}

/**
 * Adds `srcEndpoint` and `dstEndpoint` to what another enricher produces.
 *
 * @example
 * ```ts
 * import { NodeEnricher, withEndpoints } from "./enrich.ts";
 * const directory = { endpoint: (ip: string) => ip === "10.96.0.10" ? { kind: "svc" as const, namespace: "kube-system", name: "kube-dns" } : undefined };
 * const enricher = withEndpoints(new NodeEnricher("node-a"), directory);
 * ```
 */
export function withEndpoints(inner: Enricher, directory: EndpointDirectory): Enricher {
  return {
    enrich(event: TcpEvent): TraceEvent {
      const enriched = inner.enrich(event);
      enriched.srcEndpoint = directory.endpoint(enriched.saddr);
      enriched.dstEndpoint = directory.endpoint(enriched.daddr);
      return enriched;
    },
  };
}

/** A decoded event with its enrichment: what the output formats print. */
export type TraceEvent = TcpEvent & KubernetesFields;

/** Adds Kubernetes fields to decoded events. */
export interface Enricher {
  enrich(event: TcpEvent): TraceEvent;
}

/**
 * Names the node only: every process is treated as a host process. Used
 * until container metadata is available.
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
