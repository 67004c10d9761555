/**
 * The Kubernetes filters of `trace tcp` (`-n`, `-A`, `-p`, `-c`, `-l`,
 * `--host`), applied to enriched events, and to containers by
 * k8s/node/mntns_filter.ts to tell the kernel which to let through.
 *
 * @module
 */

import type { KubernetesFields } from "../core/trace_event.ts";
import type { ContainerSelection } from "./node/mntns_filter.ts";

/** The fields a filter looks at: an enriched event, or a container's metadata. */
export type FilterFields = Pick<KubernetesFields, "namespace" | "pod" | "container">;

/** Which pods and containers to show. Unset fields match everything. */
export interface KubernetesFilter {
  namespace?: string;
  pod?: string;
  container?: string;
  labels?: Record<string, string>;
  /**
   * Pods only, even with no other criterion (cluster mode's `-A`: every
   * pod of every namespace).
   */
  podsOnly?: boolean;
  /** With a pod filter set, also show processes outside containers. */
  host?: boolean;
}

/** Whether any pod/container criterion is set (host processes then drop). */
export function selectsContainers(filter: KubernetesFilter): boolean {
  return filter.namespace !== undefined || filter.pod !== undefined ||
    filter.container !== undefined || filter.labels !== undefined || filter.podsOnly === true;
}

/**
 * Whether an enriched event (or a container, see k8s/node/mntns_filter.ts)
 * passes the filter. `labelsOf` gives the labels of its pod when a selector
 * is used.
 *
 * @example
 * ```ts
 * import { matchesFilter } from "./pod_filter.ts";
 * import assert from "node:assert/strict";
 * const fields = { namespace: "shop", pod: "web-0", container: "nginx" };
 * assert.ok(matchesFilter(fields, { namespace: "shop" }));
 * assert.ok(!matchesFilter(fields, { namespace: "cart" }));
 * assert.ok(matchesFilter({ namespace: "", pod: "", container: "" }, { pod: "web-0", host: true }));
 * assert.ok(!matchesFilter({ namespace: "", pod: "", container: "" }, { podsOnly: true }));
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

/**
 * The containers a filter selects, for the kernel's mount namespace filter
 * (k8s/node/mntns_filter.ts); undefined if it selects no containers (then
 * there is nothing to filter in the kernel).
 *
 * @example
 * ```ts
 * import { containerSelection } from "./pod_filter.ts";
 * import assert from "node:assert/strict";
 * assert.ok(containerSelection({ host: true }) === undefined);
 * const selection = containerSelection({ container: "nginx" })!;
 * const info = { namespace: "shop", pod: "web-0", container: "nginx", containerId: "", podUid: "" };
 * assert.ok(selection.matches(info));
 * ```
 */
export function containerSelection<E extends FilterFields>(
  filter: KubernetesFilter,
  labelsOf?: (fields: E) => Record<string, string> | undefined,
): ContainerSelection | undefined {
  if (!selectsContainers(filter)) return undefined;
  return { matches: (info) => matchesFilter(info as unknown as E, filter, labelsOf) };
}
