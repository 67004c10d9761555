/**
 * Which nodes a cluster-mode run traces: those named by `--node` (each
 * checked to exist), else every node; nodes that are not Ready, whose
 * kubelet would never start a pod, are left out with a warning.
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
 * The names of the nodes to trace: `wanted`, checked, or every node, less
 * those that are not Ready (each said through `warn`). Throws if none is
 * left.
 */
export async function selectNodes(
  client: KubeClient,
  wanted: string[] | undefined,
  warn: (message: string) => void,
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
  const ready = names.filter((name) => nodeIsReady(nodes.get(name)!));
  for (const name of names) {
    if (!ready.includes(name)) warn(`node ${name}: not Ready, not traced`);
  }
  if (ready.length === 0) {
    throw new TcpgadgetError(
      `no node could be traced: ${names.length === 1 ? "the node is not" : "no node is"} Ready`,
    );
  }
  return ready;
}
