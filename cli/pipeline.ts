/**
 * The stages every run mode shares once an event is decoded (from a ring
 * buffer in node mode, from an agent's JSON line in cluster mode):
 *
 *   decode --> enrich --> filter --> name --> sink (format and write, or judge)
 *
 * @module
 */

import type { TcpEvent } from "../core/event.ts";
import type { NameDirectory } from "../core/destination_name.ts";
import type { Enricher, TraceEvent } from "../core/trace_event.ts";
import { type KubernetesFilter, matchesFilter, selectsContainers } from "../k8s/pod_filter.ts";
import type { Formatter } from "./output/formatter.ts";
import type { LineOutput } from "./output/line_output.ts";

/** What the pipeline is made of. */
export interface PipelineStages {
  enricher: Enricher;
  filter: KubernetesFilter;
  /** The labels of an event's pod, for `-l` (from the API). */
  labelsOf?: (event: TraceEvent) => Record<string, string> | undefined;
  /** Names each event's remote address (`--names`, egress): sets `dstName`. */
  names?: NameDirectory;
  /** Where events that pass go. */
  sink: (event: TraceEvent) => void;
}

/**
 * enrich -> filter -> name -> sink, for one event at a time. Events may be one
 * object reused (the sink copies what it keeps).
 *
 * @example
 * ```ts
 * import { EventPipeline } from "./pipeline.ts";
 * import { NodeEnricher } from "../core/trace_event.ts";
 * import type { TcpEvent } from "../core/event.ts";
 * import assert from "node:assert/strict";
 * const seen: string[] = [];
 * const pipeline = new EventPipeline({
 *   enricher: new NodeEnricher("node-a"),
 *   filter: { namespace: "shop" },
 *   sink: (event) => seen.push(event.comm),
 * });
 * const event = { type: "C", comm: "curl", saddr: "10.0.0.1", daddr: "10.0.0.2" } as TcpEvent;
 * pipeline.handle(event); // a host process: filtered out by -n shop
 * assert.deepEqual(seen, []);
 * ```
 */
export class EventPipeline {
  readonly #enricher: Enricher;
  readonly #filter: KubernetesFilter;
  readonly #filtering: boolean;
  readonly #labelsOf: (event: TraceEvent) => Record<string, string> | undefined;
  readonly #names: NameDirectory | undefined;
  readonly #sink: (event: TraceEvent) => void;

  constructor(stages: PipelineStages) {
    this.#enricher = stages.enricher;
    this.#filter = stages.filter;
    this.#filtering = selectsContainers(stages.filter);
    this.#labelsOf = stages.labelsOf ?? (() => undefined);
    this.#names = stages.names;
    this.#sink = stages.sink;
  }

  /** Runs one decoded event through the stages. */
  handle(event: TcpEvent): void {
    const enriched = this.#enricher.enrich(event);
    if (this.#filtering && !matchesFilter(enriched, this.#filter, this.#labelsOf)) return;
    // Named after the filter: only the events that are shown or judged.
    if (this.#names) enriched.dstName = this.#names.nameOf(enriched);
    this.#sink(enriched);
  }
}

/** The sink that formats each event into `output`'s buffer. */
export function writeTo(
  formatter: Formatter,
  output: LineOutput,
): (event: TraceEvent) => void {
  return (event) => {
    formatter.write(event, output.buffer);
    output.endEvent();
  };
}
