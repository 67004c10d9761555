/**
 * Naming the containers of a node without credentials or the API: from
 * `/proc`, the cgroups kubelet and the runtimes make, and kubelet's log
 * files. The per-event path is {@link ContainerEnricher} over a
 * {@link ContainerResolver}; {@link MountNamespaceFilter} tells the kernel
 * which containers' processes to let through.
 *
 * @module
 */

export {
  type ContainerInfo,
  ContainerResolver,
  type ContainerResolverOptions,
  NO_CONTAINER,
} from "./container_resolver.ts";
export { ContainerEnricher } from "./container_enricher.ts";
export {
  type ContainerSelection,
  MountNamespaceFilter,
  type MountNamespaceGate,
} from "./mntns_filter.ts";
export {
  parseCgroupPath,
  parseProcCgroup,
  type PodContainerIds,
  podContainerOfProcCgroup,
} from "./cgroup_path.ts";
export { KubeletFiles } from "./kubelet_files.ts";
export { hostMountNamespace, hostPath, mountNamespaceOf } from "./host_paths.ts";
