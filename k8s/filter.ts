/**
 * The Kubernetes filters of `trace tcp` (`-n`, `-A`, `-p`, `-c`, `-l`,
 * `--host`), applied to enriched events.
 *
 * @module
 */

import type { KubernetesFields } from "./enrich.ts";

/** The fields a filter looks at: an enriched event, or a container's metadata. */
export type FilterFields = Pick<KubernetesFields, "namespace" | "pod" | "container">;

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
 * Whether an enriched event (or a container, see k8s/mntns_filter.ts)
 * passes the filter. `labelsOf` gives the labels of its pod when a selector
 * is used.
 *
 * @example
 * ```ts
 * import { matchesFilter } from "./filter.ts";
 * const fields = { namespace: "shop", pod: "web-0", container: "nginx" };
 * matchesFilter(fields, { namespace: "shop" }); // true
 * matchesFilter({ namespace: "", pod: "", container: "" }, { pod: "web-0", host: true }); // true
 * ```
 */
export function matchesFilter<E extends FilterFields>(
  event: E,
  filter: KubernetesFilter,
  labelsOf: (event: E) => Record<string, string> | undefined = () => undefined,
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
