/**
 * `egress record --format cilium`: CiliumNetworkPolicy objects (cilium.io/v2)
 * allowing what each group of pods reached: host names with `toFQDNs`
 * (Cilium's DNS proxy learns their addresses), other addresses with
 * `toCIDR`, and TCP ports.
 *
 * @module
 */

import { Document } from "yaml";
import { isHostName } from "./destination_pattern.ts";
import type { DestinationRecord } from "./egress_ledger.ts";
import { cidrOf, parseIpBlock } from "./ip_block.ts";
import { PolicyNames } from "./kubernetes_name.ts";
import { podGroups } from "./pod_groups.ts";
import { byPortSet, commentLines, withUnselectable } from "./policy_stream.ts";

type ToPorts = { ports: { port: string; protocol: "TCP" | "ANY" }[]; rules?: unknown }[];

/** An egress rule of a CiliumNetworkPolicy, as written. */
export type CiliumEgressRule =
  | { toFQDNs: { matchName: string }[]; toPorts: ToPorts }
  | { toCIDR: string[]; toPorts: ToPorts }
  | { toEndpoints: { matchLabels: Record<string, string> }[]; toPorts: ToPorts };

/** A CiliumNetworkPolicy object, as written. */
export interface CiliumPolicyObject {
  apiVersion: "cilium.io/v2";
  kind: "CiliumNetworkPolicy";
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: {
    endpointSelector: { matchLabels: Record<string, string> };
    egress: CiliumEgressRule[];
  };
}

// toFQDNs works only when Cilium's DNS proxy sees the pod's lookups: a
// rule allowing DNS to kube-dns with a `dns` rule (Cilium's documented
// pattern); it also lets the pods resolve at all under the policy.
const DNS_RULE: CiliumEgressRule = {
  toEndpoints: [{
    matchLabels: { "k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns" },
  }],
  toPorts: [{ ports: [{ port: "53", protocol: "ANY" }], rules: { dns: [{ matchPattern: "*" }] } }],
};

/**
 * One CiliumNetworkPolicy per group of pods (namespace and stable labels).
 *
 * @example
 * ```ts
 * import { ciliumPolicies } from "./cilium_policy.ts";
 * import assert from "node:assert/strict";
 * const d = (address: string, port: number, name?: string) => ({
 *   address, port, name: name ? { name, source: "dns" as const } : undefined,
 *   verdict: "violation" as const, ipversion: 4 as const, pid: 1, count: 1, failed: 0,
 *   errors: [], firstSec: 0, firstNsec: 0,
 *   workload: { node: "n", namespace: "ci", pod: "build-0", container: "c", command: "npm", labels: { app: "build" } },
 * });
 * const [policy] = ciliumPolicies([d("104.16.0.35", 443, "registry.npmjs.org"), d("10.0.0.9", 5432)]);
 * assert.deepEqual(policy.spec.egress, [
 *   { toFQDNs: [{ matchName: "registry.npmjs.org" }], toPorts: [{ ports: [{ port: "443", protocol: "TCP" }] }] },
 *   { toCIDR: ["10.0.0.9/32"], toPorts: [{ ports: [{ port: "5432", protocol: "TCP" }] }] },
 *   {
 *     toEndpoints: [{ matchLabels: { "k8s:io.kubernetes.pod.namespace": "kube-system", "k8s:k8s-app": "kube-dns" } }],
 *     toPorts: [{ ports: [{ port: "53", protocol: "ANY" }], rules: { dns: [{ matchPattern: "*" }] } }],
 *   },
 * ]);
 * ```
 */
export function ciliumPolicies(destinations: readonly DestinationRecord[]): CiliumPolicyObject[] {
  const names = new PolicyNames();
  return podGroups(destinations).groups.map((group) => {
    const portsByName = new Map<string, Set<number>>();
    const portsByCidr = new Map<string, Set<number>>();
    for (const d of group.destinations) {
      const byName = d.name !== undefined && isHostName(d.name.name);
      const map = byName ? portsByName : portsByCidr;
      const key = byName ? d.name!.name : cidrOf(parseIpBlock(d.address));
      let ports = map.get(key);
      if (!ports) map.set(key, ports = new Set());
      ports.add(d.port);
    }
    const toPorts = (ports: number[]): ToPorts => [{
      ports: ports.map((port) => ({ port: String(port), protocol: "TCP" as const })),
    }];
    const egress: CiliumEgressRule[] = [
      ...byPortSet(portsByName).map(([ports, hosts]) => ({
        toFQDNs: hosts.map((matchName) => ({ matchName })),
        toPorts: toPorts(ports),
      })),
      ...byPortSet(portsByCidr).map(([ports, cidrs]) => ({
        toCIDR: cidrs,
        toPorts: toPorts(ports),
      })),
    ];
    if (portsByName.size > 0 || group.destinations.some((d) => d.name?.source === "dns")) {
      egress.push(DNS_RULE);
    }
    return {
      apiVersion: "cilium.io/v2",
      kind: "CiliumNetworkPolicy",
      metadata: {
        name: names.next(group.labels, group.pods[0]),
        namespace: group.namespace,
        labels: { "app.kubernetes.io/managed-by": "tcpgadget" },
      },
      spec: { endpointSelector: { matchLabels: group.labels }, egress },
    };
  });
}

/** The objects as a multi-document YAML stream, with comments naming the pods. */
export function ciliumPolicyText(destinations: readonly DestinationRecord[]): string {
  const { groups, unselectable } = podGroups(destinations);
  const docs = ciliumPolicies(destinations).map((policy, i) => {
    const doc = new Document(policy);
    doc.commentBefore = commentLines([
      `pods: ${groups[i].pods.map((pod) => `${groups[i].namespace}/${pod}`).join(", ")}`,
    ]);
    return doc.toString({ lineWidth: 0 });
  });
  return withUnselectable(docs, unselectable, "CiliumNetworkPolicy");
}
