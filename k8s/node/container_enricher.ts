/**
 * The enricher of node mode with container metadata: names the namespace,
 * pod and container of each event from its mount namespace.
 *
 * @module
 */

import type { TcpEvent } from "../../core/event.ts";
import type { ContainerResolver } from "./container_resolver.ts";
import type { Enricher, TraceEvent } from "../../core/trace_event.ts";

/**
 * Adds node, namespace, pod, container, container id and pod UID to events,
 * from a {@link ContainerResolver}. Host processes get empty strings.
 *
 * @example
 * ```ts ignore
 * import { ContainerResolver } from "./container_resolver.ts";
 * import { ContainerEnricher } from "./container_enricher.ts";
 * const resolver = new ContainerResolver({ hostRoot: "/host" });
 * resolver.refresh();
 * resolver.start(1000);
 * const enricher = new ContainerEnricher(resolver, "node-1");
 * tracer.drain((event) => print(enricher.enrich(event)));
 * ```
 */
export class ContainerEnricher implements Enricher {
  readonly #resolver: ContainerResolver;
  readonly #node: string;

  constructor(resolver: ContainerResolver, node: string = Deno.hostname()) {
    this.#resolver = resolver;
    this.#node = node;
  }

  enrich(event: TcpEvent): TraceEvent {
    const info = this.#resolver.lookup(event.mntns, event.pid, event.cgroupId);
    const enriched = event as TraceEvent;
    enriched.node = this.#node;
    enriched.namespace = info.namespace;
    enriched.pod = info.pod;
    enriched.container = info.container;
    enriched.containerId = info.containerId;
    enriched.podUid = info.podUid;
    return enriched;
  }
}
