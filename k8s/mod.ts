/**
 * Kubernetes for tcpgadget, in two halves that do not depend on each other:
 *
 * - `node/`: which container and pod a process belongs to, from the node's
 *   own files (no credentials);
 * - `api/`: the Kubernetes API (metadata, and the agent pods of cluster
 *   mode);
 *
 * the agent image that holds tcpgadget (`image/`, on its own too),
 * and the pod filter (`-n`, `-p`, `-c`, `-l`, `--host`) both modes apply.
 *
 * @module
 */

export * from "./node/mod.ts";
export * from "./api/mod.ts";
export * from "./image/mod.ts";
export {
  type FilterFields,
  type KubernetesFilter,
  matchesFilter,
  selectsContainers,
} from "./pod_filter.ts";
