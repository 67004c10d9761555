/**
 * Where the test cluster keeps things, and its fixed names and addresses.
 *
 * - the cache (`/var/cache/tcpgadget-test-cluster`, or
 *   `$TCPGADGET_CLUSTER_CACHE`): built binaries, image archives, Go's module
 *   and build caches; kept by `down`, keyed by version;
 * - the state (`/var/lib/tcpgadget-test-cluster`, or
 *   `$TCPGADGET_CLUSTER_STATE`): one cluster's certificates, kubeconfigs,
 *   configs, logs, pid files, etcd, containerd and kubelet data; removed by
 *   `down`.
 *
 * @module
 */

import { VERSIONS } from "./versions.ts";

export const CACHE_DIR = Deno.env.get("TCPGADGET_CLUSTER_CACHE") ??
  "/var/cache/tcpgadget-test-cluster";
export const STATE_DIR = Deno.env.get("TCPGADGET_CLUSTER_STATE") ??
  "/var/lib/tcpgadget-test-cluster";

/** The node's name (kubelet's --hostname-override), whatever the host is called. */
export const NODE_NAME = "tcpgadget-e2e";
/** Test namespaces: agent pods and workloads; and one that Pod Security keeps at baseline. */
export const NAMESPACE = "tcpgadget-e2e";
export const BASELINE_NAMESPACE = "tcpgadget-e2e-baseline";
/** Common name of the restricted user's client certificate (no groups, no bindings). */
export const RESTRICTED_USER = "tcpgadget-e2e-restricted";

/**
 * The pod network: a bridge of its own. Its gateway address is also the
 * node's address (kubelet --node-ip, the API server's advertised address),
 * so that nothing the cluster does needs the host's own interfaces.
 */
export const BRIDGE = "tcpg0";
export const POD_CIDR = "10.244.0.0/24";
export const NODE_IP = "10.244.0.1";
export const SERVICE_CIDR = "10.96.0.0/16";
/** The first address of the service range: the `kubernetes` Service. */
export const API_SERVICE_IP = "10.96.0.1";
/** CNI network name (also the prefix of libcni's cache files). */
export const CNI_NETWORK = "tcpgadget-e2e";

/** Ports; etcd's are off its defaults so that another etcd on the host does not collide. */
export const PORTS = {
  apiserver: 6443,
  etcdClient: 32379,
  etcdPeer: 32380,
  kubelet: 10250,
  kubeletHealthz: 10248,
  controllerManager: 10257,
  scheduler: 10259,
  proxyHealthz: 10256,
  proxyMetrics: 10249,
} as const;

export const API_SERVER_URL = `https://127.0.0.1:${PORTS.apiserver}`;

/** Our iptables chains (filter table, jumped to from FORWARD and OUTPUT; raw table). */
export const ISOLATION_CHAINS = {
  forward: "TCPGADGET-E2E-FWD",
  output: "TCPGADGET-E2E-OUT",
  /** raw table, jumped to from PREROUTING and OUTPUT: loopback traffic untracked. */
  notrack: "TCPGADGET-E2E-NOTRACK",
};

export const cache = {
  dir: CACHE_DIR,
  lock: `${CACHE_DIR}/lock`,
  gomodcache: `${CACHE_DIR}/go/mod`,
  gocache: `${CACHE_DIR}/go/build`,
  kubernetes: `${CACHE_DIR}/kubernetes-${VERSIONS.kubernetes}`,
  etcd: `${CACHE_DIR}/etcd-${VERSIONS.etcd}`,
  images: `${CACHE_DIR}/images`,
};

export const KUBERNETES_BINARIES = [
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
  "kubectl",
] as const;
export type KubernetesBinary = typeof KUBERNETES_BINARIES[number];

export function kubernetesBinary(name: KubernetesBinary): string {
  return `${cache.kubernetes}/bin/${name}`;
}
export const ETCD_BINARY = `${cache.etcd}/bin/etcd`;

export const state = {
  dir: STATE_DIR,
  pki: `${STATE_DIR}/pki`,
  logs: `${STATE_DIR}/logs`,
  run: `${STATE_DIR}/run`,
  config: `${STATE_DIR}/config`,
  etcd: `${STATE_DIR}/etcd`,
  containerd: `${STATE_DIR}/containerd`,
  containerdSocket: `${STATE_DIR}/containerd/containerd.sock`,
  /**
   * containerd's registry hosts directory (config_path): a test's registry
   * on loopback is declared there (`<host:port>/hosts.toml`), read at each pull.
   */
  registryHosts: `${STATE_DIR}/containerd/certs.d`,
  cni: `${STATE_DIR}/cni`,
  kubelet: `${STATE_DIR}/kubelet`,
  /** kubelet's podLogsDir (instead of /var/log/pods). */
  podLogs: `${STATE_DIR}/pod-logs`,
  /** What `up` found before it changed the host (sysctls, pre-existing files). */
  hostRecord: `${STATE_DIR}/host.json`,
  adminKubeconfig: `${STATE_DIR}/admin.kubeconfig`,
  restrictedKubeconfig: `${STATE_DIR}/restricted.kubeconfig`,
};

/** The processes `up` starts, in start order (`down` stops them in reverse). */
export const COMPONENTS = [
  "containerd",
  "etcd",
  "kube-apiserver",
  "kube-controller-manager",
  "kube-scheduler",
  "kubelet",
  "kube-proxy",
] as const;
export type Component = typeof COMPONENTS[number];

/** Directories outside the state dir that kubelet and the CNI plugins write to (fixed paths). */
export const HOST_DIRS = {
  podLogs: "/var/log/pods",
  containerLogs: "/var/log/containers",
  cniCache: "/var/lib/cni",
  /** containerd 1.6's shims put their sockets under /run/containerd/s, whatever its config. */
  shimSockets: "/run/containerd",
  /** kubelet's device plugin socket is there whatever its --root-dir (a constant of the plugin API). */
  kubeletDefaultRoot: "/var/lib/kubelet",
};
