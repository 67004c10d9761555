/**
 * Which nodes cluster mode traces (k8s/api/node_selection.ts), against the
 * TEST API SERVER's node list: nodes that cannot run the agent (another OS
 * or architecture by their labels, virtual nodes, not Ready) are left out
 * with one warning each, never waited on. (End to end, with agents:
 * cluster_test.ts.)
 */

import nodeAssert from "node:assert/strict";
import { assertEquals } from "./helpers/assert.ts";
import { startFakeApiServer } from "./kube_apiserver/mod.ts";
import { KubeClient } from "../k8s/api/kube_client.ts";
import { loadKubeconfig } from "../k8s/api/kubeconfig.ts";
import { kubernetesArch, selectNodes } from "../k8s/api/node_selection.ts";

const OTHER_ARCH = kubernetesArch() === "amd64" ? "arm64" : "amd64";

Deno.test("node selection (test API server): other OS, other architecture, virtual and not Ready nodes are left out, one warning each", async () => {
  await using api = await startFakeApiServer({
    nodes: [
      { name: "node-a" },
      { name: "win-1", labels: { "kubernetes.io/os": "windows" } },
      { name: "arm-1", labels: { "kubernetes.io/arch": OTHER_ARCH } },
      {
        name: "vk-1",
        labels: { type: "virtual-kubelet" },
        taints: [{ key: "virtual-kubelet.io/provider", value: "azure", effect: "NoSchedule" }],
      },
      { name: "fargate-1", labels: { "eks.amazonaws.com/compute-type": "fargate" } },
      { name: "down-1", ready: false },
    ],
  });
  const path = `${api.dir}/kubeconfig`;
  await api.writeKubeconfig(path);
  const client = new KubeClient(loadKubeconfig({ kubeconfig: path }));
  const warnings: string[] = [];
  const warn = (message: string) => warnings.push(message);
  const requirements = { arch: kubernetesArch() };
  assertEquals(await selectNodes(client, undefined, warn, requirements), ["node-a"]);
  const an = /^[aeiou]/.test(OTHER_ARCH) ? "an" : "a";
  assertEquals(warnings.sort(), [
    "node arm-1: " +
    `${an} ${OTHER_ARCH} node (the agent uploaded from here runs on ${kubernetesArch()}), not traced`,
    "node down-1: not Ready, not traced",
    "node fargate-1: a virtual node (EKS Fargate: no privileged pods), not traced",
    "node vk-1: a virtual node (virtual-kubelet: no host to trace), not traced",
    "node win-1: a windows node (the agent runs on Linux), not traced",
  ]);
  // Named with --node, the same; none left is one line saying why.
  warnings.length = 0;
  await nodeAssert.rejects(selectNodes(client, ["win-1", "vk-1"], warn, requirements), {
    message: "no node could be traced: no node can run the agent (see above)",
  });
  assertEquals(warnings.length, 2);
  await nodeAssert.rejects(selectNodes(client, ["down-1"], () => {}, requirements), {
    message: "no node could be traced: the node is not Ready",
  });
});
