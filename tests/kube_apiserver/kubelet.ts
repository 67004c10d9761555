/**
 * The fake nodes' kubelets: they watch the store and move pods bound to a
 * Ready node through the lifecycle a real kubelet reports (Pending with
 * ContainerCreating, image pull errors and back-off, Running with IPs,
 * container exits and restarts, activeDeadlineSeconds, graceful deletion
 * ending in a terminal phase and removal), running each pod in a sandbox
 * on this machine (see sandbox.ts). Also records the kubelet's Events.
 *
 * @module
 */

// deno-lint-ignore-file no-explicit-any

import { KubeletFiles } from "./kubelet_files.ts";
import { type MountSpec, PodSandbox, type SandboxMode } from "./sandbox.ts";
import { type Change, type KubeObject, type Store, timestamp } from "./store.ts";

/** A timer handle (Node typings are in scope, so not `number`). */
type Timer = ReturnType<typeof setTimeout>;

/** Tuning and hooks of the fake kubelets. */
export interface KubeletConfig {
  store: Store;
  sandboxMode: SandboxMode;
  /** Delay between the lifecycle steps of a starting pod. */
  stepDelayMs: number;
  /** Time between ErrImagePull and ImagePullBackOff, and between pull retries. */
  imagePullBackoffMs: number;
  /** Back-off before restarting a container that exited. */
  crashLoopBackoffMs: number;
  /** Delay before terminating pods bound to a missing node are force-deleted (pod GC). */
  orphanGcMs: number;
  /** Run `command`/`args` of containers as their main process. */
  runContainerCommands: boolean;
  /** The pull error message for an image on a node, or undefined if it pulls. */
  imagePullFailure(image: string, node: string): string | undefined;
  /** The files an image provides to its pods' processes, if the test gave any. */
  imageFiles?(image: string): ImageFiles | undefined;
  /** Host and port of the API server (for KUBERNETES_SERVICE_* env). */
  apiServer(): { host: string; port: number };
  /** Write kubelet's cgroups and log files on the host (kubelet_files.ts). */
  kubeletFiles?: boolean;
}

/**
 * What an image provides to its pods' processes, which otherwise see this
 * machine's files: directories of an unpacked image bind-mounted over the
 * host's in the pod's mount namespace (read-only), and the image's Env.
 */
export interface ImageFiles {
  /** Where the pod sees each directory (target) and where it is here (source). */
  binds: Record<string, string>;
  env?: Record<string, string>;
}

/** Default PATH of container processes. */
export const CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const LOG_LIMIT = 4 * 1024 * 1024;

/** A container's captured output, for pods/log. */
export class LogBuffer {
  #chunks: Uint8Array[] = [];
  #size = 0;
  readonly #followers = new Set<(chunk: Uint8Array | null) => void>();

  append(chunk: Uint8Array): void {
    this.#chunks.push(chunk);
    this.#size += chunk.length;
    while (this.#size > LOG_LIMIT && this.#chunks.length > 1) {
      this.#size -= this.#chunks.shift()!.length;
    }
    for (const f of this.#followers) f(chunk);
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.#size);
    let offset = 0;
    for (const c of this.#chunks) {
      out.set(c, offset);
      offset += c.length;
    }
    return out;
  }

  /** Calls `fn` for each new chunk, and with null when the container ends. */
  follow(fn: (chunk: Uint8Array | null) => void): () => void {
    this.#followers.add(fn);
    return () => this.#followers.delete(fn);
  }

  end(): void {
    for (const f of this.#followers) f(null);
    this.#followers.clear();
  }
}

type ContainerStateValue =
  | { waiting: { reason: string; message?: string } }
  | { running: { startedAt: string } }
  | {
    terminated: {
      exitCode: number;
      signal?: number;
      reason: string;
      message?: string;
      startedAt?: string;
      finishedAt: string;
      containerID?: string;
    };
  };

interface ContainerRuntime {
  spec: any;
  init: boolean;
  state: ContainerStateValue;
  lastState: ContainerStateValue | Record<string, never>;
  restartCount: number;
  containerID?: string;
  imageID?: string;
  process?: Deno.ChildProcess;
  exited?: Promise<void>;
  log: LogBuffer;
  previousLog?: LogBuffer;
  /** Its cgroups' `cgroup.procs` files (kubelet files). */
  cgroupProcs?: string[];
}

class Aborted extends Error {}

/** Whether a node object has Ready=True. */
export function nodeIsReady(node: KubeObject | undefined): boolean {
  return !!node?.status?.conditions?.some((c: any) => c.type === "Ready" && c.status === "True");
}

/** The InternalIP of a node object. */
export function nodeAddress(node: KubeObject | undefined): string {
  const addresses: any[] = node?.status?.addresses ?? [];
  return addresses.find((a) => a.type === "InternalIP")?.address ?? "127.0.0.1";
}

function tolerates(tolerations: any[], taint: any): boolean {
  return tolerations.some((t) => {
    if (t.effect && t.effect !== taint.effect) return false;
    if (t.operator === "Exists") return !t.key || t.key === taint.key;
    return t.key === taint.key && (t.value ?? "") === (taint.value ?? "");
  });
}

function hexId(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Records a core/v1 Event about a pod, as the kubelet does. */
export function recordEvent(
  store: Store,
  pod: KubeObject,
  type: "Normal" | "Warning",
  reason: string,
  message: string,
  options: { fieldPath?: string; component?: string; host?: string } = {},
): void {
  const ns = pod.metadata.namespace ?? "default";
  if (!store.has("namespaces", undefined, ns)) return;
  const now = timestamp();
  const component = options.component ?? "kubelet";
  const name = `${pod.metadata.name}.${(BigInt(Date.now()) * 1_000_000n).toString(16)}${hexId(2)}`;
  store.create("events", {
    apiVersion: "v1",
    kind: "Event",
    metadata: { name, namespace: ns },
    involvedObject: {
      kind: "Pod",
      namespace: ns,
      name: pod.metadata.name,
      uid: pod.metadata.uid,
      apiVersion: "v1",
      resourceVersion: pod.metadata.resourceVersion,
      ...(options.fieldPath ? { fieldPath: options.fieldPath } : {}),
    },
    reason,
    message,
    source: { component, ...(options.host ? { host: options.host } : {}) },
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
    type,
    eventTime: null,
    reportingComponent: component,
    reportingInstance: options.host ?? "",
  });
}

/** What an exec needs to run in a container, or why it cannot. */
export type ExecTarget =
  | {
    ok: true;
    sandbox: PodSandbox;
    env: Record<string, string>;
    cwd: string;
    cgroupProcs?: string[];
  }
  | { ok: false; why: "container-not-found" | "node-not-ready"; nodeAddress: string };

/** One pod as run by its node's kubelet. */
class PodRuntime {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly nodeName: string;
  readonly #kubelets: Kubelets;
  readonly #config: KubeletConfig;
  #pod: KubeObject;
  sandbox: PodSandbox | undefined;
  readonly containers = new Map<string, ContainerRuntime>();
  readonly #abort = new AbortController();
  /** Aborted by kill(): cuts a graceful termination short. */
  readonly #killed = new AbortController();
  readonly #timers = new Set<Timer>();
  readonly #transitions = new Map<string, { status: string; time: string }>();
  #startTime: string | undefined;
  #podIP: string | undefined;
  #phase = "Pending";
  #reason: string | undefined;
  #message: string | undefined;
  #terminating: Promise<void> | undefined;
  #gone = false;
  #started = false;
  readonly done: Promise<void>;

  constructor(kubelets: Kubelets, config: KubeletConfig, pod: KubeObject) {
    this.#kubelets = kubelets;
    this.#config = config;
    this.#pod = pod;
    this.uid = pod.metadata.uid!;
    this.namespace = pod.metadata.namespace!;
    this.name = pod.metadata.name;
    this.nodeName = pod.spec.nodeName;
    for (const spec of pod.spec.initContainers ?? []) this.#addContainer(spec, true);
    for (const spec of pod.spec.containers ?? []) this.#addContainer(spec, false);
    this.done = this.#run().catch((error) => {
      if (!(error instanceof Aborted)) console.error("kube_apiserver: kubelet:", error);
    });
  }

  #addContainer(spec: any, init: boolean): void {
    this.containers.set(spec.name, {
      spec,
      init,
      state: { waiting: { reason: init ? "PodInitializing" : "ContainerCreating" } },
      lastState: {},
      restartCount: 0,
      log: new LogBuffer(),
    });
  }

  get terminal(): boolean {
    return this.#phase === "Succeeded" || this.#phase === "Failed";
  }

  get terminatingOrGone(): boolean {
    return this.#terminating !== undefined || this.#gone;
  }

  get pod(): KubeObject {
    return this.#pod;
  }

  #node(): KubeObject | undefined {
    return this.#config.store.get("nodes", undefined, this.nodeName);
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.#abort.signal.aborted) return reject(new Aborted());
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        this.#abort.signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      this.#timers.add(timer);
      const onAbort = () => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        reject(new Aborted());
      };
      this.#abort.signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  #timer(ms: number, fn: () => void): void {
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      fn();
    }, ms);
    this.#timers.add(timer);
  }

  #check(): void {
    if (this.#abort.signal.aborted) throw new Aborted();
  }

  #event(type: "Normal" | "Warning", reason: string, message: string, container?: string): void {
    recordEvent(this.#config.store, this.#pod, type, reason, message, {
      fieldPath: container ? `spec.containers{${container}}` : undefined,
      host: this.nodeName,
    });
  }

  async #run(): Promise<void> {
    await this.#sleep(this.#config.stepDelayMs);
    const node = this.#node();
    // Kubelet admission: the node must satisfy the pod's nodeSelector.
    const selector: Record<string, string> = this.#pod.spec.nodeSelector ?? {};
    if (Object.entries(selector).some(([k, v]) => node?.metadata.labels?.[k] !== v)) {
      this.#phase = "Failed";
      this.#reason = "NodeAffinity";
      this.#message = "Pod was rejected: Predicate NodeAffinity failed";
      this.#publish();
      this.#event("Warning", "NodeAffinity", "Predicate NodeAffinity failed");
      return;
    }
    this.#startTime = timestamp();
    this.#publish();
    this.#armDeadline();
    this.#check();
    try {
      this.sandbox = await PodSandbox.start(this.#config.sandboxMode, this.#mounts());
    } catch (error) {
      // Like a failed volume setup: the containers cannot be created.
      const message = error instanceof Error ? error.message : String(error);
      for (const c of this.containers.values()) {
        c.state = { waiting: { reason: "CreateContainerError", message } };
      }
      this.#publish();
      this.#event("Warning", "FailedMount", message);
      return;
    }
    const files = this.#kubelets.files;
    if (files) this.sandbox.onStop(() => files.removePod(this.uid));
    if (this.#abort.signal.aborted) {
      await this.sandbox.stop();
      throw new Aborted();
    }
    this.#podIP = this.#pod.spec.hostNetwork
      ? nodeAddress(node)
      : this.#kubelets.allocatePodIP(this.nodeName);
    this.#publish();
    for (const c of this.containers.values()) {
      await this.#pull(c);
    }
    await this.#sleep(this.#config.stepDelayMs);
    for (const c of this.containers.values()) {
      if (c.init) {
        c.state = {
          terminated: {
            exitCode: 0,
            reason: "Completed",
            startedAt: timestamp(),
            finishedAt: timestamp(),
            containerID: c.containerID = `containerd://${hexId(32)}`,
          },
        };
      }
    }
    for (const c of this.containers.values()) {
      if (!c.init) this.#startContainer(c);
    }
    this.#started = true;
    this.#publish();
  }

  /** The pod's volume mounts, for its sandbox (one mount namespace per pod). */
  #mounts(): MountSpec[] {
    const volumes = new Map<string, any>();
    for (const v of this.#pod.spec.volumes ?? []) volumes.set(v.name, v);
    const mounts = new Map<string, MountSpec>();
    for (const c of this.containers.values()) {
      const image = this.#config.imageFiles?.(String(c.spec.image));
      for (const [target, source] of Object.entries(image?.binds ?? {})) {
        mounts.set(target, { kind: "bind", source, target, readOnly: true });
      }
      for (const vm of c.spec.volumeMounts ?? []) {
        const volume = volumes.get(vm.name);
        if (!volume || !vm.mountPath || mounts.has(vm.mountPath)) continue;
        const target = String(vm.mountPath);
        if (volume.hostPath) {
          const source = vm.subPath
            ? `${volume.hostPath.path.replace(/\/$/, "")}/${vm.subPath}`
            : volume.hostPath.path;
          mounts.set(target, {
            kind: "bind",
            source,
            target,
            readOnly: vm.readOnly === true,
            createSource: volume.hostPath.type === "DirectoryOrCreate",
          });
        } else {
          mounts.set(target, { kind: "tmpfs", target, readOnly: vm.readOnly === true });
        }
      }
    }
    return [...mounts.values()];
  }

  async #pull(c: ContainerRuntime): Promise<void> {
    const image = String(c.spec.image);
    for (;;) {
      this.#check();
      const failure = this.#config.imagePullFailure(image, this.nodeName);
      if (failure === undefined) break;
      this.#event("Normal", "Pulling", `Pulling image "${image}"`, c.spec.name);
      c.state = { waiting: { reason: "ErrImagePull", message: failure } };
      this.#publish();
      this.#event("Warning", "Failed", `Failed to pull image "${image}": ${failure}`, c.spec.name);
      this.#event("Warning", "Failed", "Error: ErrImagePull", c.spec.name);
      await this.#sleep(this.#config.imagePullBackoffMs);
      c.state = {
        waiting: {
          reason: "ImagePullBackOff",
          message: `Back-off pulling image "${image}": ErrImagePull: ${failure}`,
        },
      };
      this.#publish();
      this.#event("Normal", "BackOff", `Back-off pulling image "${image}"`, c.spec.name);
      this.#event("Warning", "Failed", "Error: ImagePullBackOff", c.spec.name);
      await this.#sleep(this.#config.imagePullBackoffMs);
    }
    if (c.imageID === undefined) {
      this.#event(
        "Normal",
        "Pulled",
        `Container image "${image}" already present on machine`,
        c.spec.name,
      );
      c.imageID = `${image.split(":")[0]}@sha256:${hexId(32)}`;
    }
  }

  /** The container's environment (spec env, downward API fields, defaults). */
  env(spec: any): Record<string, string> {
    const pod = this.#pod;
    const hostIP = nodeAddress(this.#node());
    const api = this.#config.apiServer();
    const env: Record<string, string> = {
      ...this.#config.imageFiles?.(String(spec.image))?.env,
      PATH: CONTAINER_PATH,
      HOSTNAME: pod.spec.hostNetwork ? this.nodeName : this.name,
      HOME: "/root",
      KUBERNETES_SERVICE_HOST: api.host,
      KUBERNETES_SERVICE_PORT: String(api.port),
      KUBERNETES_SERVICE_PORT_HTTPS: String(api.port),
    };
    const fields: Record<string, string | undefined> = {
      "metadata.name": this.name,
      "metadata.namespace": this.namespace,
      "metadata.uid": this.uid,
      "spec.nodeName": this.nodeName,
      "spec.serviceAccountName": pod.spec.serviceAccountName,
      "status.hostIP": hostIP,
      "status.hostIPs": hostIP,
      "status.podIP": this.#podIP,
      "status.podIPs": this.#podIP,
    };
    for (const e of spec.env ?? []) {
      if (e.value !== undefined) {
        env[e.name] = String(e.value).replace(
          /\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g,
          (m, n) => env[n] ?? m,
        );
      } else if (e.valueFrom?.fieldRef?.fieldPath) {
        const path: string = e.valueFrom.fieldRef.fieldPath;
        const m = path.match(/^metadata\.(labels|annotations)\['(.+)'\]$/);
        const value = m ? (pod.metadata as any)[m[1]]?.[m[2]] : fields[path];
        env[e.name] = value ?? "";
      } else {
        env[e.name] = "";
      }
    }
    return env;
  }

  #startContainer(c: ContainerRuntime): void {
    const spec = c.spec;
    const argv: string[] = [...(spec.command ?? []), ...(spec.args ?? [])];
    c.containerID = `containerd://${hexId(32)}`;
    this.#containerFiles(c);
    const startedAt = timestamp();
    this.#event("Normal", "Created", `Created container: ${spec.name}`, spec.name);
    if (!this.#config.runContainerCommands || argv.length === 0 || !this.sandbox) {
      c.state = { running: { startedAt } };
      this.#event("Normal", "Started", `Started container ${spec.name}`, spec.name);
      return;
    }
    const env = this.env(spec);
    const problem = this.sandbox.checkExecutable(argv[0], env.PATH ?? CONTAINER_PATH);
    if (problem) {
      const message =
        `failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: error during container init: ${problem}: unknown`;
      this.#event("Warning", "Failed", `Error: ${message}`, spec.name);
      this.#containerExited(c, { exitCode: 128, reason: "StartError", message, startedAt });
      return;
    }
    const child = this.sandbox.spawn({
      argv,
      env,
      cwd: spec.workingDir ?? "/",
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      cgroupProcs: c.cgroupProcs,
    });
    c.process = child;
    c.state = { running: { startedAt } };
    this.#event("Normal", "Started", `Started container ${spec.name}`, spec.name);
    const log = c.log;
    const pump = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream) log.append(chunk);
    };
    c.exited = Promise.all([pump(child.stdout), pump(child.stderr), child.status]).then(
      ([, , status]) => {
        if (c.process !== child) return;
        c.process = undefined;
        const exitCode = status.signal ? 128 + signalNumber(status.signal) : status.code;
        if (this.#terminating) {
          c.state = {
            terminated: {
              exitCode,
              reason: exitCode === 0 ? "Completed" : "Error",
              startedAt,
              finishedAt: timestamp(),
              containerID: c.containerID,
            },
          };
          return;
        }
        this.#containerExited(c, {
          exitCode,
          reason: exitCode === 0 ? "Completed" : "Error",
          startedAt,
        });
      },
      () => {},
    );
  }

  /**
   * Kubelet's files of a (re)started container, when enabled. The pod's
   * containers share one mount namespace here, whose first process is the
   * pause process: it joins the first container's cgroup so that a tool
   * naming the namespace from its first process names that container.
   */
  #containerFiles(c: ContainerRuntime): void {
    const files = this.#kubelets.files;
    if (!files || !this.sandbox || this.sandbox.stopped) return;
    c.cgroupProcs = files.container(
      {
        namespace: this.namespace,
        name: this.name,
        uid: this.uid,
        qosClass: this.#pod.status?.qosClass,
      },
      c.spec.name,
      c.containerID!.replace(/^containerd:\/\//, ""),
      c.restartCount,
    );
    const first = [...this.containers.values()].find((x) => !x.init);
    if (first === c && this.sandbox.pausePid !== undefined) {
      this.sandbox.joinCgroups(this.sandbox.pausePid, c.cgroupProcs);
    }
  }

  #containerExited(
    c: ContainerRuntime,
    result: { exitCode: number; reason: string; message?: string; startedAt: string },
  ): void {
    c.state = {
      terminated: {
        exitCode: result.exitCode,
        reason: result.reason,
        ...(result.message ? { message: result.message } : {}),
        startedAt: result.startedAt,
        finishedAt: timestamp(),
        containerID: c.containerID,
      },
    };
    c.log.end();
    const policy = this.#pod.spec.restartPolicy ?? "Always";
    const restart = policy === "Always" || (policy === "OnFailure" && result.exitCode !== 0);
    if (!restart) {
      const main = [...this.containers.values()].filter((x) => !x.init);
      if (main.every((x) => "terminated" in x.state)) {
        const failed = main.some((x) =>
          "terminated" in x.state && x.state.terminated.exitCode !== 0
        );
        this.#phase = failed ? "Failed" : "Succeeded";
        this.#publish();
        // A terminal pod's sandbox is torn down.
        this.sandbox?.stop().catch(() => {});
        this.#clearDeadline();
        return;
      }
      this.#publish();
      return;
    }
    const terminated = c.state;
    this.#publish();
    this.#timer(Math.min(50, this.#config.crashLoopBackoffMs), () => {
      if (this.terminatingOrGone) return;
      c.lastState = terminated;
      c.state = {
        waiting: {
          reason: "CrashLoopBackOff",
          message: `back-off ${
            Math.round(this.#config.crashLoopBackoffMs / 1000)
          }s restarting failed container=${c.spec.name} pod=${this.name}_${this.namespace}(${this.uid})`,
        },
      };
      this.#publish();
      this.#event("Warning", "BackOff", "Back-off restarting failed container", c.spec.name);
      this.#timer(this.#config.crashLoopBackoffMs, () => {
        if (this.terminatingOrGone || this.sandbox?.stopped) return;
        c.restartCount++;
        c.previousLog = c.log;
        c.log = new LogBuffer();
        this.#startContainer(c);
        this.#publish();
      });
    });
  }

  #deadlineTimer: Timer | undefined;

  #armDeadline(): void {
    const seconds = this.#pod.spec.activeDeadlineSeconds;
    if (typeof seconds !== "number") return;
    // Timers chained: one lasts at most 2^31 - 1 ms (24.8 days); a longer
    // delay would fire at once. The API allows up to 2^31 - 1 s.
    const deadline = performance.now() + seconds * 1000;
    const arm = () => {
      const left = deadline - performance.now();
      if (left > 0) this.#deadlineTimer = setTimeout(arm, Math.min(Math.ceil(left), 2 ** 31 - 1));
      else this.#deadlineExceeded();
    };
    arm();
  }

  #deadlineExceeded(): void {
    this.#deadlineTimer = undefined;
    if (this.terminatingOrGone || this.terminal) return;
    this.#event(
      "Warning",
      "DeadlineExceeded",
      "Pod was active on the node longer than the specified deadline",
    );
    this.terminate(this.#pod.spec.terminationGracePeriodSeconds ?? 30, {
      reason: "DeadlineExceeded",
      message: "Pod was active on the node longer than the specified deadline",
    });
  }

  #clearDeadline(): void {
    if (this.#deadlineTimer !== undefined) clearTimeout(this.#deadlineTimer);
    this.#deadlineTimer = undefined;
  }

  /** Called when the pod object changes (e.g. deletionTimestamp set). */
  update(pod: KubeObject): void {
    this.#pod = pod;
    if (pod.metadata.deletionTimestamp && !this.#terminating) {
      this.terminate(pod.metadata.deletionGracePeriodSeconds ?? 30, { delete: true });
    }
  }

  /** Node readiness changed: republish the Ready condition. */
  nodeChanged(): void {
    if (!this.#gone) this.#publish();
  }

  /**
   * Kills the pod's containers like the kubelet: SIGTERM to the main
   * processes, SIGKILL to everything left after `graceSeconds`; then sets
   * the terminal phase, and deletes the object if it was being deleted.
   */
  terminate(
    graceSeconds: number,
    options: { delete?: boolean; reason?: string; message?: string } = {},
  ): Promise<void> {
    if (this.#terminating) return this.#terminating;
    this.#terminating = (async () => {
      this.#abort.abort();
      this.#clearDeadline();
      await this.done;
      const wasStarted = this.#started;
      if (options.delete) {
        for (const c of this.containers.values()) {
          if ("running" in c.state) {
            this.#event("Normal", "Killing", `Stopping container ${c.spec.name}`, c.spec.name);
          }
        }
      }
      const running = [...this.containers.values()].filter((c) => c.process);
      for (const c of running) this.sandbox?.signalGroup(c.process!.pid, "SIGTERM");
      if (running.length > 0) {
        let timer: Timer | undefined;
        let onKill = () => {};
        await Promise.race([
          Promise.all(running.map((c) => c.exited)),
          new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, graceSeconds) * 1000))),
          new Promise<void>((r) => {
            onKill = r;
            this.#killed.signal.addEventListener("abort", onKill, { once: true });
          }),
        ]);
        clearTimeout(timer);
        this.#killed.signal.removeEventListener("abort", onKill);
      }
      await this.sandbox?.stop();
      await Promise.all(running.map((c) => c.exited));
      const now = timestamp();
      for (const c of this.containers.values()) {
        if ("running" in c.state) {
          // Containers without a process of their own stand for an entrypoint that exits on SIGTERM.
          c.state = {
            terminated: {
              exitCode: 143,
              reason: "Error",
              startedAt: c.state.running.startedAt,
              finishedAt: now,
              containerID: c.containerID,
            },
          };
        } else if ("waiting" in c.state) {
          c.state = {
            terminated: {
              exitCode: 137,
              reason: "ContainerStatusUnknown",
              message: "The container could not be located when the pod was terminated",
              finishedAt: now,
            },
          };
        }
        c.log.end();
      }
      if (!this.terminal) {
        const failed = !wasStarted ||
          [...this.containers.values()].some((c) =>
            !c.init && "terminated" in c.state && c.state.terminated.exitCode !== 0
          );
        this.#phase = options.reason || failed ? "Failed" : "Succeeded";
        if (options.reason) {
          this.#reason = options.reason;
          this.#message = options.message;
        }
      }
      this.#publish();
      if (options.delete) {
        this.#gone = true;
        const current = this.#config.store.get("pods", this.namespace, this.name);
        if (current?.metadata.uid === this.uid) {
          this.#config.store.delete("pods", this.namespace, this.name);
        }
      }
    })();
    return this.#terminating;
  }

  /** Kills everything at once (the object is gone, or the server closes). */
  async kill(): Promise<void> {
    this.#gone = true;
    this.#abort.abort();
    this.#killed.abort();
    this.#clearDeadline();
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.sandbox?.stop();
    await Promise.all([...this.containers.values()].map((c) => c.exited));
    for (const c of this.containers.values()) c.log.end();
    await this.#terminating?.catch(() => {});
    await this.done;
  }

  /** What an exec into `container` needs. */
  execTarget(container: string): ExecTarget {
    const node = this.#node();
    if (!nodeIsReady(node)) {
      return { ok: false, why: "node-not-ready", nodeAddress: nodeAddress(node) };
    }
    const c = this.containers.get(container);
    if (
      !c || c.init || !("running" in c.state) || !this.sandbox || this.sandbox.stopped ||
      this.#terminating
    ) {
      return { ok: false, why: "container-not-found", nodeAddress: nodeAddress(node) };
    }
    return {
      ok: true,
      sandbox: this.sandbox,
      env: this.env(c.spec),
      cwd: c.spec.workingDir ?? "/",
      cgroupProcs: c.cgroupProcs,
    };
  }

  #condition(type: string, ok: boolean, extra: Record<string, string> = {}): any {
    const status = ok ? "True" : "False";
    const prev = this.#transitions.get(type);
    if (!prev || prev.status !== status) {
      this.#transitions.set(type, { status, time: timestamp() });
    }
    return {
      type,
      status,
      lastProbeTime: null,
      lastTransitionTime: this.#transitions.get(type)!.time,
      ...extra,
    };
  }

  #containerStatus(c: ContainerRuntime): any {
    const running = "running" in c.state;
    const status: any = {
      name: c.spec.name,
      state: c.state,
      lastState: c.lastState,
      ready: running && nodeIsReady(this.#node()) && !this.#terminating,
      restartCount: c.restartCount,
      image: c.spec.image,
      imageID: c.imageID ?? "",
    };
    if (c.containerID) status.containerID = c.containerID;
    if (!c.init) status.started = running;
    return status;
  }

  /** Writes the pod status computed from the runtime state to the store. */
  #publish(): void {
    if (this.#gone) return;
    const node = this.#node();
    const hostIP = nodeAddress(node);
    const main = [...this.containers.values()].filter((c) => !c.init);
    const init = [...this.containers.values()].filter((c) => c.init);
    if (this.#phase === "Pending" && main.some((c) => !("waiting" in c.state))) {
      this.#phase = "Running";
    }
    const unready = main.filter((c) => !this.#containerStatus(c).ready).map((c) => c.spec.name);
    const ready = unready.length === 0 && this.#phase === "Running";
    const notReady = {
      reason: this.terminal ? "PodCompleted" : "ContainersNotReady",
      message: this.terminal ? "" : `containers with unready status: [${unready.join(" ")}]`,
    };
    if (!notReady.message) delete (notReady as Partial<typeof notReady>).message;
    const status: any = {
      phase: this.#phase,
      conditions: this.#startTime
        ? [
          this.#condition("PodReadyToStartContainers", !!this.sandbox && !this.sandbox.stopped),
          this.#condition("Initialized", true),
          this.#condition("Ready", ready, ready ? {} : notReady),
          this.#condition("ContainersReady", ready, ready ? {} : notReady),
          this.#condition("PodScheduled", true),
        ]
        : [],
      ...(this.#reason ? { reason: this.#reason } : {}),
      ...(this.#message ? { message: this.#message } : {}),
    };
    if (this.#startTime) {
      status.hostIP = hostIP;
      status.hostIPs = [{ ip: hostIP }];
      if (this.#podIP) {
        status.podIP = this.#podIP;
        status.podIPs = [{ ip: this.#podIP }];
      }
      status.startTime = this.#startTime;
      if (init.length) status.initContainerStatuses = init.map((c) => this.#containerStatus(c));
      status.containerStatuses = main.map((c) => this.#containerStatus(c));
    }
    const uid = this.uid;
    this.#config.store.mutate("pods", this.namespace, this.name, (pod) => {
      if (pod.metadata.uid !== uid) return;
      pod.status = { ...status, qosClass: pod.status?.qosClass ?? "BestEffort" };
    });
  }
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
};

/** The number of a signal name (for 128+n exit codes). */
export function signalNumber(signal: string | number): number {
  return typeof signal === "number" ? signal : SIGNALS[signal] ?? 9;
}

/** All fake kubelets: one pod runtime per pod bound to a Ready node. */
export class Kubelets {
  readonly #config: KubeletConfig;
  readonly #pods = new Map<string, PodRuntime>();
  readonly #gcTimers = new Map<string, Timer>();
  readonly #podIPs = new Map<string, number>();
  #unsubscribe: (() => void) | undefined;
  #closed = false;
  /** Kubelet's cgroups and log files on the host, when enabled. */
  readonly files: KubeletFiles | undefined;

  constructor(config: KubeletConfig) {
    this.#config = config;
    this.files = config.kubeletFiles ? new KubeletFiles() : undefined;
    this.#unsubscribe = config.store.subscribe((change) => this.#onChange(change));
  }

  /** A pod IP in 127.1.<node>.<n> (loopback: never routed anywhere). */
  allocatePodIP(nodeName: string): string {
    const nodes = this.#config.store.list("nodes").map((n) => n.metadata.name);
    const index = Math.max(0, nodes.indexOf(nodeName)) % 250 + 1;
    const next = (this.#podIPs.get(nodeName) ?? 1) + 1;
    this.#podIPs.set(nodeName, next > 254 ? 2 : next);
    return `127.1.${index}.${next}`;
  }

  #runtime(namespace: string, name: string): PodRuntime | undefined {
    const pod = this.#config.store.get("pods", namespace, name);
    return pod ? this.#pods.get(pod.metadata.uid!) : undefined;
  }

  /** What an exec into a pod's container needs, or why it cannot run. */
  execTarget(namespace: string, name: string, container: string): ExecTarget {
    const runtime = this.#runtime(namespace, name);
    const node = this.#config.store.get("nodes", undefined, runtime?.nodeName ?? "");
    if (!runtime) {
      const pod = this.#config.store.get("pods", namespace, name);
      const podNode = this.#config.store.get("nodes", undefined, pod?.spec?.nodeName ?? "");
      if (pod?.spec?.nodeName && !nodeIsReady(podNode)) {
        return { ok: false, why: "node-not-ready", nodeAddress: nodeAddress(podNode) };
      }
      return { ok: false, why: "container-not-found", nodeAddress: nodeAddress(node) };
    }
    return runtime.execTarget(container);
  }

  /** A running container's log buffers (current and previous). */
  logs(
    namespace: string,
    name: string,
    container: string,
  ): { current: LogBuffer; previous?: LogBuffer } | undefined {
    const c = this.#runtime(namespace, name)?.containers.get(container);
    return c ? { current: c.log, previous: c.previousLog } : undefined;
  }

  /** PIDs of a pod's processes (pause, containers, execs). */
  processes(namespace: string, name: string): number[] {
    return this.#runtime(namespace, name)?.sandbox?.pids() ?? [];
  }

  /** PIDs of all pods' processes. */
  allProcesses(): number[] {
    return [...this.#pods.values()].flatMap((p) => p.sandbox?.pids() ?? []);
  }

  #onChange(change: Change): void {
    if (this.#closed) return;
    if (change.resource === "pods") this.#onPod(change);
    else if (change.resource === "nodes") this.#onNode(change);
  }

  #onPod(change: Change): void {
    const pod = change.object;
    const uid = pod.metadata.uid!;
    const runtime = this.#pods.get(uid);
    if (change.type === "DELETED") {
      this.#cancelGc(uid);
      if (runtime) {
        this.#pods.delete(uid);
        runtime.kill().catch(() => {});
      }
      return;
    }
    if (runtime) {
      runtime.update(pod);
      return;
    }
    this.#consider(pod);
  }

  /** Starts, finalizes or garbage-collects a pod no kubelet runs yet. */
  #consider(pod: KubeObject): void {
    const store = this.#config.store;
    const nodeName: string | undefined = pod.spec?.nodeName;
    if (!nodeName) return;
    const node = store.get("nodes", undefined, nodeName);
    const uid = pod.metadata.uid!;
    if (!node) {
      // Pod GC force-deletes terminating pods bound to nodes that do not exist.
      if (pod.metadata.deletionTimestamp && !this.#gcTimers.has(uid)) {
        this.#gcTimers.set(
          uid,
          setTimeout(() => {
            this.#gcTimers.delete(uid);
            const current = store.get("pods", pod.metadata.namespace, pod.metadata.name);
            if (current?.metadata.uid === uid) {
              store.delete("pods", pod.metadata.namespace, pod.metadata.name);
            }
          }, this.#config.orphanGcMs),
        );
      }
      return;
    }
    if (!nodeIsReady(node)) return;
    const phase = pod.status?.phase;
    if (pod.metadata.deletionTimestamp) {
      // Nothing runs: the kubelet confirms the deletion at once.
      store.delete("pods", pod.metadata.namespace, pod.metadata.name);
      return;
    }
    if (phase === "Succeeded" || phase === "Failed") return;
    const untolerated = (node.spec?.taints ?? []).find((t: any) =>
      t.effect === "NoExecute" && !tolerates(pod.spec?.tolerations ?? [], t)
    );
    if (untolerated) {
      this.#evict(pod);
      return;
    }
    const runtime = new PodRuntime(this, this.#config, pod);
    this.#pods.set(uid, runtime);
  }

  #evict(pod: KubeObject): void {
    const store = this.#config.store;
    recordEvent(
      store,
      pod,
      "Normal",
      "TaintManagerEviction",
      `Marking for deletion Pod ${pod.metadata.namespace}/${pod.metadata.name}`,
      { component: "taint-eviction-controller" },
    );
    // Not started here, so nothing to stop: remove it.
    store.delete("pods", pod.metadata.namespace, pod.metadata.name);
  }

  #cancelGc(uid: string): void {
    const timer = this.#gcTimers.get(uid);
    if (timer !== undefined) clearTimeout(timer);
    this.#gcTimers.delete(uid);
  }

  #onNode(change: Change): void {
    const name = change.object.metadata.name;
    for (const runtime of this.#pods.values()) {
      if (runtime.nodeName !== name) continue;
      if (change.type === "DELETED") continue;
      runtime.nodeChanged();
      const untolerated = (change.object.spec?.taints ?? []).find((t: any) =>
        t.effect === "NoExecute" && !tolerates(runtime.pod.spec?.tolerations ?? [], t)
      );
      if (untolerated && !runtime.terminatingOrGone) {
        recordEvent(
          this.#config.store,
          runtime.pod,
          "Normal",
          "TaintManagerEviction",
          `Marking for deletion Pod ${runtime.namespace}/${runtime.name}`,
          { component: "taint-eviction-controller" },
        );
        this.#config.store.mutate("pods", runtime.namespace, runtime.name, (pod) => {
          const grace = pod.spec.terminationGracePeriodSeconds ?? 30;
          pod.metadata.deletionTimestamp = timestamp(new Date(Date.now() + grace * 1000));
          pod.metadata.deletionGracePeriodSeconds = grace;
        });
      }
    }
    for (const pod of this.#config.store.list("pods")) {
      if (pod.spec?.nodeName !== name || this.#pods.has(pod.metadata.uid!)) continue;
      this.#consider(pod);
    }
  }

  /** Stops every pod's processes and all timers. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    for (const timer of this.#gcTimers.values()) clearTimeout(timer);
    this.#gcTimers.clear();
    const runtimes = [...this.#pods.values()];
    this.#pods.clear();
    await Promise.all(runtimes.map((r) => r.kill()));
    this.files?.close();
  }
}
