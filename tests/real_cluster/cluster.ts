/**
 * A real single-node Kubernetes on this machine, for tcpgadget's tests:
 *
 *     deno task cluster:up     # prints the admin kubeconfig's path as its last stdout line
 *     deno task cluster:down   # stops it and removes everything it made (not the build cache)
 *     deno run -A tests/real_cluster/cluster.ts status
 *
 * See README.md beside this file.
 *
 * @module
 */

import { ApiClient } from "./api.ts";
import { buildEtcd, buildKubernetes } from "./build.ts";
import { componentSpec, kubeProxyCleanup, writeConfigs } from "./components.ts";
import {
  mountsUnder,
  podCgroupPids,
  recordHost,
  removeHostFiles,
  removeIptablesRules,
  removeNetwork,
  removePodCgroups,
  restoreSysctls,
  setUpNetwork,
  unmountUnder,
} from "./host.ts";
import { buildImages, importImages } from "./images.ts";
import {
  BASELINE_NAMESPACE,
  cache,
  type Component,
  COMPONENTS,
  kubernetesBinary,
  NAMESPACE,
  NODE_NAME,
  PORTS,
  state,
} from "./layout.ts";
import { makePki, writeKubeconfig } from "./pki.ts";
import {
  checkRunning,
  exeOf,
  logFile,
  processesWith,
  runningPid,
  startDetached,
  stopComponent,
  stopPid,
  strayProcesses,
} from "./processes.ts";
import {
  ClusterError,
  elapsed,
  exists,
  hasCommand,
  readText,
  run,
  say,
  sleep,
  waitFor,
} from "./util.ts";
import { VERSIONS } from "./versions.ts";

/** Namespaces `up` makes, with their Pod Security level. */
const TEST_NAMESPACES: Record<string, string> = {
  [NAMESPACE]: "privileged",
  [BASELINE_NAMESPACE]: "baseline",
};

// ---------------------------------------------------------------- checks

async function checkPrerequisites(): Promise<void> {
  if (Deno.uid() !== 0) {
    throw new ClusterError("must run as root (it starts kubelet and containerd)");
  }
  for (
    const command of [
      "containerd",
      "ctr",
      "containerd-shim-runc-v2",
      "runc",
      "setsid",
      "ip",
      "iptables",
      "iptables-save",
      "iptables-restore",
      "openssl",
      "tar",
      "umount",
    ]
  ) {
    if (!hasCommand(command)) {
      throw new ClusterError(
        `${command} is not installed (.ci/run installs what the cluster needs)`,
      );
    }
  }
  if (!exists("/usr/lib/cni/bridge") && !exists("/opt/cni/bin/bridge")) {
    throw new ClusterError(
      "the CNI plugins are not installed (Debian: containernetworking-plugins)",
    );
  }
  // The cluster is configured for cgroup v1 (cgroupfs driver) as this machine has it.
  if (exists("/sys/fs/cgroup/cgroup.controllers")) {
    throw new ClusterError(
      "/sys/fs/cgroup is a cgroup v2 unified hierarchy: this test cluster is set up for cgroup v1 (kubelet 1.34, cgroupfs driver); see tests/real_cluster/README.md",
    );
  }
  for (const controller of ["cpu", "cpuacct", "cpuset", "memory", "pids"]) {
    if (!exists(`/sys/fs/cgroup/${controller}/cgroup.procs`)) {
      throw new ClusterError(
        `cgroup v1 controller ${controller} is not mounted at /sys/fs/cgroup/${controller}`,
      );
    }
  }
  // The versions the cluster was set up and measured with (Debian 12's): warn, not fail.
  const found = {
    containerd: (await run("containerd", ["--version"])).stdout.split(" ")[2] ?? "",
    runc: (await run("runc", ["--version"])).stdout.split("\n")[0].split(" ")[2] ?? "",
  };
  for (const [name, version] of Object.entries(found)) {
    const expected = VERSIONS.debian[name as keyof typeof found];
    if (!version.replace(/^v/, "").startsWith(expected)) {
      say(`warning: ${name} ${version} found; the cluster was set up with ${expected}x`);
    }
  }
}

/** Fails with one line if another program holds one of the cluster's ports. */
function checkPorts(): void {
  for (const [name, port] of Object.entries(PORTS)) {
    try {
      Deno.listen({ hostname: "0.0.0.0", port }).close();
    } catch (error) {
      if (error instanceof Deno.errors.AddrInUse) {
        throw new ClusterError(
          `port ${port} (${name}) is in use by another program: stop it first (ss -ltnp 'sport = :${port}')`,
        );
      }
      throw error;
    }
  }
}

// ---------------------------------------------------------------- API waits

async function apiReady(api: ApiClient): Promise<boolean> {
  try {
    const { status } = await api.request("GET", "/readyz");
    return status === 200;
  } catch {
    return false;
  }
}

interface NodeObject {
  spec?: { taints?: { key: string }[] };
  status?: { conditions?: { type: string; status: string; message?: string }[] };
}

async function nodeReady(api: ApiClient): Promise<{ ready: boolean; why: string }> {
  const { status, body } = await api.request("GET", `/api/v1/nodes/${NODE_NAME}`);
  if (status !== 200) return { ready: false, why: `node ${NODE_NAME} not registered yet` };
  const node = body as NodeObject;
  const ready = node.status?.conditions?.find((c) => c.type === "Ready");
  if (ready?.status !== "True") {
    return { ready: false, why: `Ready=${ready?.status ?? "?"}: ${ready?.message ?? ""}` };
  }
  // The node controller lifts the not-ready taint a moment later; the scheduler waits for that.
  const taint = node.spec?.taints?.find((t) => t.key.startsWith("node.kubernetes.io/"));
  if (taint) return { ready: false, why: `taint ${taint.key}` };
  return { ready: true, why: "" };
}

async function namespacesReady(api: ApiClient): Promise<boolean> {
  for (const namespace of ["default", ...Object.keys(TEST_NAMESPACES)]) {
    // ServiceAccount admission rejects pods until `default` exists; pods mounting
    // a token need the root CA config map.
    for (const path of [`serviceaccounts/default`, `configmaps/kube-root-ca.crt`]) {
      const { status } = await api.request("GET", `/api/v1/namespaces/${namespace}/${path}`);
      if (status !== 200) return false;
    }
  }
  return true;
}

async function createNamespaces(api: ApiClient): Promise<void> {
  for (const [name, level] of Object.entries(TEST_NAMESPACES)) {
    const labels = {
      "pod-security.kubernetes.io/enforce": level,
      "pod-security.kubernetes.io/warn": level,
      "pod-security.kubernetes.io/audit": level,
    };
    const created = await api.request("POST", "/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name, labels },
    });
    if (created.status !== 201 && created.status !== 409) {
      throw new ClusterError(
        `creating namespace ${name}: HTTP ${created.status} ${JSON.stringify(created.body)}`,
      );
    }
  }
}

/** Everything of ours runs, the API answers, the node is Ready and the namespaces are there. */
async function isHealthy(): Promise<boolean> {
  if (!COMPONENTS.every((c) => runningPid(c) !== undefined)) return false;
  if (!exists(state.adminKubeconfig)) return false;
  try {
    using api = new ApiClient();
    return await apiReady(api) && (await nodeReady(api)).ready && await namespacesReady(api);
  } catch {
    return false;
  }
}

/** Waits for a component-specific condition while checking the component still runs. */
function waitComponent<T>(
  component: Component,
  what: string,
  seconds: number,
  check: () => Promise<T | undefined>,
): Promise<T> {
  return waitFor(what, seconds, async () => {
    checkRunning(component);
    return await check();
  }, `see ${logFile(component)}`);
}

// ---------------------------------------------------------------- up

async function up(): Promise<void> {
  const start = Date.now();
  await checkPrerequisites();
  if (await isHealthy()) {
    say(`already up (node ${NODE_NAME} Ready)`);
    console.log(state.adminKubeconfig);
    return;
  }
  if (exists(state.dir) || COMPONENTS.some((c) => runningPid(c) !== undefined)) {
    say("a previous cluster is not healthy or was not stopped: removing it first");
    await down();
  }
  checkPorts();

  await buildKubernetes();
  await buildEtcd();
  await buildImages();

  const startCluster = Date.now();
  recordHost();
  await makePki();
  writeKubeconfig(state.adminKubeconfig, "admin", "kubernetes-admin");
  writeKubeconfig(state.restrictedKubeconfig, "restricted", "tcpgadget-e2e-restricted");
  writeConfigs();
  await setUpNetwork();

  await startDetached("containerd", componentSpec("containerd"));
  await waitComponent("containerd", "containerd to answer", 30, async () => {
    const result = await run("ctr", ["--address", state.containerdSocket, "version"], {
      allowFail: true,
    });
    return result.code === 0 ? true : undefined;
  });
  await importImages(state.containerdSocket);

  await startDetached("etcd", componentSpec("etcd"));
  await waitComponent("etcd", "etcd to be healthy", 30, async () => {
    try {
      const response = await fetch(`http://127.0.0.1:${PORTS.etcdClient}/health`, {
        signal: AbortSignal.timeout(2000),
      });
      const body = await response.json();
      return body.health === "true" ? true : undefined;
    } catch {
      return undefined;
    }
  });

  await startDetached("kube-apiserver", componentSpec("kube-apiserver"));
  using api = new ApiClient();
  await waitComponent(
    "kube-apiserver",
    "kube-apiserver to be ready (/readyz)",
    90,
    async () => (await apiReady(api)) || undefined,
  );
  say(`API server ready after ${elapsed(startCluster)} s`);

  for (
    const component of [
      "kube-controller-manager",
      "kube-scheduler",
      "kubelet",
      "kube-proxy",
    ] as const
  ) {
    await startDetached(component, componentSpec(component));
  }
  await createNamespaces(api);
  let why = "";
  await waitFor(`node ${NODE_NAME} to be Ready`, 90, async () => {
    for (const component of COMPONENTS) checkRunning(component);
    const node = await nodeReady(api);
    why = node.why;
    return node.ready || undefined;
  }, () => `last: ${why}; see ${logFile("kubelet")}`);
  await waitComponent(
    "kube-controller-manager",
    "default service accounts and root CA config maps",
    60,
    async () => (await namespacesReady(api)) || undefined,
  );
  for (const component of COMPONENTS) checkRunning(component);
  say(
    `up in ${elapsed(start)} s (cluster start ${elapsed(startCluster)} s); node ${NODE_NAME} Ready`,
  );
  say(`admin kubeconfig: ${state.adminKubeconfig}; restricted user: ${state.restrictedKubeconfig}`);
  console.log(state.adminKubeconfig);
}

// ---------------------------------------------------------------- down

/** Kubelet tears pods down properly (CNI DEL, volume unmounts): ask it to, while it runs. */
async function deletePods(): Promise<void> {
  if (runningPid("kube-apiserver") === undefined || runningPid("kubelet") === undefined) return;
  if (!exists(state.adminKubeconfig)) return;
  try {
    using api = new ApiClient();
    if (!(await apiReady(api))) return;
    const { status, body } = await api.request("GET", "/api/v1/pods");
    if (status !== 200) return;
    type Pod = { metadata: { name: string; namespace: string } };
    const pods = (body as { items?: Pod[] }).items ?? [];
    if (pods.length === 0) return;
    say(`deleting ${pods.length} pod(s)`);
    for (const pod of pods) {
      await api.request(
        "DELETE",
        `/api/v1/namespaces/${pod.metadata.namespace}/pods/${pod.metadata.name}?gracePeriodSeconds=0`,
      );
    }
    // Done when kubelet has stopped every sandbox (netns gone) and unmounted the pods' volumes.
    await waitFor("pods to be torn down", 60, async () => {
      const left = await api.request("GET", "/api/v1/pods");
      const items = (left.body as { items?: unknown[] }).items ?? [];
      const mounts = mountsUnder(`${state.kubelet}/pods`).length + nsfsMountsUnderState();
      return items.length === 0 && mounts === 0 ? true : undefined;
    });
  } catch (error) {
    say(
      `pods not torn down by kubelet (${
        error instanceof Error ? error.message : error
      }); removing them by force`,
    );
  }
}

function nsfsMountsUnderState(): number {
  const info = readText("/proc/self/mountinfo") ?? "";
  return info.split("\n").filter((line) =>
    line.includes(" - nsfs ") && line.split(" ")[4]?.startsWith(`${state.dir}/`)
  ).length;
}

async function down(): Promise<void> {
  const start = Date.now();
  if (Deno.uid() !== 0) throw new ClusterError("must run as root");
  const hadState = exists(state.dir);
  await deletePods();
  for (const component of [...COMPONENTS].reverse()) {
    if (component === "containerd") continue;
    if (await stopComponent(component)) say(`stopped ${component}`);
  }
  if (exists(kubernetesBinary("kube-proxy"))) {
    const { binary, args } = kubeProxyCleanup();
    await run(binary, args, { allowFail: true });
  }
  if (await stopComponent("containerd")) say("stopped containerd");
  // Shims of our containerd (they outlive it by design), then whatever still runs in the pods' cgroups.
  for (const shim of processesWith(["-address", state.containerdSocket])) {
    if (!shim.exe.split("/").pop()!.startsWith("containerd-shim")) continue;
    await stopPid(shim.pid, () => exeOf(shim.pid) === shim.exe, 0);
  }
  for (const stray of strayProcesses(state.dir, cache.dir)) {
    say(`stopping stray process ${stray.pid} (${stray.exe})`);
    await stopPid(stray.pid, () => exeOf(stray.pid) === stray.exe, 5);
  }
  if (hadState) {
    for (let round = 0; round < 20; round++) {
      const pids = podCgroupPids();
      if (pids.length === 0) break;
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      await sleep(250);
    }
  }
  await unmountUnder(state.dir);
  await removeNetwork();
  await removeIptablesRules();
  if (hadState) {
    let left: string[] = [];
    for (let round = 0; round < 20; round++) {
      left = removePodCgroups();
      if (left.length === 0) break;
      await sleep(250);
    }
    if (left.length) say(`could not remove cgroup ${left[0]} (${left.length} left)`);
  }
  await removeHostFiles();
  restoreSysctls();
  if (exists(state.dir)) {
    if (mountsUnder(state.dir).length) {
      throw new ClusterError(`${state.dir} still has mounts; not removing it`);
    }
    await run("rm", ["-rf", "--one-file-system", state.dir]);
  }
  say(
    hadState
      ? `down in ${elapsed(start)} s; everything removed (build cache kept in ${cache.dir})`
      : "nothing was running",
  );
}

// ---------------------------------------------------------------- status

async function status(): Promise<void> {
  for (const component of COMPONENTS) {
    const pid = runningPid(component);
    console.log(`${component.padEnd(24)} ${pid === undefined ? "not running" : `pid ${pid}`}`);
  }
  console.log(`healthy: ${await isHealthy()}`);
  console.log(`admin kubeconfig: ${state.adminKubeconfig}`);
}

// ---------------------------------------------------------------- main

async function main(args: string[]): Promise<number> {
  const command = args[0];
  if (!["up", "down", "status"].includes(command) || args.length !== 1) {
    console.error("usage: cluster.ts up|down|status");
    return 2;
  }
  try {
    if (Deno.uid() !== 0) throw new ClusterError("must run as root");
    Deno.mkdirSync(cache.dir, { recursive: true });
    // One up or down at a time on a machine.
    using lock = await Deno.open(cache.lock, { create: true, write: true });
    await lock.lock(true);
    if (command === "up") await up();
    else if (command === "down") await down();
    else await status();
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    console.error(`cluster ${command}: ${message}`);
    if (Deno.env.get("TCPGADGET_DEBUG") && error instanceof Error) console.error(error.stack);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
