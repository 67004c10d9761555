/**
 * The Kubernetes filters of `trace tcp` (`-n`, `-A`, `-p`, `-c`, `-l`,
 * `--host`), applied to enriched events.
 *
 * @module
 */

import type { TraceEvent } from "./enrich.ts";

/** Which pods and containers to show. Unset fields match everything. */
export interface KubernetesFilter {
  namespace?: string;
  pod?: string;
  container?: string;
  labels?: Record<string, string>;
  /** With a pod filter set, also show processes outside containers. */
  host?: boolean;
}

/** Whether any pod/container criterion is set (host processes then drop). */
export function selectsContainers(filter: KubernetesFilter): boolean {
  return filter.namespace !== undefined || filter.pod !== undefined ||
    filter.container !== undefined || filter.labels !== undefined;
}

/**
 * Whether an enriched event passes the filter. `labelsOf` gives the labels
 * of the event's pod when a selector is used.
 */
export function matchesFilter(
  event: TraceEvent,
  filter: KubernetesFilter,
  labelsOf: (event: TraceEvent) => Record<string, string> | undefined = () => undefined,
): boolean {
  if (!selectsContainers(filter)) return true;
  if (!event.pod) return filter.host === true;
  if (filter.namespace !== undefined && event.namespace !== filter.namespace) return false;
  if (filter.pod !== undefined && event.pod !== filter.pod) return false;
  if (filter.container !== undefined && event.container !== filter.container) return false;
  if (filter.labels !== undefined) {
    const labels = labelsOf(event);
    if (!labels) return false;
    for (const [key, value] of Object.entries(filter.labels)) {
      if (labels[key] !== value) return false;
    }
  }
  return true;
}
