/**
 * `egress record --format networkpolicy`: Kubernetes NetworkPolicy objects
 * (networking.k8s.io/v1) allowing what each group of pods reached, by
 * address blocks (a NetworkPolicy cannot name hosts) and TCP ports.
 *
 * @module
 */

import { Document } from "yaml";
import { cidrOf, parseIpBlock } from "./ip_block.ts";
import type { DestinationRecord } from "./egress_ledger.ts";
import { PolicyNames } from "./kubernetes_name.ts";
import { podGroups } from "./pod_groups.ts";
import { byPortSet, commentLines, withUnselectable } from "./policy_stream.ts";

/** A NetworkPolicy object, as written. */
export interface NetworkPolicyObject {
  apiVersion: "networking.k8s.io/v1";
  kind: "NetworkPolicy";
  metadata: { name: string; namespace: string; labels: Record<string, string> };
  spec: {
    podSelector: { matchLabels: Record<string, string> };
    policyTypes: ["Egress"];
    egress: {
      to?: { ipBlock: { cidr: string } }[];
      ports: { protocol: "TCP" | "UDP"; port: number }[];
    }[];
  };
}

/**
 * One NetworkPolicy per group of pods (namespace and stable labels): an
 * egress rule per set of addresses reached on the same ports, and, when a
 * name was resolved through DNS, DNS (port 53, UDP and TCP, to anywhere:
 * an Egress policy would block it otherwise, and tcpgadget sees TCP only).
 *
 * @example
 * ```ts
 * import { networkPolicies } from "./network_policy.ts";
 * import assert from "node:assert/strict";
 * const d = (address: string, port: number) => ({
 *   address, port, name: { name: "db.example", source: "dns" as const },
 *   verdict: "violation" as const, ipversion: 4 as const, pid: 1, count: 1, failed: 0,
 *   errors: [], firstSec: 0, firstNsec: 0,
 *   workload: { node: "n", namespace: "shop", pod: "web-0", container: "app", command: "x", labels: { app: "web" } },
 * });
 * const [policy] = networkPolicies([d("10.0.0.5", 5432), d("10.0.0.6", 5432)]);
 * assert.deepEqual(policy.spec.podSelector, { matchLabels: { app: "web" } });
 * assert.deepEqual(policy.spec.egress[0], {
 *   to: [{ ipBlock: { cidr: "10.0.0.5/32" } }, { ipBlock: { cidr: "10.0.0.6/32" } }],
 *   ports: [{ protocol: "TCP", port: 5432 }],
 * });
 * ```
 */
export function networkPolicies(destinations: readonly DestinationRecord[]): NetworkPolicyObject[] {
  const names = new PolicyNames();
  return podGroups(destinations).groups.map((group) => {
    const portsByCidr = new Map<string, Set<number>>();
    for (const d of group.destinations) {
      const cidr = cidrOf(parseIpBlock(d.address));
      let ports = portsByCidr.get(cidr);
      if (!ports) portsByCidr.set(cidr, ports = new Set());
      ports.add(d.port);
    }
    const egress: NetworkPolicyObject["spec"]["egress"] = [];
    for (const [ports, cidrs] of byPortSet(portsByCidr)) {
      egress.push({
        to: cidrs.map((cidr) => ({ ipBlock: { cidr } })),
        ports: ports.map((port) => ({ protocol: "TCP" as const, port })),
      });
    }
    if (group.destinations.some((d) => d.name?.source === "dns")) {
      egress.push({ ports: [{ protocol: "UDP", port: 53 }, { protocol: "TCP", port: 53 }] });
    }
    return {
      apiVersion: "networking.k8s.io/v1",
      kind: "NetworkPolicy",
      metadata: {
        name: names.next(group.labels, group.pods[0]),
        namespace: group.namespace,
        labels: { "app.kubernetes.io/managed-by": "tcpgadget" },
      },
      spec: { podSelector: { matchLabels: group.labels }, policyTypes: ["Egress"], egress },
    };
  });
}

/**
 * The objects as a multi-document YAML stream, each with a comment naming
 * the pods and the host names behind its addresses; the destinations no
 * NetworkPolicy can select (processes outside pods, pods of unknown
 * labels) are listed in a comment on top.
 */
export function networkPolicyText(destinations: readonly DestinationRecord[]): string {
  const { groups, unselectable } = podGroups(destinations);
  const policies = networkPolicies(destinations);
  const docs = policies.map((policy, i) => {
    const doc = new Document(policy);
    const named = [
      ...new Set(
        groups[i].destinations.filter((d) => d.name).map((d) => `${d.name!.name} = ${d.address}`),
      ),
    ].sort();
    doc.commentBefore = commentLines([
      `pods: ${groups[i].pods.map((pod) => `${groups[i].namespace}/${pod}`).join(", ")}`,
      ...(named.length > 0
        ? ["addresses of host names as seen:", ...named.map((n) => `  ${n}`)]
        : []),
    ]);
    return doc.toString({ lineWidth: 0 });
  });
  return withUnselectable(docs, unselectable, "NetworkPolicy");
}
