/**
 * Cluster mode: `tcpgadget trace tcp --cluster` traces the nodes of the
 * kubeconfig's cluster without anything installed beforehand. For each
 * node it creates a short-lived privileged pod pinned to that node, copies
 * itself into it through the exec API, runs node mode there with `-o json`
 * and the pod filters, reads the events back, enriches them from a watch of
 * the cluster's pods and services, merges every node's stream into one
 * output, and deletes its pods when it stops, however it stops.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import { TcpgadgetError } from "../core/errors.ts";
import { formatterFor, parseJsonEvent } from "../cli/format.ts";
import { LineOutput } from "../cli/output.ts";
import type { TraceFlags } from "../cli/flags.ts";
import {
  agentPod,
  agentPodName,
  DEFAULT_AGENT_IMAGE,
  HOST_ROOT,
  MANAGED_BY,
  MANAGED_BY_LABEL,
  RUN_LABEL,
} from "./agent_pod.ts";
import { ClusterMetadata } from "./cluster_metadata.ts";
import { ExecDroppedError, execInPod, type ExecTarget } from "./exec.ts";
import { type KubernetesFilter, matchesFilter } from "./filter.ts";
import { httpStatus, KubeClient, loadKubeconfig } from "./kube_client.ts";
import { type Payload, preparePayload, uploadPayload } from "./self_copy.ts";
import type { TraceEvent } from "./enrich.ts";

/** Where cluster mode writes; tests substitute their own. */
export interface ClusterIo {
  stdout: { writeSync(data: Uint8Array): number };
  /** One diagnostic line (no newline, no prefix). */
  warn(message: string): void;
}

const DEFAULT_IO: ClusterIo = {
  stdout: Deno.stdout,
  warn: (message) => console.error(`tcpgadget: ${message}`),
};

const STOP_SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];

// How long the pieces may take; a pod lives at most DEADLINE.
const POD_START_TIMEOUT_MS = 180_000;
const CLEANUP_TIMEOUT_MS = 30_000;
const DEFAULT_DEADLINE_SECONDS = 6 * 3600;
const RECONNECTS = 3;

/** Settings of cluster mode beyond the trace flags. */
export interface ClusterOptions {
  /** The program's entry module, bundled for the pods under `deno run`. */
  main: URL;
}

/** The node-mode command line the agent runs, from the user's flags. */
export function agentArgs(flags: TraceFlags, node: string, namespace?: string): string[] {
  const args = ["trace", "tcp", "-o", "json", "--host-root", HOST_ROOT, "--node-name", node];
  if (namespace !== undefined) args.push("--namespace", namespace);
  if (flags.podname) args.push("--podname", flags.podname);
  if (flags.containername) args.push("--containername", flags.containername);
  if (flags.host) args.push("--host");
  if (flags.pid !== undefined) args.push("--pid", String(flags.pid));
  if (flags.comm !== undefined) args.push("--comm", flags.comm);
  if (flags.connectOnly) args.push("--connect-only");
  if (flags.acceptOnly) args.push("--accept-only");
  if (flags.failureOnly) args.push("--failure-only");
  return args;
}

function randomRunId(): string {
  return [...crypto.getRandomValues(new Uint8Array(3))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/** Splits a byte stream into lines. */
class LineSplitter {
  readonly #decoder = new TextDecoder();
  #rest = "";
  readonly #onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  push(chunk: Uint8Array): void {
    const lines = (this.#rest + this.#decoder.decode(chunk, { stream: true })).split("\n");
    this.#rest = lines.pop() ?? "";
    for (const line of lines) if (line) this.#onLine(line);
  }
}

/** The names of the nodes to trace: `--node`, checked, or every node. */
async function targetNodes(client: KubeClient, wanted: string[] | undefined): Promise<string[]> {
  const list = await client.call({ verb: "list", resource: "nodes" }, (core) => core.listNode());
  const names = list.items.map((node) => node.metadata?.name ?? "").filter(Boolean);
  if (!wanted) {
    if (names.length === 0) throw new TcpgadgetError("the cluster has no nodes");
    return names;
  }
  const unknown = wanted.filter((name) => !names.includes(name));
  if (unknown.length > 0) {
    throw new TcpgadgetError(
      `no node named ${unknown.map((n) => `"${n}"`).join(", ")} (nodes: ${names.join(", ")})`,
    );
  }
  return wanted;
}

/** Why a pod cannot run, if its status says so. */
function podFailure(pod: k8s.V1Pod): string | undefined {
  for (const status of pod.status?.containerStatuses ?? []) {
    const waiting = status.state?.waiting;
    if (
      waiting &&
      /ErrImagePull|ImagePullBackOff|InvalidImageName|CreateContainerError|CrashLoopBackOff/.test(
        waiting.reason ?? "",
      )
    ) {
      return `${waiting.reason}: ${waiting.message ?? ""}`.trim();
    }
    const terminated = status.state?.terminated;
    if (terminated) {
      return `container ended (${terminated.reason ?? `exit ${terminated.exitCode}`})`;
    }
  }
  if (pod.status?.phase === "Failed" || pod.status?.phase === "Succeeded") {
    return `pod ${pod.status.phase.toLowerCase()}${
      pod.status.reason ? ` (${pod.status.reason}: ${pod.status.message ?? ""})` : ""
    }`;
  }
  return undefined;
}

/** One node's agent: its pod, upload and event stream. */
class NodeSession {
  readonly node: string;
  readonly pod: string;
  readonly #run: ClusterRun;
  ready = false;
  failed = false;

  constructor(run: ClusterRun, node: string, index: number) {
    this.#run = run;
    this.node = node;
    this.pod = agentPodName(run.runId, index);
  }

  get #target(): ExecTarget {
    return {
      config: this.#run.client.kubeconfig.config,
      namespace: this.#run.agentNamespace,
      pod: this.pod,
      container: "agent",
    };
  }

  async start(index: number): Promise<void> {
    const { client, agentNamespace, runId, image, deadlineSeconds } = this.#run;
    await client.call(
      { verb: "create", resource: "pods", namespace: agentNamespace },
      (core) =>
        core.createNamespacedPod({
          namespace: agentNamespace,
          body: agentPod({
            runId,
            index,
            node: this.node,
            namespace: agentNamespace,
            image,
            deadlineSeconds,
          }),
        }),
    );
    this.#run.created.push(this.pod);
  }

  /** Waits for Running; throws a per-node error if the pod cannot run. */
  async #waitRunning(signal: AbortSignal): Promise<void> {
    const { client, agentNamespace } = this.#run;
    const deadline = performance.now() + POD_START_TIMEOUT_MS;
    let last: k8s.V1Pod | undefined;
    while (!signal.aborted) {
      last = await client.call(
        { verb: "get", resource: "pods", namespace: agentNamespace, name: this.pod },
        (core) => core.readNamespacedPod({ name: this.pod, namespace: agentNamespace }),
      );
      if (last.status?.phase === "Running") return;
      const failure = podFailure(last);
      if (failure) throw new TcpgadgetError(failure);
      if (performance.now() > deadline) {
        const reason = last.status?.conditions?.find((c) => c.status === "False")?.message;
        throw new TcpgadgetError(
          `pod did not start within ${POD_START_TIMEOUT_MS / 1000} s (${
            last.status?.phase ?? "unknown"
          }${reason ? `: ${reason}` : ""})`,
        );
      }
      await sleep(500, signal);
    }
  }

  /** Runs until stopped; reports a failure of this node and returns. */
  async run(signal: AbortSignal): Promise<void> {
    const warn = (message: string) => this.#run.io.warn(`node ${this.node}: ${message}`);
    try {
      await this.#waitRunning(signal);
      if (signal.aborted) return;
      const report = await uploadPayload(this.#target, this.#run.payload);
      if (report.bytes > 0) {
        warn(
          `uploaded ${(report.bytes / 1e6).toFixed(1)} MB in ${
            (report.milliseconds / 1000).toFixed(1)
          } s`,
        );
      }
      for (let attempt = 0; !signal.aborted; attempt++) {
        try {
          const { exitCode } = await this.#stream(signal);
          if (signal.aborted) return;
          throw new TcpgadgetError(`tracer exited with status ${exitCode}`);
        } catch (error) {
          if (!(error instanceof ExecDroppedError) || attempt >= RECONNECTS || signal.aborted) {
            throw error;
          }
          warn(`event stream dropped; reconnecting (${attempt + 1}/${RECONNECTS})`);
          await sleep(1000 * (attempt + 1), signal);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      this.failed = true;
      warn(error instanceof Error ? error.message.split("\n")[0] : String(error));
    } finally {
      this.#run.nodeSettled();
    }
  }

  #stream(signal: AbortSignal) {
    const run = this.#run;
    const stdout = new LineSplitter((line) => run.event(line, this.node));
    let lastError = "";
    const stderr = new LineSplitter((line) => {
      const message = line.replace(/^tcpgadget: /, "");
      if (message.startsWith("tracing TCP connections")) {
        if (!this.ready) {
          this.ready = true;
          run.nodeSettled();
        }
        return;
      }
      lastError = message;
      run.io.warn(`node ${this.node}: ${message}`);
    });
    const args = agentArgs(run.flags, this.node, run.agentFilterNamespace);
    return execInPod(this.#target, run.payload.command(args), {
      onStdout: (chunk) => stdout.push(chunk),
      onStderr: (chunk) => stderr.push(chunk),
      signal,
    }).catch((error) => {
      if (lastError && !(error instanceof ExecDroppedError)) {
        throw new TcpgadgetError(`${lastError}`);
      }
      throw error;
    });
  }
}

/** State shared by the node sessions of one run. */
class ClusterRun {
  readonly runId = randomRunId();
  readonly created: string[] = [];
  readonly sessions: NodeSession[] = [];
  #announced = false;
  #onSettled: () => void = () => {};

  constructor(
    readonly client: KubeClient,
    readonly flags: TraceFlags,
    readonly io: ClusterIo,
    readonly output: LineOutput,
    readonly formatter: ReturnType<typeof formatterFor>,
    readonly filter: KubernetesFilter,
    readonly metadata: ClusterMetadata,
    readonly payload: Payload,
    readonly agentNamespace: string,
    readonly image: string,
    readonly deadlineSeconds: number,
    /** The namespace the agents filter on in the kernel (none with -A). */
    readonly agentFilterNamespace: string | undefined,
  ) {}

  /** Called when a node becomes ready or fails. */
  nodeSettled(): void {
    const settled = this.sessions.every((s) => s.ready || s.failed);
    if (!settled) return;
    if (!this.#announced) {
      this.#announced = true;
      const ready = this.sessions.filter((s) => s.ready).length;
      const header = this.formatter.header();
      if (ready > 0) {
        if (header !== undefined) this.output.line(header);
        else this.io.warn(`tracing TCP connections on ${ready} node${ready === 1 ? "" : "s"}`);
        this.output.flush();
      }
    }
    this.#onSettled();
  }

  whenSettled(callback: () => void): void {
    this.#onSettled = callback;
  }

  /** decode -> enrich -> filter -> format, for one line from an agent. */
  event(line: string, node: string): void {
    let event: TraceEvent;
    try {
      event = parseJsonEvent(line);
    } catch {
      this.io.warn(`node ${node}: unreadable event: ${line.slice(0, 120)}`);
      return;
    }
    const pod = event.podUid ? this.metadata.pod(event.podUid) : undefined;
    if (pod) {
      event.namespace = pod.namespace;
      event.pod = pod.name;
      event.container = pod.containers.get(event.containerId ?? "") ?? event.container;
    }
    event.srcEndpoint ??= this.metadata.endpoint(event.saddr);
    event.dstEndpoint ??= this.metadata.endpoint(event.daddr);
    if (!matchesFilter(event, this.filter, () => pod?.labels)) return;
    this.output.line(this.formatter.format(event));
  }
}

/** Runs `trace tcp --cluster`. Returns the exit status. */
export async function traceCluster(
  flags: TraceFlags,
  options: ClusterOptions,
  io: ClusterIo = DEFAULT_IO,
): Promise<number> {
  const formatter = formatterFor(flags.output);
  const client = new KubeClient(
    loadKubeconfig({ kubeconfig: flags.kubeconfig, context: flags.context }),
  );
  const namespace = flags.allNamespaces
    ? undefined
    : flags.namespace ?? client.kubeconfig.namespace;
  const filter: KubernetesFilter = {
    namespace,
    pod: flags.podname,
    container: flags.containername,
    labels: flags.selector,
    host: flags.host,
  };
  const agentNamespace = flags.agentNamespace ?? client.kubeconfig.namespace;
  const nodes = await targetNodes(client, flags.nodes);

  const metadata = new ClusterMetadata((message) => io.warn(message));
  await metadata.start(client, { services: true });
  const output = new LineOutput(io.stdout);
  const payload = await preparePayload(options.main);
  const deadlineSeconds = flags.timeout !== undefined
    ? Math.ceil(flags.timeout) + 600
    : DEFAULT_DEADLINE_SECONDS;
  const run = new ClusterRun(
    client,
    flags,
    io,
    output,
    formatter,
    filter,
    metadata,
    payload,
    agentNamespace,
    flags.image ?? DEFAULT_AGENT_IMAGE,
    deadlineSeconds,
    namespace,
  );

  const stopping = new AbortController();
  const stop = () => stopping.abort();
  for (const signal of STOP_SIGNALS) Deno.addSignalListener(signal, stop);
  const timer = flags.timeout === undefined ? undefined : setTimeout(stop, flags.timeout * 1000);
  // The reader of our output may go away while no event is written.
  const watchOutput = setInterval(() => {
    if (!output.flush() || output.readerGone()) stop();
  }, 100);
  let sessionsDone: Promise<unknown> = Promise.resolve();
  try {
    nodes.forEach((node, index) => run.sessions.push(new NodeSession(run, node, index)));
    // Creating the pods fails the same way on every node (permissions,
    // PodSecurity): the first failure ends the run.
    for (const [index, session] of run.sessions.entries()) await session.start(index);
    const allFailed = new Promise<void>((resolve) =>
      run.whenSettled(() => {
        if (run.sessions.every((s) => s.failed)) resolve();
      })
    );
    sessionsDone = Promise.all(run.sessions.map((session) => session.run(stopping.signal)));
    await Promise.race([
      new Promise((resolve) => stopping.signal.addEventListener("abort", resolve, { once: true })),
      allFailed,
      sessionsDone,
    ]);
    if (!stopping.signal.aborted && run.sessions.every((s) => s.failed)) {
      throw new TcpgadgetError(`no node could be traced (${nodes.length} failed)`);
    }
    return 0;
  } finally {
    stopping.abort();
    clearTimeout(timer);
    clearInterval(watchOutput);
    for (const signal of STOP_SIGNALS) Deno.removeSignalListener(signal, stop);
    await Promise.race([sessionsDone, sleep(5000)]);
    output.flush();
    await deletePods(client, agentNamespace, run.created, io);
    await metadata.stop();
    await payload.dispose();
  }
}

/** Deletes pods and waits (bounded) until they are gone. */
async function deletePods(
  client: KubeClient,
  namespace: string,
  names: string[],
  io: Pick<ClusterIo, "warn">,
): Promise<void> {
  await Promise.all(names.map(async (name) => {
    try {
      await client.core.deleteNamespacedPod({ name, namespace, gracePeriodSeconds: 0 });
    } catch (error) {
      if (httpStatus(error) !== 404) {
        io.warn(
          `cannot delete pod ${namespace}/${name}: ${(error as Error).message?.split("\n")[0]}`,
        );
      }
    }
  }));
  const deadline = performance.now() + CLEANUP_TIMEOUT_MS;
  let remaining = [...names];
  while (remaining.length > 0 && performance.now() < deadline) {
    const still: string[] = [];
    for (const name of remaining) {
      try {
        await client.core.readNamespacedPod({ name, namespace });
        still.push(name);
      } catch (error) {
        if (httpStatus(error) !== 404) still.push(name);
      }
    }
    remaining = still;
    if (remaining.length > 0) await sleep(250);
  }
  if (remaining.length > 0) {
    io.warn(
      `pods still being deleted after ${CLEANUP_TIMEOUT_MS / 1000} s: ${
        remaining.join(", ")
      } (namespace ${namespace}); 'tcpgadget cleanup' removes leftovers`,
    );
  }
}

/** `tcpgadget cleanup`: deletes the pods of earlier runs, by label. */
export async function cleanup(
  options: { kubeconfig?: string; context?: string; namespace?: string },
  io: Pick<ClusterIo, "warn"> & { log(message: string): void } = {
    warn: DEFAULT_IO.warn,
    log: (message) => console.log(message),
  },
): Promise<number> {
  const client = new KubeClient(loadKubeconfig(options));
  const labelSelector = `${MANAGED_BY_LABEL}=${MANAGED_BY},${RUN_LABEL}`;
  const pods = options.namespace
    ? await client.call(
      { verb: "list", resource: "pods", namespace: options.namespace },
      (core) => core.listNamespacedPod({ namespace: options.namespace!, labelSelector }),
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
  for (const [ns, names] of byNamespace) {
    await client.call({ verb: "delete", resource: "pods", namespace: ns }, async () => {
      await deletePods(client, ns, names, io);
    });
    for (const name of names) io.log(`deleted pod ${ns}/${name}`);
  }
  if (pods.items.length === 0) io.log("no tcpgadget pods found");
  return 0;
}
