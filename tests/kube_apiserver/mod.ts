/**
 * A fake Kubernetes API server for tests: real HTTPS with client
 * certificate and bearer token authentication, the core/v1 endpoints a
 * cluster-mode client uses (namespaces, nodes, pods, services, events,
 * pods/exec over WebSocket, pods/log), watches, RBAC denials, PodSecurity
 * admission, and fake kubelets that really run pods' processes on this
 * machine, each pod with its own /tmp (see sandbox.ts).
 *
 * ```ts
 * await using api = await startFakeApiServer({
 *   nodes: [{ name: "node-a" }, { name: "node-b" }],
 * });
 * await api.writeKubeconfig(`${dir}/kubeconfig`);
 * // ... run the code under test against the kubeconfig ...
 * assertEquals(api.pods("tcpgadget").length, 0);
 * ```
 *
 * @module
 */

import { type Credentials, renderKubeconfig } from "./kubeconfig.ts";
import { Pki } from "./pki.ts";
import type { AccessRule } from "./rbac.ts";
import { canUseMountNamespaces, type SandboxMode } from "./sandbox.ts";
import { ApiServer, type RequestFault, type RequestMatch, type RequestRecord } from "./server.ts";
import { type Change, type KubeObject, type ObjectMeta, timestamp } from "./store.ts";
import type { DropPlan } from "./exec.ts";
import type { ImageFiles } from "./kubelet.ts";

export type {
  AccessRule,
  Credentials,
  DropPlan,
  KubeObject,
  ObjectMeta,
  RequestFault,
  RequestRecord,
  SandboxMode,
};
/** Whether pods can get mount namespaces here (root with util-linux): for skip checks. */
export { canUseMountNamespaces };
export type { ImageFiles };

/** A node taint. */
export interface Taint {
  key: string;
  value?: string;
  effect: "NoSchedule" | "PreferNoSchedule" | "NoExecute";
}

/** A fake node. Its kubelet runs the pods bound to it while it is Ready. */
export interface NodeSpec {
  name: string;
  /** Extra labels (kubernetes.io/hostname, os and arch are always set). */
  labels?: Record<string, string>;
  taints?: Taint[];
  /** Ready condition (default true). */
  ready?: boolean;
  /** InternalIP (default 127.0.1.<n>, a loopback address). */
  address?: string;
  unschedulable?: boolean;
}

/** A Service (only its data: nothing proxies traffic). */
export interface ServiceSpec {
  name: string;
  namespace?: string;
  /** Default: allocated from 127.2.0.0/16 (loopback: never routed). */
  clusterIP?: string;
  /** "ClusterIP" (default), "NodePort", "LoadBalancer", or "ExternalName". */
  type?: string;
  ports?: { port: number; targetPort?: number | string; protocol?: string; name?: string }[];
  selector?: Record<string, string>;
  labels?: Record<string, string>;
}

/** Options of {@linkcode startFakeApiServer}. */
export interface FakeApiServerOptions {
  /** Nodes to create at start (default none). */
  nodes?: NodeSpec[];
  /**
   * Namespaces to create besides default, kube-system, kube-public and
   * kube-node-lease (e.g. with PodSecurity labels).
   */
  namespaces?: (string | { name: string; labels?: Record<string, string> })[];
  /**
   * How pods run: "mount-namespace" (root: private /tmp per pod), "none"
   * (processes on the host as is), or "auto" (default: the former when
   * possible).
   */
  sandbox?: SandboxMode | "auto";
  /** Kill an exec'd process when its WebSocket closes first (default true). */
  killExecOnDisconnect?: boolean;
  /**
   * Also require `create` on pods/exec for WebSocket exec (the
   * AuthorizePodWebsocketUpgradeCreatePermission gate, on since 1.35;
   * default true). The `get` check applies in any case.
   */
  execRequiresCreate?: boolean;
  /** Treat requests without credentials as system:anonymous instead of 401 (default false). */
  anonymousAuth?: boolean;
  /** Delay between a starting pod's lifecycle steps (default 20 ms). */
  kubeletStepDelayMs?: number;
  /** ErrImagePull → ImagePullBackOff → retry period (default 300 ms). */
  imagePullBackoffMs?: number;
  /** Back-off before a container restart (default 1000 ms). */
  crashLoopBackoffMs?: number;
  /** Delay before terminating pods on missing nodes are removed (default 500 ms). */
  orphanPodGcMs?: number;
  /** Run containers' `command`/`args` as their main process (default true). */
  runContainerCommands?: boolean;
  /** Server-side watch timeout when the client gives none (default 1800 s). */
  watchTimeoutSeconds?: number;
  /** BOOKMARK period for watches with allowWatchBookmarks (default 10 000 ms; 0 = never). */
  bookmarkIntervalMs?: number;
  /** Changes kept for resuming watches (default 10 000). */
  historyLimit?: number;
  /** Name and groups of the admin user (default kubernetes-admin, [system:masters]). */
  adminUser?: string;
  adminGroups?: string[];
  /** Print every request to stderr. */
  logRequests?: boolean;
  /**
   * Write what a kubelet leaves on its node (root): each container's
   * processes in a kubelet-style cgroup (`kubepods/<qos>/pod<uid>/<id>`)
   * and its log files under /var/log/pods and /var/log/containers, so that
   * node-side tools can name pods (default false; see kubelet_files.ts).
   */
  kubeletFiles?: boolean;
  /**
   * Who terminates TLS: "node" (a Node.js front end, tls_frontend.mjs:
   * needed for flow control of exec uploads), "deno" (node:https in this
   * process: works, but buffers whatever a client sends), or "auto"
   * (default: node when `node` is on PATH).
   */
  tlsFrontend?: "auto" | "node" | "deno";
}

/** Options of {@linkcode FakeApiServer.writeKubeconfig}. */
export interface KubeconfigOptions {
  /** User (default: the admin user). Other users get credentials made on demand. */
  user?: string;
  /** Groups for a new user (default none besides system:authenticated). */
  groups?: string[];
  /** Namespace of the context. */
  namespace?: string;
  /** Context name (default "fake"); the cluster is named "fake-cluster". */
  context?: string;
  /** Client certificate (default) or bearer token. */
  auth?: "cert" | "token";
  /** Embed PEM data (default) rather than referencing files. */
  embed?: boolean;
}

/** Filter for {@linkcode FakeApiServer.countRequests}. */
export interface RequestFilter extends RequestMatch {
  user?: string;
  code?: number;
}

/** A running fake API server and its test controls. */
export interface FakeApiServer extends AsyncDisposable {
  /** `https://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** CA certificate (PEM) that signed the server and client certificates. */
  readonly ca: string;
  readonly caFile: string;
  /** The admin user's credentials (certificate and token). */
  readonly admin: Credentials;
  /** Temp dir with the PKI and kubeconfigs; removed by close(). */
  readonly dir: string;
  /** How pods are sandboxed. */
  readonly sandbox: SandboxMode;
  /** Who terminates TLS. */
  readonly tlsFrontend: "node" | "deno";

  /** Credentials for a user (made once per user and group set). */
  credentials(user: string, groups?: string[]): Promise<Credentials>;
  /** A kubeconfig (YAML) for this server. */
  kubeconfig(options?: KubeconfigOptions): Promise<string>;
  /** Writes a kubeconfig (YAML) to `path`. */
  writeKubeconfig(path: string, options?: KubeconfigOptions): Promise<void>;

  /** Adds a node (Ready unless said otherwise). */
  addNode(node: NodeSpec): KubeObject;
  /** Changes a node's labels, taints, unschedulable flag. */
  updateNode(name: string, changes: Partial<Omit<NodeSpec, "name" | "ready">>): KubeObject;
  /** Sets the Ready condition (NotReady: kubelet stops; exec fails; pods not Ready). */
  setNodeReady(name: string, ready: boolean): KubeObject;
  /** Deletes a node object (its pods are removed when deleted, as by the pod GC). */
  removeNode(name: string): void;
  /** Creates a namespace. */
  addNamespace(name: string, labels?: Record<string, string>): KubeObject;
  /** Replaces a namespace's labels (e.g. PodSecurity enforce level). */
  setNamespaceLabels(name: string, labels: Record<string, string>): KubeObject;
  /** Adds a Service. */
  addService(service: ServiceSpec): KubeObject;
  /** Deletes a Service. */
  removeService(namespace: string, name: string): void;

  /** Current pods (copies), in one namespace or all. */
  pods(namespace?: string): KubeObject[];
  /** One pod (copy), or undefined. */
  pod(namespace: string, name: string): KubeObject | undefined;
  /** Any stored object (copy): resource is pods, nodes, namespaces, services or events. */
  object(resource: string, namespace: string | undefined, name: string): KubeObject | undefined;
  /** Objects of a resource (copies). */
  objects(resource: string, namespace?: string): KubeObject[];
  /**
   * Resolves with the pod once `predicate` holds (checked now and on each
   * change); rejects after `timeoutMs` (default 10 s) with its last state.
   */
  waitForPod(
    namespace: string,
    name: string,
    predicate: (pod: KubeObject) => boolean,
    timeoutMs?: number,
  ): Promise<KubeObject>;
  /** Resolves once the pod object is gone. */
  waitForPodDeleted(namespace: string, name: string, timeoutMs?: number): Promise<void>;
  /** PIDs of a pod's live processes (pause, container commands, execs, their children). */
  podProcesses(namespace: string, name: string): number[];
  /** PIDs of all pods' live processes. */
  allPodProcesses(): number[];
  /** Exec sessions currently open. */
  readonly activeExecs: number;
  /** Watches (and followed logs) currently open. */
  readonly activeWatches: number;

  /** Denies matching requests with the real 403; returns the undo function. */
  deny(rule: AccessRule): () => void;
  /** Restricts a user to the given rules (undefined lifts it). */
  restrict(user: string, allow: AccessRule[] | undefined): void;

  /**
   * Makes pulls of an image (exact name, or a pattern) fail with
   * ErrImagePull/ImagePullBackOff, on every node or on `node` only;
   * returns the undo function (the next retry then succeeds).
   */
  failImagePull(image: string | RegExp, message?: string, node?: string): () => void;
  /**
   * Makes pods of `image` see its files (directories of an unpacked image
   * over this machine's, in each pod's mount namespace) and its Env;
   * returns the undo function. Other images' pods see this machine's files.
   */
  provideImage(image: string, files: ImageFiles): () => void;
  /**
   * Breaks the next `count` exec streams: the WebSocket is cut without a
   * close frame (like a lost connection). With an empty plan it is cut
   * right after the upgrade, before the command starts; otherwise after
   * the given stdin bytes, output bytes, or time.
   */
  dropExecStreams(count: number, plan?: DropPlan): void;
  /**
   * Fails matching requests with an injected Status, or (code "no answer")
   * holds them open unanswered; returns the undo function.
   */
  failRequests(fault: RequestFault): () => void;
  /** Ends every open watch (clients must re-watch); returns how many. */
  closeWatches(): number;
  /** Forgets the change history: watches from older resourceVersions get 410 Expired. */
  compactHistory(): void;

  /** Every request received, in order. */
  readonly requests: readonly RequestRecord[];
  /** How many requests match. */
  countRequests(filter?: RequestFilter): number;
  /** Forgets the recorded requests. */
  resetRequests(): void;

  /** Stops the server, kills every pod process, removes the temp dir. */
  close(): Promise<void>;
}

function nodeConditions(ready: boolean): unknown[] {
  const now = timestamp();
  const pressure = (type: string, reason: string, message: string) =>
    ready
      ? {
        type,
        status: "False",
        lastHeartbeatTime: now,
        lastTransitionTime: now,
        reason,
        message,
      }
      : {
        type,
        status: "Unknown",
        lastHeartbeatTime: now,
        lastTransitionTime: now,
        reason: "NodeStatusUnknown",
        message: "Kubelet stopped posting node status.",
      };
  return [
    pressure(
      "MemoryPressure",
      "KubeletHasSufficientMemory",
      "kubelet has sufficient memory available",
    ),
    pressure("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    pressure("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ready
      ? {
        type: "Ready",
        status: "True",
        lastHeartbeatTime: now,
        lastTransitionTime: now,
        reason: "KubeletReady",
        message: "kubelet is posting ready status",
      }
      : {
        type: "Ready",
        status: "Unknown",
        lastHeartbeatTime: now,
        lastTransitionTime: now,
        reason: "NodeStatusUnknown",
        message: "Kubelet stopped posting node status.",
      },
  ];
}

const UNREACHABLE = "node.kubernetes.io/unreachable";

function withReadinessTaints(taints: Taint[], ready: boolean): Taint[] {
  const others = taints.filter((t) => t.key !== UNREACHABLE);
  return ready ? others : [
    ...others,
    { key: UNREACHABLE, effect: "NoSchedule" },
    { key: UNREACHABLE, effect: "NoExecute" },
  ];
}

/**
 * Starts a fake API server on 127.0.0.1 (random port) with a fresh PKI in
 * a temp dir. Close it with `close()` or `await using`.
 */
export async function startFakeApiServer(
  options: FakeApiServerOptions = {},
): Promise<FakeApiServer> {
  const sandbox: SandboxMode = options.sandbox === undefined || options.sandbox === "auto"
    ? (canUseMountNamespaces() ? "mount-namespace" : "none")
    : options.sandbox;
  const dir = await Deno.makeTempDir({ prefix: "kube_apiserver_" });
  let server: ApiServer | undefined;
  try {
    const pki = await Pki.create(dir);
    const serving = await pki.serving();
    server = new ApiServer({
      sandboxMode: sandbox,
      killExecOnDisconnect: options.killExecOnDisconnect ?? true,
      execRequiresCreate: options.execRequiresCreate ?? true,
      anonymousAuth: options.anonymousAuth ?? false,
      stepDelayMs: options.kubeletStepDelayMs ?? 20,
      imagePullBackoffMs: options.imagePullBackoffMs ?? 300,
      crashLoopBackoffMs: options.crashLoopBackoffMs ?? 1000,
      orphanGcMs: options.orphanPodGcMs ?? 500,
      runContainerCommands: options.runContainerCommands ?? true,
      watchTimeoutSeconds: options.watchTimeoutSeconds ?? 1800,
      bookmarkIntervalMs: options.bookmarkIntervalMs ?? 10_000,
      historyLimit: options.historyLimit ?? 10_000,
      logRequests: options.logRequests ?? false,
      kubeletFiles: options.kubeletFiles ?? false,
    });
    const frontend = options.tlsFrontend === undefined || options.tlsFrontend === "auto"
      ? (hasNode() ? "node" : "deno")
      : options.tlsFrontend;
    await server.listen({ key: serving.key, cert: serving.cert, ca: pki.ca.cert }, frontend, dir);
    return await FakeApiServerImpl.create(server, pki, dir, sandbox, frontend, options);
  } catch (error) {
    await server?.close().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}

function hasNode(): boolean {
  try {
    return new Deno.Command("node", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

class FakeApiServerImpl implements FakeApiServer {
  readonly #server: ApiServer;
  readonly #pki: Pki;
  readonly #credentials = new Map<string, Promise<Credentials>>();
  readonly dir: string;
  readonly sandbox: SandboxMode;
  readonly tlsFrontend: "node" | "deno";
  readonly url: string;
  readonly port: number;
  readonly ca: string;
  readonly caFile: string;
  admin!: Credentials;
  #nodeCount = 0;
  #serviceCount = 0;
  #closing: Promise<void> | undefined;

  private constructor(
    server: ApiServer,
    pki: Pki,
    dir: string,
    sandbox: SandboxMode,
    tlsFrontend: "node" | "deno",
  ) {
    this.#server = server;
    this.#pki = pki;
    this.dir = dir;
    this.sandbox = sandbox;
    this.tlsFrontend = tlsFrontend;
    this.port = server.port;
    this.url = `https://127.0.0.1:${server.port}`;
    this.ca = pki.ca.cert;
    this.caFile = pki.ca.certFile;
  }

  static async create(
    server: ApiServer,
    pki: Pki,
    dir: string,
    sandbox: SandboxMode,
    tlsFrontend: "node" | "deno",
    options: FakeApiServerOptions,
  ): Promise<FakeApiServerImpl> {
    const api = new FakeApiServerImpl(server, pki, dir, sandbox, tlsFrontend);
    api.admin = await api.credentials(
      options.adminUser ?? "kubernetes-admin",
      options.adminGroups ?? ["system:masters"],
    );
    for (const name of ["default", "kube-node-lease", "kube-public", "kube-system"]) {
      api.addNamespace(name);
    }
    for (const ns of options.namespaces ?? []) {
      if (typeof ns === "string") api.addNamespace(ns);
      else api.addNamespace(ns.name, ns.labels);
    }
    api.addService({
      namespace: "default",
      name: "kubernetes",
      clusterIP: "127.2.0.1",
      ports: [{ name: "https", port: 443, targetPort: server.port, protocol: "TCP" }],
      labels: { component: "apiserver", provider: "kubernetes" },
    });
    for (const node of options.nodes ?? []) api.addNode(node);
    return api;
  }

  credentials(user: string, groups: string[] = []): Promise<Credentials> {
    const key = JSON.stringify([user, groups]);
    let entry = this.#credentials.get(key);
    if (!entry) {
      entry = (async () => {
        const pair = await this.#pki.client(user, groups);
        const token = `fake-token-${crypto.randomUUID()}`;
        this.#server.addToken(token, { name: user, groups });
        return { user, groups, token, ...pair };
      })();
      this.#credentials.set(key, entry);
    }
    return entry;
  }

  async kubeconfig(options: KubeconfigOptions = {}): Promise<string> {
    const credentials = options.user === undefined
      ? this.admin
      : await this.credentials(options.user, options.groups ?? []);
    return renderKubeconfig({
      server: this.url,
      ca: this.ca,
      caFile: this.caFile,
      credentials,
      auth: options.auth ?? "cert",
      embed: options.embed ?? true,
      context: options.context ?? "fake",
      cluster: "fake-cluster",
      namespace: options.namespace,
    });
  }

  async writeKubeconfig(path: string, options: KubeconfigOptions = {}): Promise<void> {
    await Deno.writeTextFile(path, await this.kubeconfig(options), { mode: 0o600 });
  }

  addNode(node: NodeSpec): KubeObject {
    const store = this.#server.store;
    if (store.has("nodes", undefined, node.name)) throw new Error(`node ${node.name} exists`);
    const index = ++this.#nodeCount;
    const ready = node.ready ?? true;
    const address = node.address ?? `127.0.1.${index}`;
    const arch = Deno.build.arch === "aarch64" ? "arm64" : "amd64";
    return store.create("nodes", {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: node.name,
        labels: {
          "beta.kubernetes.io/arch": arch,
          "beta.kubernetes.io/os": "linux",
          "kubernetes.io/arch": arch,
          "kubernetes.io/hostname": node.name,
          "kubernetes.io/os": "linux",
          ...node.labels,
        },
        annotations: {
          "node.alpha.kubernetes.io/ttl": "0",
          "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        },
      },
      spec: {
        podCIDR: `127.1.${index % 250 + 1}.0/24`,
        podCIDRs: [`127.1.${index % 250 + 1}.0/24`],
        ...(node.unschedulable ? { unschedulable: true } : {}),
        ...(withReadinessTaints(node.taints ?? [], ready).length
          ? { taints: withReadinessTaints(node.taints ?? [], ready) }
          : {}),
      },
      status: {
        capacity: { cpu: "2", "ephemeral-storage": "61202244Ki", memory: "24Gi", pods: "110" },
        allocatable: { cpu: "2", "ephemeral-storage": "56403987978", memory: "23Gi", pods: "110" },
        conditions: nodeConditions(ready),
        addresses: [
          { type: "InternalIP", address },
          { type: "Hostname", address: node.name },
        ],
        daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
        nodeInfo: {
          machineID: crypto.randomUUID().replaceAll("-", ""),
          systemUUID: crypto.randomUUID(),
          bootID: crypto.randomUUID(),
          kernelVersion: Deno.osRelease(),
          osImage: "Debian GNU/Linux 12 (bookworm)",
          containerRuntimeVersion: "containerd://2.1.0",
          kubeletVersion: "v1.35.0",
          operatingSystem: "linux",
          architecture: arch,
        },
      },
    });
  }

  updateNode(name: string, changes: Partial<Omit<NodeSpec, "name" | "ready">>): KubeObject {
    const updated = this.#server.store.mutate("nodes", undefined, name, (node) => {
      if (changes.labels) node.metadata.labels = { ...node.metadata.labels, ...changes.labels };
      if (changes.taints) {
        const ready = node.status.conditions.some((c: { type: string; status: string }) =>
          c.type === "Ready" && c.status === "True"
        );
        node.spec.taints = withReadinessTaints(changes.taints, ready);
        if (node.spec.taints.length === 0) delete node.spec.taints;
      }
      if (changes.unschedulable !== undefined) {
        if (changes.unschedulable) node.spec.unschedulable = true;
        else delete node.spec.unschedulable;
      }
      if (changes.address) {
        node.status.addresses = [
          { type: "InternalIP", address: changes.address },
          { type: "Hostname", address: name },
        ];
      }
    });
    if (!updated) throw new Error(`no node ${name}`);
    return updated;
  }

  setNodeReady(name: string, ready: boolean): KubeObject {
    const updated = this.#server.store.mutate("nodes", undefined, name, (node) => {
      node.status.conditions = nodeConditions(ready);
      const taints = withReadinessTaints(node.spec.taints ?? [], ready);
      if (taints.length) node.spec.taints = taints;
      else delete node.spec.taints;
    });
    if (!updated) throw new Error(`no node ${name}`);
    return updated;
  }

  removeNode(name: string): void {
    if (!this.#server.store.delete("nodes", undefined, name)) throw new Error(`no node ${name}`);
  }

  addNamespace(name: string, labels: Record<string, string> = {}): KubeObject {
    return this.#server.createNamespace(name, labels);
  }

  setNamespaceLabels(name: string, labels: Record<string, string>): KubeObject {
    const updated = this.#server.store.mutate("namespaces", undefined, name, (ns) => {
      ns.metadata.labels = { ...labels, "kubernetes.io/metadata.name": name };
    });
    if (!updated) throw new Error(`no namespace ${name}`);
    return updated;
  }

  addService(service: ServiceSpec): KubeObject {
    const namespace = service.namespace ?? "default";
    const n = ++this.#serviceCount;
    const clusterIP = service.clusterIP ??
      (service.type === "ExternalName" ? undefined : `127.2.${Math.floor(n / 250)}.${n % 250 + 1}`);
    const type = service.type ?? "ClusterIP";
    return this.#server.store.create("services", {
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: service.name,
        namespace,
        ...(service.labels ? { labels: service.labels } : {}),
      },
      spec: {
        ...(clusterIP ? { clusterIP, clusterIPs: [clusterIP] } : {}),
        type,
        ports: (service.ports ?? []).map((p) => ({
          ...(p.name ? { name: p.name } : {}),
          protocol: p.protocol ?? "TCP",
          port: p.port,
          targetPort: p.targetPort ?? p.port,
        })),
        ...(service.selector ? { selector: service.selector } : {}),
        sessionAffinity: "None",
        ipFamilies: ["IPv4"],
        ipFamilyPolicy: "SingleStack",
        internalTrafficPolicy: "Cluster",
      },
      status: { loadBalancer: {} },
    });
  }

  removeService(namespace: string, name: string): void {
    if (!this.#server.store.delete("services", namespace, name)) {
      throw new Error(`no service ${namespace}/${name}`);
    }
  }

  pods(namespace?: string): KubeObject[] {
    return this.#server.store.list("pods", namespace);
  }

  pod(namespace: string, name: string): KubeObject | undefined {
    return this.#server.store.get("pods", namespace, name);
  }

  object(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.#server.store.get(resource, namespace, name);
  }

  objects(resource: string, namespace?: string): KubeObject[] {
    return this.#server.store.list(resource, namespace);
  }

  #waitFor<T>(
    check: () => T | undefined,
    timeoutMs: number,
    describe: () => string,
  ): Promise<T> {
    const first = check();
    if (first !== undefined) return Promise.resolve(first);
    return new Promise<T>((resolve, reject) => {
      const unsubscribe = this.#server.store.subscribe((_change: Change) => {
        const value = check();
        if (value === undefined) return;
        clearTimeout(timer);
        unsubscribe();
        resolve(value);
      });
      const timer = setTimeout(() => {
        unsubscribe();
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${describe()}`));
      }, timeoutMs);
    });
  }

  waitForPod(
    namespace: string,
    name: string,
    predicate: (pod: KubeObject) => boolean,
    timeoutMs = 10_000,
  ): Promise<KubeObject> {
    return this.#waitFor(
      () => {
        const pod = this.pod(namespace, name);
        return pod && predicate(pod) ? pod : undefined;
      },
      timeoutMs,
      () =>
        `pod ${namespace}/${name}; last state: ${
          JSON.stringify(this.pod(namespace, name)?.status)
        }`,
    );
  }

  async waitForPodDeleted(namespace: string, name: string, timeoutMs = 10_000): Promise<void> {
    await this.#waitFor(
      () => (this.pod(namespace, name) ? undefined : true),
      timeoutMs,
      () => `pod ${namespace}/${name} to be deleted`,
    );
  }

  podProcesses(namespace: string, name: string): number[] {
    return this.#server.kubelets.processes(namespace, name);
  }

  allPodProcesses(): number[] {
    return this.#server.kubelets.allProcesses();
  }

  get activeExecs(): number {
    return this.#server.activeExecs;
  }

  get activeWatches(): number {
    return this.#server.activeWatches;
  }

  deny(rule: AccessRule): () => void {
    return this.#server.authorizer.deny(rule);
  }

  restrict(user: string, allow: AccessRule[] | undefined): void {
    this.#server.authorizer.restrict(user, allow);
  }

  provideImage(image: string, files: ImageFiles): () => void {
    return this.#server.provideImage(image, files);
  }

  failImagePull(image: string | RegExp, message?: string, node?: string): () => void {
    const name = String(image);
    return this.#server.failImagePull(
      image,
      message ??
        `rpc error: code = NotFound desc = failed to pull and unpack image "${name}": failed to resolve reference "${name}": ${name}: not found`,
      node,
    );
  }

  dropExecStreams(count: number, plan: DropPlan = {}): void {
    this.#server.dropExecStreams(count, plan);
  }

  failRequests(fault: RequestFault): () => void {
    return this.#server.failRequests(fault);
  }

  closeWatches(): number {
    return this.#server.closeWatches();
  }

  compactHistory(): void {
    this.#server.store.compact();
  }

  get requests(): readonly RequestRecord[] {
    return this.#server.requests;
  }

  countRequests(filter: RequestFilter = {}): number {
    return this.#server.requests.filter((r) =>
      Object.entries(filter).every(([k, v]) => r[k as keyof RequestRecord] === v)
    ).length;
  }

  resetRequests(): void {
    this.#server.requests.length = 0;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        await this.#server.close();
      } finally {
        await Deno.remove(this.dir, { recursive: true }).catch(() => {});
      }
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
