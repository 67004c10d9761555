/**
 * How each process of the test cluster is started: its binary, its
 * arguments and the config files it reads (written by `writeConfigs`).
 *
 * @module
 */

import {
  BRIDGE,
  CNI_NETWORK,
  type Component,
  ETCD_BINARY,
  kubernetesBinary,
  NODE_IP,
  NODE_NAME,
  POD_CIDR,
  PORTS,
  SERVICE_CIDR,
  state,
} from "./layout.ts";
import { pki, writeKubeconfig } from "./pki.ts";
import { VERSIONS } from "./versions.ts";
import { hasCommand } from "./util.ts";

export interface ComponentSpec {
  binary: string;
  args: string[];
  /** Added to the environment. */
  env?: Record<string, string>;
}

/**
 * No registry can be reached from these machines, and none may be tried:
 * containerd sends every pull to a proxy on a closed loopback port, so that
 * a pull of a missing image fails at once ("proxyconnect tcp: ... connection
 * refused") without a DNS query or a connection leaving the machine.
 */
const NO_REGISTRY_PROXY = "http://127.0.0.1:1";

const config = {
  containerd: `${state.config}/containerd.toml`,
  cniConf: `${state.cni}/net.d/10-${CNI_NETWORK}.conflist`,
  kubelet: `${state.config}/kubelet.yaml`,
  kubeProxy: `${state.config}/kube-proxy.yaml`,
  kubeconfig: (name: string) => `${state.config}/${name}.kubeconfig`,
};

/** Where Debian's containernetworking-plugins put the CNI plugins. */
function cniBinDir(): string {
  for (const dir of ["/usr/lib/cni", "/opt/cni/bin"]) {
    try {
      Deno.statSync(`${dir}/bridge`);
      return dir;
    } catch {
      // next
    }
  }
  return "/usr/lib/cni";
}

function runcPath(): string {
  return hasCommand("/usr/sbin/runc") ? "/usr/sbin/runc" : "runc";
}

/** Writes every config file and the components' kubeconfigs. */
export function writeConfigs(): void {
  for (const dir of [state.config, `${state.cni}/net.d`, `${state.cni}/ipam`, state.kubelet]) {
    Deno.mkdirSync(dir, { recursive: true });
  }
  const ctd = state.containerd;
  // Everything containerd keeps (content, snapshots, runc's state, network
  // namespaces, its socket) is below the state dir, so it never meets
  // another containerd on the host and `down` finds all of it.
  Deno.writeTextFileSync(
    config.containerd,
    `version = 2
root = "${ctd}/root"
state = "${ctd}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "${state.containerdSocket}"

[ttrpc]
  address = "${ctd}/containerd.sock.ttrpc"

[debug]
  level = "info"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "${ctd}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "${VERSIONS.images.pause.name}"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    netns_mounts_under_state_dir = true
    enable_selinux = false
    disable_apparmor = true
    tolerate_missing_hugetlb_controller = true
    # This machine's root lacks CAP_SYS_RESOURCE (a sandboxed VM): runc cannot
    # lower a container's oom_score_adj below containerd's own (kubelet asks
    # -998 for sandboxes), so clamp it as for rootless containerd.
    restrict_oom_score_adj = true
    max_container_log_line_size = 16384
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "${runcPath()}"
          Root = "${ctd}/runc"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "${cniBinDir()}"
      conf_dir = "${state.cni}/net.d"
      max_conf_num = 1
    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "${state.registryHosts}"
`,
  );

  // A bridge of our own; no masquerade: pods reach each other and this host,
  // nothing beyond it (the FORWARD rules of host.ts drop the rest).
  Deno.writeTextFileSync(
    config.cniConf,
    JSON.stringify(
      {
        cniVersion: "1.0.0",
        name: CNI_NETWORK,
        plugins: [
          {
            type: "bridge",
            bridge: BRIDGE,
            isGateway: true,
            ipMasq: false,
            hairpinMode: true,
            ipam: {
              type: "host-local",
              dataDir: `${state.cni}/ipam`,
              ranges: [[{ subnet: POD_CIDR, gateway: NODE_IP }]],
              routes: [{ dst: "0.0.0.0/0" }],
            },
          },
          { type: "portmap", capabilities: { portMappings: true } },
        ],
      },
      null,
      2,
    ) + "\n",
  );

  Deno.writeTextFileSync(
    config.kubelet,
    `apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: ${PORTS.kubelet}
healthzBindAddress: 127.0.0.1
healthzPort: ${PORTS.kubeletHealthz}
readOnlyPort: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${pki.ca}
authorization:
  mode: Webhook
tlsCertFile: ${pki.cert("kubelet")}
tlsPrivateKeyFile: ${pki.key("kubelet")}
containerRuntimeEndpoint: unix://${state.containerdSocket}
cgroupDriver: cgroupfs
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
failSwapOn: false
serializeImagePulls: false
# Never delete the locally made images: they cannot be pulled again.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
# Evict only when really short: a test machine's disk and memory are shared.
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
rotateCertificates: false
serverTLSBootstrap: false
protectKernelDefaults: false
# No KUBE-FIREWALL chain: its rule dropping traffic to 127.0.0.0/8 from other
# source addresses breaks this project's other tests on the same machine
# (kube-proxy adds it only for localhost NodePorts, which are off).
makeIPTablesUtilChains: false
syncFrequency: 10s
fileCheckFrequency: 10s
staticPodPath: ""
# Pod logs below the state dir, not /var/log/pods: kubelet's container GC
# deletes, every minute, each directory there of a pod it does not know,
# and this project's fake-cluster tests write their kubelet files there.
# The links in /var/log/containers (a fixed path) point here; they carry
# the pod, namespace, container, container id and (in the target) pod UID.
podLogsDir: ${state.podLogs}
`,
  );

  Deno.writeTextFileSync(
    config.kubeProxy,
    `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: ${config.kubeconfig("kube-proxy")}
mode: iptables
hostnameOverride: ${NODE_NAME}
clusterCIDR: ${POD_CIDR}
healthzBindAddress: 127.0.0.1:${PORTS.proxyHealthz}
metricsBindAddress: 127.0.0.1:${PORTS.proxyMetrics}
# NodePorts only on the node's own address, not on the host's interfaces.
nodePortAddresses: ["${NODE_IP}/32"]
iptables:
  # Else kube-proxy sets net.ipv4.conf.all.route_localnet=1.
  localhostNodePorts: false
# Zeros leave the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`,
  );

  writeKubeconfig(
    config.kubeconfig("controller-manager"),
    "controller-manager",
    "system:kube-controller-manager",
    "default",
  );
  writeKubeconfig(config.kubeconfig("scheduler"), "scheduler", "system:kube-scheduler", "default");
  writeKubeconfig(
    config.kubeconfig("kubelet"),
    "kubelet-client",
    `system:node:${NODE_NAME}`,
    "default",
  );
  writeKubeconfig(config.kubeconfig("kube-proxy"), "kube-proxy", "system:kube-proxy", "default");
}

/** The command line of each component. */
export function componentSpec(component: Component): ComponentSpec {
  switch (component) {
    case "containerd":
      return {
        binary: "/usr/bin/containerd",
        args: ["--config", config.containerd],
        env: {
          HTTP_PROXY: NO_REGISTRY_PROXY,
          HTTPS_PROXY: NO_REGISTRY_PROXY,
          http_proxy: NO_REGISTRY_PROXY,
          https_proxy: NO_REGISTRY_PROXY,
          NO_PROXY: "",
          no_proxy: "",
        },
      };
    case "etcd":
      return {
        binary: ETCD_BINARY,
        args: [
          "--name=tcpgadget-e2e",
          `--data-dir=${state.etcd}`,
          `--listen-client-urls=http://127.0.0.1:${PORTS.etcdClient}`,
          `--advertise-client-urls=http://127.0.0.1:${PORTS.etcdClient}`,
          `--listen-peer-urls=http://127.0.0.1:${PORTS.etcdPeer}`,
          `--initial-advertise-peer-urls=http://127.0.0.1:${PORTS.etcdPeer}`,
          `--initial-cluster=tcpgadget-e2e=http://127.0.0.1:${PORTS.etcdPeer}`,
          "--listen-metrics-urls=",
          // A test cluster: no fsync per write (much faster on a VM disk).
          "--unsafe-no-fsync",
          "--log-level=warn",
        ],
      };
    case "kube-apiserver":
      return {
        binary: kubernetesBinary("kube-apiserver"),
        args: [
          `--advertise-address=${NODE_IP}`,
          `--secure-port=${PORTS.apiserver}`,
          `--etcd-servers=http://127.0.0.1:${PORTS.etcdClient}`,
          `--service-cluster-ip-range=${SERVICE_CIDR}`,
          `--client-ca-file=${pki.ca}`,
          `--tls-cert-file=${pki.cert("apiserver")}`,
          `--tls-private-key-file=${pki.key("apiserver")}`,
          `--kubelet-client-certificate=${pki.cert("apiserver-kubelet-client")}`,
          `--kubelet-client-key=${pki.key("apiserver-kubelet-client")}`,
          `--kubelet-certificate-authority=${pki.ca}`,
          "--kubelet-preferred-address-types=InternalIP",
          "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
          `--service-account-key-file=${pki.saPub}`,
          `--service-account-signing-key-file=${pki.saKey}`,
          "--authorization-mode=Node,RBAC",
          // On top of the default plugins (PodSecurity, ServiceAccount, ...).
          "--enable-admission-plugins=NodeRestriction",
          "--allow-privileged=true",
          "--profiling=false",
          "--v=1",
        ],
      };
    case "kube-controller-manager":
      return {
        binary: kubernetesBinary("kube-controller-manager"),
        args: [
          `--kubeconfig=${config.kubeconfig("controller-manager")}`,
          `--authentication-kubeconfig=${config.kubeconfig("controller-manager")}`,
          `--authorization-kubeconfig=${config.kubeconfig("controller-manager")}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${PORTS.controllerManager}`,
          `--root-ca-file=${pki.ca}`,
          `--service-account-private-key-file=${pki.saKey}`,
          `--cluster-signing-cert-file=${pki.ca}`,
          `--cluster-signing-key-file=${pki.caKey}`,
          "--use-service-account-credentials=true",
          `--service-cluster-ip-range=${SERVICE_CIDR}`,
          "--leader-elect=false",
          "--v=1",
        ],
      };
    case "kube-scheduler":
      return {
        binary: kubernetesBinary("kube-scheduler"),
        args: [
          `--kubeconfig=${config.kubeconfig("scheduler")}`,
          `--authentication-kubeconfig=${config.kubeconfig("scheduler")}`,
          `--authorization-kubeconfig=${config.kubeconfig("scheduler")}`,
          "--bind-address=127.0.0.1",
          `--secure-port=${PORTS.scheduler}`,
          "--leader-elect=false",
          "--v=1",
        ],
      };
    case "kubelet":
      return {
        binary: kubernetesBinary("kubelet"),
        args: [
          `--config=${config.kubelet}`,
          `--kubeconfig=${config.kubeconfig("kubelet")}`,
          `--root-dir=${state.kubelet}`,
          `--hostname-override=${NODE_NAME}`,
          `--node-ip=${NODE_IP}`,
          "--v=1",
        ],
      };
    case "kube-proxy":
      return {
        binary: kubernetesBinary("kube-proxy"),
        args: [`--config=${config.kubeProxy}`, "--v=1"],
      };
  }
}

/** kube-proxy's own removal of its rules (iptables, and nftables/ipvs if ever used). */
export function kubeProxyCleanup(): ComponentSpec {
  return { binary: kubernetesBinary("kube-proxy"), args: ["--cleanup"] };
}
