/**
 * Destinations grouped by the pods that reached them, each group named by
 * a label selector: what `egress record` scopes rules to and writes one
 * NetworkPolicy or CiliumNetworkPolicy for.
 *
 * @module
 */

import type { DestinationRecord } from "./egress_ledger.ts";

// Labels that differ between pods of one workload (and between its
// rollouts): a selector on them would select one pod of one revision.
const UNSTABLE_LABELS = new Set([
  "pod-template-hash",
  "controller-revision-hash",
  "pod-template-generation",
  "controller-uid",
  "batch.kubernetes.io/controller-uid",
]);

/**
 * A pod's labels without those that change from pod to pod of one
 * workload; undefined if none is left (the pod cannot be selected by
 * labels).
 *
 * @example
 * ```ts
 * import { stableLabels } from "./pod_groups.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(stableLabels({ app: "web", "pod-template-hash": "7d4b9c" }), { app: "web" });
 * assert.equal(stableLabels({ "pod-template-hash": "7d4b9c" }), undefined);
 * ```
 */
export function stableLabels(
  labels: Readonly<Record<string, string>> | undefined,
): Record<string, string> | undefined {
  if (labels === undefined) return undefined;
  const stable = Object.fromEntries(
    Object.entries(labels).filter(([key]) => !UNSTABLE_LABELS.has(key)).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0
    ),
  );
  return Object.keys(stable).length > 0 ? stable : undefined;
}

/** Pods of one namespace with the same stable labels, and the destinations they reached. */
export interface PodGroup {
  namespace: string;
  labels: Record<string, string>;
  /** Names of the pods seen. */
  pods: string[];
  destinations: DestinationRecord[];
}

/**
 * Groups the destinations reached from pods by namespace and stable
 * labels. Destinations of host processes and of pods whose labels are
 * unknown are returned apart: no selector can name them.
 *
 * @example
 * ```ts
 * import { podGroups } from "./pod_groups.ts";
 * import assert from "node:assert/strict";
 * const d = (pod: string, labels?: Record<string, string>) => ({
 *   address: "192.0.2.1", port: 443, verdict: "violation" as const, ipversion: 4 as const,
 *   pid: 1, count: 1, failed: 0, errors: [], firstSec: 0, firstNsec: 0,
 *   workload: { node: "n", namespace: pod ? "shop" : "", pod, container: "c", command: "x", labels },
 * });
 * const { groups, unselectable } = podGroups([
 *   d("web-1", { app: "web", "pod-template-hash": "a" }),
 *   d("web-2", { app: "web", "pod-template-hash": "b" }),
 *   d(""),
 *   d("job-1"),
 * ]);
 * assert.deepEqual(groups.map((g) => [g.namespace, g.labels, g.pods]), [["shop", { app: "web" }, ["web-1", "web-2"]]]);
 * assert.equal(unselectable.length, 2);
 * ```
 */
export function podGroups(
  destinations: readonly DestinationRecord[],
): { groups: PodGroup[]; unselectable: DestinationRecord[] } {
  const groups = new Map<string, PodGroup>();
  const unselectable: DestinationRecord[] = [];
  for (const d of destinations) {
    const labels = d.workload.pod ? stableLabels(d.workload.labels) : undefined;
    if (labels === undefined) {
      unselectable.push(d);
      continue;
    }
    const key = JSON.stringify([d.workload.namespace, labels]);
    let group = groups.get(key);
    if (group === undefined) {
      group = { namespace: d.workload.namespace, labels, pods: [], destinations: [] };
      groups.set(key, group);
    }
    if (!group.pods.includes(d.workload.pod)) group.pods.push(d.workload.pod);
    group.destinations.push(d);
  }
  return {
    groups: [...groups.values()].sort((a, b) => compareKeys(a, b)),
    unselectable,
  };
}

function compareKeys(a: PodGroup, b: PodGroup): number {
  const ka = JSON.stringify([a.namespace, a.labels]);
  const kb = JSON.stringify([b.namespace, b.labels]);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}
