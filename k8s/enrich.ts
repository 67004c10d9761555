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
