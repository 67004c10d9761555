/**
 * The real Kubernetes cluster of the tests: the one TCPGADGET_E2E_KUBECONFIG
 * names (`deno task cluster:up` makes one on this machine, see
 * tests/real_cluster/README.md). Pods of the workload image, services,
 * tcpgadget runs against the cluster, the agent pods they leave (asked of
 * the API), and, when the cluster is the one of tests/real_cluster (its
 * node is this machine), the PIDs of a container's processes as the node
 * sees them, read from the container's cgroup.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { Actor } from "./actors.ts";
import { assert, assertEquals } from "./assert.ts";
import { CliRun } from "./cli.ts";
import { type ClusterEvent, PodActor } from "./cluster.ts";
import { BPF_SKIP_REASON } from "./privileges.ts";
import { registrySkipReason } from "./registry.ts";
import {
  BASELINE_NAMESPACE,
  NAMESPACE,
  NODE_NAME,
  state as testClusterState,
} from "../real_cluster/layout.ts";
import { VERSIONS } from "../real_cluster/versions.ts";

/** The admin kubeconfig of the cluster the real-cluster tests run against. */
export const E2E_KUBECONFIG = Deno.env.get("TCPGADGET_E2E_KUBECONFIG");
/** A namespace that admits privileged pods: agent pods and workloads (the context's namespace). */
export const E2E_NAMESPACE = Deno.env.get("TCPGADGET_E2E_NAMESPACE") ?? NAMESPACE;
/** A namespace whose Pod Security level is baseline (workloads only: it refuses the agent). */
export const E2E_BASELINE_NAMESPACE = Deno.env.get("TCPGADGET_E2E_BASELINE_NAMESPACE") ??
  BASELINE_NAMESPACE;
/** An image with python3 (the test actors run in it). */
export const E2E_WORKLOAD_IMAGE = Deno.env.get("TCPGADGET_E2E_WORKLOAD_IMAGE") ??
  VERSIONS.images.workload.name;
/** The agent image (tcpgadget's default unless set). */
export const E2E_AGENT_IMAGE = Deno.env.get("TCPGADGET_E2E_IMAGE");

/** The label tcpgadget puts on its pods. */
export const AGENT_SELECTOR = "app.kubernetes.io/managed-by=tcpgadget";

function realPath(path: string): string | undefined {
  try {
    return Deno.realPathSync(path);
  } catch {
    return undefined;
  }
}

/**
 * Whether the cluster is the one tests/real_cluster runs on this machine:
 * its node's processes, cgroups and kubelet files are this machine's, and
 * its components can be restarted.
 */
export function isLocalTestCluster(): boolean {
  return E2E_KUBECONFIG !== undefined &&
    realPath(E2E_KUBECONFIG) === realPath(testClusterState.adminKubeconfig);
}

/** What a real-cluster test needs beyond the cluster. */
export interface RealClusterNeeds {
  /** The cluster of tests/real_cluster on this machine (node PIDs, node mode, restarts). */
  local?: boolean;
  /** Root and BPF here (node mode). */
  bpf?: boolean;
  /** A registry on loopback (Debian's docker-registry, and skopeo). */
  registry?: boolean;
}

/** Why a real-cluster test cannot run, or undefined. */
export function realClusterSkipReason(needs: RealClusterNeeds = {}): string | undefined {
  if (!E2E_KUBECONFIG) {
    return "TCPGADGET_E2E_KUBECONFIG is not set (deno task cluster:up prints a cluster's kubeconfig)";
  }
  if (needs.bpf && BPF_SKIP_REASON) return BPF_SKIP_REASON;
  const registry = needs.registry ? registrySkipReason() : undefined;
  if (registry) return registry;
  if (needs.local && !isLocalTestCluster()) {
    return `needs the cluster of tests/real_cluster on this machine (TCPGADGET_E2E_KUBECONFIG=${testClusterState.adminKubeconfig}): it reads the node's cgroups and processes`;
  }
  return undefined;
}

/**
 * Registers a test against the real cluster, skipped (the reason printed
 * once per file) when what it needs is missing.
 */
export function realClusterTest(
  file: string,
  name: string,
  needs: RealClusterNeeds,
  fn: () => Promise<void>,
): void {
  const reason = realClusterSkipReason(needs);
  if (reason) console.warn(`SKIPPED (${file}, ${name}): ${reason}`);
  // Client-node keeps connections alive between requests.
  Deno.test({
    name,
    ignore: reason !== undefined,
    sanitizeOps: false,
    sanitizeResources: false,
    fn,
  });
}

/** Six hex digits, for names unique to one test run. */
export function randomSuffix(): string {
  return [...crypto.getRandomValues(new Uint8Array(3))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** HTTP status of a client-node error, or 0. */
export function statusOf(error: unknown): number {
  return (error as { code?: number }).code ?? 0;
}

/** A container of a test pod: sleeps, so that actors are exec'd into it, unless told otherwise. */
export interface TestContainer {
  name: string;
  command?: string[];
}

/** Waits (a loaded machine is given time) for `check` to return a value; its errors end the wait. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  seconds = 120,
  interval = 250,
): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    const value = await check();
    if (value !== undefined) return value;
    await sleep(interval);
  }
  throw new Error(`timed out after ${seconds} s waiting for ${what}`);
}

/** The cluster of TCPGADGET_E2E_KUBECONFIG, and what a test made in it (removed by dispose). */
export class RealCluster implements AsyncDisposable {
  readonly kubeconfig: string;
  readonly kc: k8s.KubeConfig;
  readonly core: k8s.CoreV1Api;
  readonly rbac: k8s.RbacAuthorizationV1Api;
  /** Unique to this test: in names, command names, labels. */
  readonly suffix = randomSuffix();
  readonly #pods: { namespace: string; name: string }[] = [];
  readonly #cleanups: (() => Promise<void>)[] = [];
  #agentNamespace: string | undefined;
  readonly #runIds = new Set<string>();

  constructor(kubeconfig = E2E_KUBECONFIG!) {
    this.kubeconfig = kubeconfig;
    this.kc = new k8s.KubeConfig();
    this.kc.loadFromFile(kubeconfig);
    this.core = this.kc.makeApiClient(k8s.CoreV1Api);
    this.rbac = this.kc.makeApiClient(k8s.RbacAuthorizationV1Api);
  }

  /** `prefix-<suffix>`. */
  name(prefix: string): string {
    return `${prefix}-${this.suffix}`;
  }

  /** Runs `cleanup` when the test's cluster is disposed (last registered, first run). */
  defer(cleanup: () => Promise<unknown>): void {
    this.#cleanups.push(async () => {
      await cleanup();
    });
  }

  /** The nodes that are Ready, by name. */
  async readyNodes(): Promise<string[]> {
    return (await this.core.listNode()).items.filter((node) =>
      node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True")
    ).map((node) => node.metadata!.name!).sort();
  }

  /**
   * Creates a pod of the workload image whose containers sleep (or run
   * their command), and waits until every container runs.
   */
  async pod(
    namespace: string,
    name: string,
    containers: TestContainer[],
    labels: Record<string, string> = {},
  ): Promise<k8s.V1Pod> {
    await this.createPod(namespace, name, containers, labels);
    return await this.waitPod(
      namespace,
      name,
      (pod) =>
        pod.status?.phase === "Running" && !!pod.status.podIP &&
        (pod.status.containerStatuses ?? []).filter((s) => s.state?.running).length ===
          containers.length,
      "running",
    );
  }

  /** Creates a pod (see {@link pod}) without waiting. */
  async createPod(
    namespace: string,
    name: string,
    containers: TestContainer[],
    labels: Record<string, string> = {},
  ): Promise<void> {
    this.#pods.push({ namespace, name });
    await this.core.createNamespacedPod({
      namespace,
      body: {
        metadata: { name, labels: { "app.kubernetes.io/name": "tcpgadget-e2e-test", ...labels } },
        spec: {
          restartPolicy: "Never",
          // Ends on its own if the test dies before deleting it.
          activeDeadlineSeconds: 900,
          terminationGracePeriodSeconds: 1,
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          containers: containers.map((container) => ({
            name: container.name,
            image: E2E_WORKLOAD_IMAGE,
            imagePullPolicy: "IfNotPresent",
            command: container.command ?? ["sleep", "900"],
          })),
        },
      },
    });
  }

  /** Waits until the pod satisfies `done` (at most `seconds`); fails at once if it failed. */
  async waitPod(
    namespace: string,
    name: string,
    done: (pod: k8s.V1Pod) => boolean,
    what: string,
    seconds = 180,
  ): Promise<k8s.V1Pod> {
    const deadline = Date.now() + seconds * 1000;
    let last: k8s.V1Pod | undefined;
    while (Date.now() < deadline) {
      last = await this.core.readNamespacedPod({ name, namespace });
      if (done(last)) return last;
      if (last.status?.phase === "Failed") break;
      await sleep(250);
    }
    const waiting = last?.status?.containerStatuses?.find((s) => s.state?.waiting)?.state?.waiting;
    throw new Error(
      `pod ${namespace}/${name} not ${what}: phase ${last?.status?.phase}${
        waiting ? ` (${waiting.reason}: ${waiting.message ?? ""})` : ""
      }`,
    );
  }

  /** A ClusterIP Service in front of the pods labelled `selector`. */
  async service(
    namespace: string,
    name: string,
    selector: Record<string, string>,
    port: number,
    targetPort: number,
  ): Promise<k8s.V1Service> {
    const service = await this.core.createNamespacedService({
      namespace,
      body: {
        metadata: { name },
        spec: { selector, ports: [{ port, targetPort, protocol: "TCP" }] },
      },
    });
    this.defer(() => this.core.deleteNamespacedService({ namespace, name }).catch(() => undefined));
    return service;
  }

  /** Starts tcp_actor.py named `comm` in a container (exec); `pid` is its PID in the pod. */
  async actor(
    pod: k8s.V1Pod,
    container: string,
    comm: string,
  ): Promise<PodActorOnNode> {
    const namespace = pod.metadata!.namespace!;
    const actor = await PodActor.start(this, namespace, pod.metadata!.name!, container, comm);
    this.#cleanups.push(() => actor.stop());
    const nodePid = isLocalTestCluster() ? containerNodePid(pod, container, actor.pid) : 0;
    return Object.assign(actor, { nodePid });
  }

  /**
   * The pods the trace tests share: a server pod (container `server`,
   * listening, behind a real Service), a pod of two containers (`alpha`,
   * `beta`) and one in the baseline namespace (`main`), both labelled
   * `clientLabels`; an actor in each container and one on the host.
   */
  async serverAndClients(clientLabels: Record<string, string> = {}) {
    const sfx = this.suffix;
    const serverLabels = { "tcpgadget-e2e/app": `server-${sfx}` };
    const [serverPod, webPod, otherPod] = await Promise.all([
      this.pod(E2E_NAMESPACE, `tgs-${sfx}`, [{ name: "server" }], serverLabels),
      this.pod(E2E_NAMESPACE, `tgw-${sfx}`, [{ name: "alpha" }, { name: "beta" }], clientLabels),
      this.pod(E2E_BASELINE_NAMESPACE, `tgo-${sfx}`, [{ name: "main" }], clientLabels),
    ]);
    const [server, alpha, beta, other, host] = await Promise.all([
      this.actor(serverPod, "server", `tgs-${sfx}`),
      this.actor(webPod, "alpha", `tga-${sfx}`),
      this.actor(webPod, "beta", `tgb-${sfx}`),
      this.actor(otherPod, "main", `tgo-${sfx}`),
      Actor.start(`tgh-${sfx}`),
    ]);
    this.defer(() => host.stop());
    const comms = [server, alpha, beta, other, host].map((actor) => actor.comm);
    const { sock: listener, port } = await server.do("listen 0.0.0.0");
    const service = await this.service(E2E_NAMESPACE, `tgsvc-${sfx}`, serverLabels, 80, port);
    const clusterIP = service.spec!.clusterIP!;
    const [node] = await this.readyNodes();
    const nodeObject = await this.core.readNode({ name: node });
    const nodeIP = nodeObject.status!.addresses!.find((a) => a.type === "InternalIP")!.address;
    return {
      serverPod,
      webPod,
      otherPod,
      server,
      alpha,
      beta,
      other,
      host,
      comms,
      listener,
      port,
      service,
      clusterIP,
      node,
      nodeIP,
    };
  }

  /**
   * A privileged namespace of this test's own for its runs' agent pods
   * (`--agent-namespace`), so that its runs are told apart from any other
   * run on the cluster, and `tcpgadget cleanup` there touches no one
   * else's. Deleted with the test.
   */
  async agentNamespace(): Promise<string> {
    if (this.#agentNamespace) return this.#agentNamespace;
    const name = this.name("tcpgadget-e2e-agents");
    await this.core.createNamespace({
      body: {
        metadata: {
          name,
          labels: {
            "pod-security.kubernetes.io/enforce": "privileged",
            "app.kubernetes.io/name": "tcpgadget-e2e-test",
          },
        },
      },
    });
    this.#agentNamespace = name;
    this.defer(() => this.core.deleteNamespace({ name }).catch(() => undefined));
    // ServiceAccount admission refuses pods until the namespace's default account exists.
    await eventually(`the default service account of namespace ${name}`, async () => {
      try {
        return await this.core.readNamespacedServiceAccount({ name: "default", namespace: name });
      } catch (error) {
        if (statusOf(error) === 404) return undefined;
        throw error;
      }
    }, 60);
    return name;
  }

  /**
   * Starts `trace tcp --cluster` with its agent pods in the test's own
   * namespace (see {@link agentNamespace}) and waits until its pod exists:
   * the run and its id.
   */
  async startRun(
    args: string[],
    options: { kubeconfig?: string; env?: Record<string, string> } = {},
  ): Promise<{ run: CliRun; runId: string; namespace: string }> {
    const namespace = await this.agentNamespace();
    const run = this.trace(
      ["--agent-namespace", namespace, ...args],
      options.kubeconfig,
      options.env,
    );
    let exited = false;
    run.child.status.then(() => exited = true);
    const runId = await eventually(`the agent pod of tcpgadget ${args.join(" ")}`, async () => {
      const pods = await this.core.listNamespacedPod({ namespace, labelSelector: AGENT_SELECTOR });
      const ids = [...new Set(pods.items.map((pod) => pod.metadata!.labels!["tcpgadget.io/run"]))]
        .filter((id) => !this.#runIds.has(id));
      assert(ids.length <= 1, `runs started at once: ${ids}`);
      if (ids.length === 0 && exited) {
        throw new Error(`tcpgadget exited before creating a pod: ${run.stderr}`);
      }
      return ids[0];
    }, 120);
    this.#runIds.add(runId);
    return { run, runId, namespace };
  }

  /** Starts `tcpgadget trace tcp --cluster --kubeconfig K <args>`. */
  trace(args: string[], kubeconfig = this.kubeconfig, env?: Record<string, string>): CliRun {
    // (--agent-image names an image that holds tcpgadget: no --image then.)
    const image = E2E_AGENT_IMAGE && !args.includes("--agent-image")
      ? ["--image", E2E_AGENT_IMAGE]
      : [];
    return CliRun.start(
      ["trace", "tcp", "--cluster", "--kubeconfig", kubeconfig, ...image, ...args],
      { env },
    );
  }

  /**
   * tcpgadget's pods (namespace/name): of one run, wherever they are, or
   * without `runId`, those in the test's own agent namespace.
   */
  async agentPods(runId?: string): Promise<string[]> {
    const labelSelector = `${AGENT_SELECTOR}${runId ? `,tcpgadget.io/run=${runId}` : ""}`;
    const pods = runId
      ? await this.core.listPodForAllNamespaces({ labelSelector })
      : await this.core.listNamespacedPod({
        namespace: await this.agentNamespace(),
        labelSelector,
      });
    return pods.items.map((pod) => `${pod.metadata!.namespace}/${pod.metadata!.name}`).sort();
  }

  /** The agent pod objects of one run. */
  async agentPodObjects(runId: string): Promise<k8s.V1Pod[]> {
    return (await this.core.listPodForAllNamespaces({
      labelSelector: `${AGENT_SELECTOR},tcpgadget.io/run=${runId}`,
    })).items;
  }

  /** Deletes the test's pods and waits until they are gone. */
  async deleteTestPods(): Promise<void> {
    const pods = this.#pods.splice(0);
    await Promise.all(
      pods.map(({ namespace, name }) =>
        this.core.deleteNamespacedPod({ namespace, name, gracePeriodSeconds: 0 }).catch(() => {})
      ),
    );
    await eventually("the test's pods to be gone", async () => {
      for (const { namespace, name } of pods) {
        try {
          await this.core.readNamespacedPod({ namespace, name });
          return undefined;
        } catch (error) {
          if (statusOf(error) !== 404) throw error;
        }
      }
      return true;
    }, 60);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const cleanup of this.#cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (error) {
        console.warn(`cleanup after a real-cluster test failed: ${error}`);
      }
    }
    await this.deleteTestPods();
  }
}

/** A pod actor with its PID as the node sees it (0 unless the cluster is on this machine). */
export type PodActorOnNode = PodActor & { nodePid: number };

/** The run id of a tcpgadget run, from the agent pods' names it printed or the API. */
export function runIdOf(stderr: string): string | undefined {
  return stderr.match(/tcpgadget-([0-9a-f]{6})-\d+/)?.[1];
}

/**
 * The cgroup directory (v1 pids hierarchy, else the unified one) of a
 * container of a pod on this machine, as the kubelet's cgroupfs driver
 * makes it: kubepods[/<qos>]/pod<uid>/<container id>.
 */
export function containerCgroup(pod: k8s.V1Pod, container: string): string {
  const status = pod.status?.containerStatuses?.find((s) => s.name === container);
  const id = status?.containerID?.replace(/^[a-z]+:\/\//, "");
  assert(id, `container ${container} of ${pod.metadata?.name} has no id yet`);
  const qos = (pod.status?.qosClass ?? "BestEffort").toLowerCase();
  const podDir = `${qos === "guaranteed" ? "" : `${qos}/`}pod${pod.metadata!.uid}`;
  for (const root of ["/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified", "/sys/fs/cgroup"]) {
    const dir = `${root}/kubepods/${podDir}/${id}`;
    try {
      Deno.statSync(`${dir}/cgroup.procs`);
      return dir;
    } catch {
      // next hierarchy
    }
  }
  throw new Error(`no cgroup for container ${container} (${id}) of pod ${pod.metadata?.name}`);
}

/** PIDs (as the node sees them) of a container's processes. */
export function containerNodePids(pod: k8s.V1Pod, container: string): number[] {
  return Deno.readTextFileSync(`${containerCgroup(pod, container)}/cgroup.procs`)
    .split("\n").filter(Boolean).map(Number);
}

/**
 * The node's PID of the process of `container` whose PID in its pod is
 * `podPid` (the last field of NSpid in /proc/<pid>/status).
 */
export function containerNodePid(pod: k8s.V1Pod, container: string, podPid: number): number {
  const found = containerNodePids(pod, container).filter((pid) => {
    try {
      const status = Deno.readTextFileSync(`/proc/${pid}/status`);
      const nspid = status.match(/^NSpid:\s+(.*)$/m)?.[1].split(/\s+/) ?? [];
      return Number(nspid[nspid.length - 1]) === podPid;
    } catch {
      return false;
    }
  });
  assertEquals(found.length, 1, `processes of PID ${podPid} in ${container}: ${found}`);
  return found[0];
}

/** The node's name in the test cluster (the only node). */
export const TEST_CLUSTER_NODE = NODE_NAME;

/** stderr lines with run ids and the upload's numbers made constant. */
export function stderrLines(stderr: string): string[] {
  return stderr.split("\n").filter(Boolean)
    // The kernel's counts depend on the machine's load, not on the run.
    .filter((line) => !/: lost (up to )?\d+ events/.test(line))
    // Progress of a copy under way, printed every 10 s: only on a slow machine.
    .filter((line) => !/^tcpgadget: node \S+: [\d.]+ of [\d.]+ MB from /.test(line))
    .map((line) =>
      line.replace(/tcpgadget-[0-9a-f]{6}-/g, "tcpgadget-RUN-")
        .replace(/uploaded \d+\.\d MB \(\d+\.\d MB unpacked\) in \d+\.\d s/, "uploaded N MB in T s")
    );
}

/** A Kubernetes object an address belongs to, as JSON events name it. */
export interface Endpoint {
  kind: "pod" | "svc";
  namespace: string;
  name: string;
}

/** One end of a connection: a process, its container (or none) and its address. */
export interface Party {
  /** Kubernetes names; `<>` for a process outside containers. */
  namespace: string;
  pod: string;
  container: string;
  /** PID as the node sees it. */
  pid: number;
  comm: string;
  address: string;
  containerid?: string;
  poduid?: string;
  /** What the address is named as (JSON srcendpoint/dstendpoint). */
  endpoint?: Endpoint;
}

/** The fields of an event a real-cluster test compares exactly. */
export interface SeenEvent extends ClusterEvent {
  containerid: string | null;
  poduid: string | null;
  srcendpoint?: Endpoint | null;
  dstendpoint?: Endpoint | null;
}

/** A party for a process in a pod's container (ids from the pod's status). */
export function podParty(
  pod: k8s.V1Pod,
  container: string,
  process: { nodePid: number; comm: string },
): Party {
  const status = pod.status!.containerStatuses!.find((s) => s.name === container)!;
  return {
    namespace: pod.metadata!.namespace!,
    pod: pod.metadata!.name!,
    container,
    pid: process.nodePid,
    comm: process.comm,
    address: pod.status!.podIP!,
    containerid: status.containerID!.replace(/^[a-z]+:\/\//, ""),
    poduid: pod.metadata!.uid!,
    endpoint: { kind: "pod", namespace: pod.metadata!.namespace!, name: pod.metadata!.name! },
  };
}

/** A party for a process of the node outside containers. */
export function hostParty(process: { pid: number; comm: string }, address: string): Party {
  return {
    namespace: "<>",
    pod: "<>",
    container: "<>",
    pid: process.pid,
    comm: process.comm,
    address,
    // JSON has the keys, empty.
    containerid: "",
    poduid: "",
  };
}

/** How a connection went: the client's source port and what it connected to. */
export interface Connection {
  sport: number;
  /** The address and port the client connected to (a service's, or the server's). */
  daddr: string;
  dport: number;
  /** The port the server accepted on (its listener's). */
  serverPort: number;
  /** What daddr is named as, if not the server's pod (a service). */
  dstEndpoint?: Endpoint;
}

function seen(
  node: string,
  who: Party,
  operation: string,
  ends: { saddr: string; sport: number; daddr: string; dport: number },
  endpoints: { src?: Endpoint; dst?: Endpoint } | undefined,
): SeenEvent {
  return {
    node,
    namespace: who.namespace,
    pod: who.pod,
    container: who.container,
    operation,
    pid: who.pid,
    comm: who.comm,
    ...ends,
    containerid: who.containerid ?? null,
    poduid: who.poduid ?? null,
    ...(endpoints
      ? { srcendpoint: endpoints.src ?? null, dstendpoint: endpoints.dst ?? null }
      : {}),
  };
}

/**
 * The events of one connection closed by the client first: the client's C
 * and X, the server's A and X. `withEndpoints`: JSON names the addresses
 * (cluster mode, which watches pods and services).
 */
export function connectionEvents(
  node: string,
  client: Party,
  server: Party,
  connection: Connection,
  withEndpoints: boolean,
): { client: SeenEvent[]; server: SeenEvent[] } {
  const out = {
    saddr: client.address,
    sport: connection.sport,
    daddr: connection.daddr,
    dport: connection.dport,
  };
  const back = {
    saddr: server.address,
    sport: connection.serverPort,
    daddr: client.address,
    dport: connection.sport,
  };
  const clientEnds = withEndpoints
    ? { src: client.endpoint, dst: connection.dstEndpoint ?? server.endpoint }
    : undefined;
  const serverEnds = withEndpoints ? { src: server.endpoint, dst: client.endpoint } : undefined;
  return {
    client: ["connect", "close"].map((op) => seen(node, client, op, out, clientEnds)),
    server: ["accept", "close"].map((op) => seen(node, server, op, back, serverEnds)),
  };
}

/** The comparable part of a run's JSON events by processes named `comms`, sorted. */
export function seenEvents(
  run: CliRun,
  comms: string[],
  withEndpoints: boolean,
): SeenEvent[] {
  return sortedEvents(
    run.json().filter((e) => comms.includes(e.comm as string)).map((e) => ({
      node: e.node as string,
      namespace: e.namespace as string,
      pod: e.pod as string,
      container: e.container as string,
      operation: e.operation as string,
      pid: e.pid as number,
      comm: e.comm as string,
      saddr: e.saddr as string,
      sport: e.sport as number,
      daddr: e.daddr as string,
      dport: e.dport as number,
      containerid: (e.containerid as string | undefined) ?? null,
      poduid: (e.poduid as string | undefined) ?? null,
      ...(withEndpoints
        ? {
          srcendpoint: (e.srcendpoint as Endpoint | undefined) ?? null,
          dstendpoint: (e.dstendpoint as Endpoint | undefined) ?? null,
        }
        : {}),
    })),
  );
}

/** Sorts events as {@link seenEvents} does. */
export function sortedEvents(events: SeenEvent[]): SeenEvent[] {
  return [...events].sort((a, b) => JSON.stringify(a) < JSON.stringify(b) ? -1 : 1);
}

/**
 * A connection from `client` to `server`'s `listener`, made to
 * `address`:`port` (the server's, or a service's), closed by the client
 * first. Returns the client's source port.
 */
export async function roundTrip(
  client: { do(command: string): Promise<Record<string, unknown>> },
  server: { do(command: string): Promise<Record<string, unknown>> },
  listener: number,
  address: string,
  port: number,
): Promise<number> {
  const connected = await client.do(`connect ${address} ${port}`);
  assertEquals(connected.error, null, `connect ${address} ${port}`);
  const accepted = await server.do(`accept ${listener}`);
  await client.do(`close ${connected.sock}`);
  await server.do(`wait_eof ${accepted.sock}`);
  await server.do(`close ${accepted.sock}`);
  return connected.sport as number;
}

/** The node PIDs of the tracers running in an agent pod (not its `sleep`). */
export function agentProcesses(agentPod: k8s.V1Pod): number[] {
  return containerNodePids(agentPod, "agent").filter((pid) => {
    try {
      const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
      return argv.includes("trace") && argv.some((arg) => arg.startsWith("/tmp/tcpgadget/"));
    } catch {
      return false;
    }
  });
}

/** How long a run may take to trace on a loaded 2-core machine (pods start, upload, attach). */
export const START_TIMEOUT_MS = 240_000;

/** Waits until `run` traces its node; fails at once if no node could be traced. */
export async function tracingOneNode(run: CliRun): Promise<void> {
  const line = "tracing TCP connections on 1 node";
  const failed = "no node could be traced";
  await run.waitFor(
    () => run.stderr.includes(line) || run.stderr.includes(failed),
    line,
    START_TIMEOUT_MS,
  );
  assert(run.stderr.includes(line), run.stderr);
}
