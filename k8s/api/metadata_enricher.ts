/**
 * Enrichment from the Kubernetes API: pod, namespace and container names of
 * pods the node's own files may not name yet (by pod UID, else by name),
 * and the pod or service each address belongs to. Used after the node's
 * enricher in node mode, and on the events the agents send in cluster mode.
 *
 * @module
 */

import type { TcpEvent } from "../../core/event.ts";
import type { Enricher, KubernetesFields, TraceEvent } from "../../core/trace_event.ts";
import type { ClusterMetadata, PodInfo } from "./cluster_metadata.ts";

/**
 * Adds what the API knows to what `inner` produced (or to events already
 * enriched, without `inner`).
 *
 * @example
 * ```ts ignore
 * const enricher = new MetadataEnricher(metadata, new ContainerEnricher(resolver, node));
 * const event = enricher.enrich(decoded); // dstEndpoint: { kind: "svc", ... }
 * ```
 */
export class MetadataEnricher implements Enricher {
  readonly #metadata: ClusterMetadata;
  readonly #inner: Enricher | undefined;

  constructor(metadata: ClusterMetadata, inner?: Enricher) {
    this.#metadata = metadata;
    this.#inner = inner;
  }

  enrich(event: TcpEvent): TraceEvent {
    const enriched = this.#inner ? this.#inner.enrich(event) : event as TraceEvent;
    const pod = this.pod(enriched);
    if (pod) {
      enriched.namespace = pod.namespace;
      enriched.pod = pod.name;
      enriched.container = pod.containers.get(enriched.containerId ?? "") ?? enriched.container;
    }
    // Assigned every time: events may be one object reused.
    enriched.srcEndpoint = this.#metadata.endpoint(enriched.saddr);
    enriched.dstEndpoint = this.#metadata.endpoint(enriched.daddr);
    return enriched;
  }

  /** The API's pod of an enriched event: by UID, else by namespace and name. */
  pod(fields: Pick<KubernetesFields, "podUid" | "namespace" | "pod">): PodInfo | undefined {
    return (fields.podUid ? this.#metadata.pod(fields.podUid) : undefined) ??
      (fields.pod ? this.#metadata.podByName(fields.namespace, fields.pod) : undefined);
  }

  /** The labels of an event's pod, if the API knows it (for `-l`). */
  labelsOf(
    fields: Pick<KubernetesFields, "podUid" | "namespace" | "pod">,
  ): Record<string, string> | undefined {
    return this.pod(fields)?.labels;
  }
}
