/**
 * `tcpgadget cleanup`: deletes the agent pods that earlier cluster-mode
 * runs left (a client killed with SIGKILL, a laptop closed), found by
 * tcpgadget's labels, and waits until they are gone; and the local payload
 * directories such clients left in the temporary directory.
 *
 * @module
 */

import "../k8s/api/silence_node_warnings.ts";
import { TcpgadgetError } from "../core/errors.ts";
import { printable } from "../core/printable.ts";
import { printWarning } from "../core/warning.ts";
import { sweepAbandonedBundleDirs } from "../k8s/api/bundle_dir.ts";
import { KubeClient } from "../k8s/api/kube_client.ts";
import { loadKubeconfig } from "../k8s/api/kubeconfig.ts";
import { deletePods, findAgentPods } from "../k8s/api/pod_cleanup.ts";

/** Where `cleanup` writes: each deleted pod on stdout, problems on stderr. */
export interface CleanupIo {
  warn(message: string): void;
  log(message: string): void;
}

/** Deletes the pods of earlier runs in `namespace`, or in every namespace. Returns the status. */
export async function cleanup(
  options: { kubeconfig?: string; context?: string; namespace?: string },
  io: CleanupIo = { warn: printWarning, log: (message) => console.log(message) },
): Promise<number> {
  await sweepAbandonedBundleDirs().catch(() => {});
  const client = new KubeClient(loadKubeconfig(options));
  const namespace = options.namespace;
  const byNamespace = await findAgentPods(client, namespace);
  if (byNamespace.size === 0) {
    io.log(`no tcpgadget pods found${namespace ? ` in namespace ${printable(namespace)}` : ""}`);
    return 0;
  }
  let failed = 0;
  for (const [ns, names] of byNamespace) {
    const failures = await deletePods(client, ns, names, io.warn);
    for (const name of names) {
      // Names as the API server sent them: printed so they cannot move the cursor.
      if (!failures.has(name)) io.log(`deleted pod ${printable(`${ns}/${name}`)}`);
    }
    failed += failures.size;
  }
  if (failed > 0) {
    throw new TcpgadgetError(`${failed} pod${failed === 1 ? "" : "s"} could not be deleted`);
  }
  return 0;
}
