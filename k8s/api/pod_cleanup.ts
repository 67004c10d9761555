/**
 * Deleting tcpgadget's agent pods and waiting until they are gone, that is
 * until their kubelet has stopped their processes: at the end of every run,
 * and for `tcpgadget cleanup`, which finds the pods of earlier runs by
 * label.
 *
 * @module
 */

import { errorLine } from "../../core/errors.ts";
import { sleep } from "../../core/sleep.ts";
import { ApiUnreachableError, httpStatus } from "./api_errors.ts";
import { MANAGED_BY, MANAGED_BY_LABEL, RUN_LABEL } from "./agent_pod.ts";
import type { KubeClient } from "./kube_client.ts";

/** How long deleted pods are waited for. */
export const CLEANUP_TIMEOUT_MS = 30_000;

/**
 * Deletes pods and waits (at most {@link CLEANUP_TIMEOUT_MS}) until they
 * are gone. Returns the pods that could not be deleted, or are still there,
 * with why; `warn` says the same to the user.
 */
export async function deletePods(
  client: KubeClient,
  namespace: string,
  names: string[],
  warn: (message: string) => void,
): Promise<Map<string, string>> {
  const failures = new Map<string, string>();
  // The pods' own grace period (1 s): the kubelet stops their processes
  // before the objects go, so their absence means they are stopped.
  await Promise.all(names.map(async (name) => {
    try {
      await client.call(
        { verb: "delete", resource: "pods", namespace, name },
        (core) => core.deleteNamespacedPod({ name, namespace }),
      );
    } catch (error) {
      const cause = (error as Error).cause;
      if (httpStatus(cause) !== 404) failures.set(name, errorLine(error));
    }
  }));
  // Every request of the wait ends by the deadline, answered or not.
  const deadline = performance.now() + CLEANUP_TIMEOUT_MS;
  let remaining = names.filter((name) => !failures.has(name));
  let unanswered: string | undefined;
  while (remaining.length > 0) {
    const left = deadline - performance.now();
    if (left <= 0) break;
    try {
      remaining = await stillThere(client, namespace, remaining, Math.min(client.timeoutMs, left));
      unanswered = undefined;
    } catch (error) {
      unanswered = errorLine(error);
    }
    if (remaining.length > 0) await sleep(Math.min(200, Math.max(0, deadline - performance.now())));
  }
  for (const [name, why] of failures) warn(`cannot delete pod ${namespace}/${name}: ${why}`);
  if (remaining.length > 0 && unanswered !== undefined) {
    warn(
      `cannot tell whether pods ${
        remaining.join(", ")
      } (namespace ${namespace}) are gone: ${unanswered}; 'tcpgadget cleanup' removes leftovers`,
    );
    for (const name of remaining) failures.set(name, unanswered);
  } else if (remaining.length > 0) {
    warn(
      `pods still being deleted after ${CLEANUP_TIMEOUT_MS / 1000} s: ${
        remaining.join(", ")
      } (namespace ${namespace}); 'tcpgadget cleanup' removes leftovers`,
    );
    for (const name of remaining) failures.set(name, "still being deleted");
  }
  return failures;
}

/**
 * Which of the pods still exist: one list of tcpgadget's pods, else one
 * read per pod, each bounded by `timeoutMs`. Throws if the server cannot
 * be reached.
 */
async function stillThere(
  client: KubeClient,
  namespace: string,
  names: string[],
  timeoutMs: number,
): Promise<string[]> {
  try {
    const list = await client.call(
      { verb: "list", resource: "pods", namespace },
      (core) =>
        core.listNamespacedPod({ namespace, labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}` }),
      timeoutMs,
    );
    const listed = new Set(list.items.map((pod) => pod.metadata?.name));
    return names.filter((name) => listed.has(name));
  } catch (error) {
    // A server that does not answer would not answer reads either.
    if (error instanceof ApiUnreachableError) throw error;
    // Not allowed to list (or another failure): ask for each.
  }
  const still: string[] = [];
  await Promise.all(names.map(async (name) => {
    try {
      await client.call(
        { verb: "get", resource: "pods", namespace, name },
        (core) => core.readNamespacedPod({ name, namespace }),
        timeoutMs,
      );
      still.push(name);
    } catch (error) {
      if (httpStatus((error as Error).cause) !== 404) still.push(name);
    }
  }));
  return still;
}

/**
 * The agent pods of every run (tcpgadget's label and a run label), by
 * namespace, in `namespace` or in every namespace.
 */
export async function findAgentPods(
  client: KubeClient,
  namespace: string | undefined,
): Promise<Map<string, string[]>> {
  const labelSelector = `${MANAGED_BY_LABEL}=${MANAGED_BY},${RUN_LABEL}`;
  const pods = namespace
    ? await client.call(
      { verb: "list", resource: "pods", namespace },
      (core) => core.listNamespacedPod({ namespace, labelSelector }),
    )
    : await client.call(
      { verb: "list", resource: "pods" },
      (core) => core.listPodForAllNamespaces({ labelSelector }),
    );
  const byNamespace = new Map<string, string[]>();
  for (const pod of pods.items) {
    const ns = pod.metadata?.namespace ?? "default";
    byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), pod.metadata?.name ?? ""]);
  }
  for (const names of byNamespace.values()) names.sort();
  return byNamespace;
}
