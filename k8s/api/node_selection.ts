/**
 * Which nodes a cluster-mode run traces: those named by `--node` (each
 * checked to exist), else every node; nodes that cannot run the agent are
 * left out with one warning each, never waited on: not Ready (kubelet
 * would never start the pod), another OS or architecture than the agent's
 * (by the `kubernetes.io/os` and `kubernetes.io/arch` labels), or virtual
 * (virtual-kubelet, EKS Fargate: no privileged pods, no host to trace).
 *
 * @module
 */

import type * as k8s from "@kubernetes/client-node";
import { TcpgadgetError } from "../../core/errors.ts";
import type { KubeClient } from "./kube_client.ts";

/** Whether a node's Ready condition is True. */
export function nodeIsReady(node: k8s.V1Node): boolean {
  return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ??
    false;
}

/**
 * The Kubernetes name (`kubernetes.io/arch`) of a Deno architecture.
 *
 * @example
 * ```ts
 * import { kubernetesArch } from "./node_selection.ts";
 * import assert from "node:assert/strict";
 * assert.equal(kubernetesArch("x86_64"), "amd64");
 * assert.equal(kubernetesArch("aarch64"), "arm64");
 * ```
 */
export function kubernetesArch(arch: string = Deno.build.arch): string {
  return arch === "x86_64" ? "amd64" : arch === "aarch64" ? "arm64" : arch;
}

/** What the agent needs of a node. */
export interface AgentRequirements {
  /** `kubernetes.io/arch` the agent runs on; undefined: any (an image may hold several). */
  arch?: string;
}

/**
 * Why the agent cannot run on `node`, or undefined if it can.
 *
 * @example
 * ```ts
 * import { whyNotTraced } from "./node_selection.ts";
 * import assert from "node:assert/strict";
 * const node = (labels: Record<string, string>, taints: { key: string; effect: string }[] = []) => ({
 *   metadata: { name: "n", labels },
 *   spec: { taints },
 *   status: { conditions: [{ type: "Ready", status: "True" }] },
 * });
 * assert.equal(whyNotTraced(node({ "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64" }), { arch: "amd64" }), undefined);
 * assert.equal(whyNotTraced(node({ "kubernetes.io/os": "windows" }), {}), "a windows node (the agent runs on Linux)");
 * assert.equal(
 *   whyNotTraced(node({ "kubernetes.io/arch": "arm64" }), { arch: "amd64" }),
 *   "an arm64 node (the agent uploaded from here runs on amd64)",
 * );
 * assert.equal(
 *   whyNotTraced(node({ type: "virtual-kubelet" }), {}),
 *   "a virtual node (virtual-kubelet: no host to trace)",
 * );
 * ```
 */
export function whyNotTraced(
  node: k8s.V1Node,
  requirements: AgentRequirements,
): string | undefined {
  const labels = node.metadata?.labels ?? {};
  const os = labels["kubernetes.io/os"] ?? labels["beta.kubernetes.io/os"];
  const arch = labels["kubernetes.io/arch"] ?? labels["beta.kubernetes.io/arch"];
  const virtualKubelet = labels["type"] === "virtual-kubelet" ||
    (node.spec?.taints ?? []).some((taint) => taint.key === "virtual-kubelet.io/provider");
  if (virtualKubelet) return "a virtual node (virtual-kubelet: no host to trace)";
  if (labels["eks.amazonaws.com/compute-type"] === "fargate") {
    return "a virtual node (EKS Fargate: no privileged pods)";
  }
  if (os !== undefined && os !== "linux") return `a ${os} node (the agent runs on Linux)`;
  if (requirements.arch !== undefined && arch !== undefined && arch !== requirements.arch) {
    return `a${
      /^[aeiou]/.test(arch) ? "n" : ""
    } ${arch} node (the agent uploaded from here runs on ${requirements.arch})`;
  }
  if (!nodeIsReady(node)) return "not Ready";
  return undefined;
}

/**
 * The names of the nodes to trace: `wanted`, checked, or every node, less
 * those that cannot run the agent (each said through `warn`). Throws if
 * none is left.
 */
export async function selectNodes(
  client: KubeClient,
  wanted: string[] | undefined,
  warn: (message: string) => void,
  requirements: AgentRequirements = {},
): Promise<string[]> {
  const list = await client.call(
    { verb: "list", resource: "nodes" },
    (core) => core.listNode(),
  );
  const nodes = new Map(list.items.map((node) => [node.metadata?.name ?? "", node]));
  nodes.delete("");
  if (wanted) {
    const unknown = wanted.filter((name) => !nodes.has(name));
    if (unknown.length > 0) {
      throw new TcpgadgetError(
        `no node named ${unknown.map((n) => `"${n}"`).join(", ")} (nodes: ${
          [...nodes.keys()].join(", ") || "none"
        })`,
      );
    }
  }
  const names = wanted ?? [...nodes.keys()];
  if (names.length === 0) throw new TcpgadgetError("the cluster has no nodes");
  const reasons = new Map<string, string>();
  for (const name of names) {
    const why = whyNotTraced(nodes.get(name)!, requirements);
    if (why === undefined) continue;
    reasons.set(name, why);
    warn(`node ${name}: ${why}, not traced`);
  }
  const traced = names.filter((name) => !reasons.has(name));
  if (traced.length === 0) {
    const notReady = [...reasons.values()].every((why) => why === "not Ready");
    throw new TcpgadgetError(
      notReady
        ? `no node could be traced: ${names.length === 1 ? "the node is not" : "no node is"} Ready`
        : `no node could be traced: ${
          names.length === 1 ? "the node cannot" : "no node can"
        } run the agent (see above)`,
    );
  }
  return traced;
}
