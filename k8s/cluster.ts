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

import "./node_warnings.ts";
import type * as k8s from "@kubernetes/client-node";
import { TcpgadgetError } from "../core/errors.ts";
import { type Formatter, formatterFor, parseJsonEvent } from "../cli/format.ts";
import { LineOutput } from "../cli/output.ts";
import type { TraceFlags } from "../cli/flags.ts";
import {
  agentCommand,
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
import { DamagedCopyError, type Payload, preparePayload, uploadPayload } from "./self_copy.ts";
import type { TraceEvent } from "./enrich.ts";
import { DEFAULT_IO, STOP_SIGNALS, type TraceIo } from "../cli/trace.ts";

/** Where cluster mode writes (as node mode); tests substitute their own. */
export type ClusterIo = TraceIo;

// How long the pieces may take; a pod lives at most its deadline.
const API_TIMEOUT_MS = 20_000;
const POD_START_TIMEOUT_MS = 180_000;
const CLEANUP_TIMEOUT_MS = 30_000;
const DEFAULT_DEADLINE_SECONDS = 6 * 3600;
/** Reconnects of a node's event stream in a row before the node is given up. */
const RECONNECTS = 3;
/** Uploads at once: each is ~100 MB from this machine. */
const PARALLEL_UPLOADS = 4;
/** Events held while the other nodes start (the header must come first). */
const EARLY_EVENTS_LIMIT = 100_000;

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
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}

/** At most `limit` holders at once. */
class Semaphore {
  #free: number;
  readonly #waiting: (() => void)[] = [];

  constructor(limit: number) {
    this.#free = limit;
  }

  async use<T>(run: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await run();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
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

function nodeIsReady(node: k8s.V1Node): boolean {
  return node.status?.conditions?.some((c) => c.type === "Ready" && c.status === "True") ??
    false;
}

/**
 * The names of the nodes to trace: `--node`, checked, or every node; nodes
 * that are not Ready (their kubelet would never start a pod) are left out
 * with a warning.
 */
async function targetNodes(
  client: KubeClient,
  wanted: string[] | undefined,
  warn: (message: string) => void,
): Promise<string[]> {
  const list = await client.call(
    { verb: "list", resource: "nodes" },
    (core) => core.listNode(),
    API_TIMEOUT_MS,
  );
  const nodes = new Map(list.items.map((node) => [node.metadata?.name ?? "", node]));
  nodes.delete("");
  if (wanted) {
    const unknown = wanted.filter((name) => !nodes.has(name));
    if (unknown.length > 0) {
      throw new TcpgadgetError(
        `no node named ${unknown.map((n) => `"${n}"`).join(", ")} (nodes: ${
          [...nodes.keys()].join(", ") || "none"
        })`,
      );
    }
  }
  const names = wanted ?? [...nodes.keys()];
  if (names.length === 0) throw new TcpgadgetError("the cluster has no nodes");
  const ready = names.filter((name) => nodeIsReady(nodes.get(name)!));
  for (const name of names) {
    if (!ready.includes(name)) warn(`node ${name}: not Ready, not traced`);
  }
  if (ready.length === 0) {
    throw new TcpgadgetError(
      `no node could be traced: ${names.length === 1 ? "the node is not" : "no node is"} Ready`,
    );
  }
  return ready;
}

/** Why a pod cannot run, if its status says so. */
function podFailure(pod: k8s.V1Pod, image: string): string | undefined {
  for (const status of pod.status?.containerStatuses ?? []) {
    const waiting = status.state?.waiting;
    const reason = waiting?.reason ?? "";
    if (/^(ErrImagePull|ImagePullBackOff|InvalidImageName|ErrImageNeverPull)$/.test(reason)) {
      // The back-off repeats the pull's error after its own words.
      const why = (waiting?.message ?? reason)
        .replace(/^Back-off pulling image "[^"]*": (ErrImagePull: )?/, "");
      return `cannot pull image "${image}": ${why} (--image names another image)`;
    }
    if (/^(CreateContainerError|CreateContainerConfigError|RunContainerError)$/.test(reason)) {
      return `cannot start the agent container (${reason}: ${waiting?.message ?? ""})`;
    }
    const terminated = status.state?.terminated;
    if (terminated) {
      return `the agent container ended (${terminated.reason ?? `exit ${terminated.exitCode}`}${
        terminated.message ? `: ${terminated.message.split("\n")[0]}` : ""
      })`;
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
  readonly index: number;
  readonly #run: ClusterRun;
  ready = false;
  failed = false;

  constructor(run: ClusterRun, node: string, index: number) {
    this.#run = run;
    this.node = node;
    this.index = index;
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

  #warn(message: string): void {
    this.#run.io.warn(`node ${this.node}: ${message}`);
  }

  /** Creates the pod (an error here is the same on every node: it ends the run). */
  async create(): Promise<void> {
    const { client, agentNamespace, runId, image, deadlineSeconds } = this.#run;
    try {
      await client.call(
        { verb: "create", resource: "pods", namespace: agentNamespace },
        (core) =>
          core.createNamespacedPod({
            namespace: agentNamespace,
            body: agentPod({
              runId,
              index: this.index,
              node: this.node,
              namespace: agentNamespace,
              image,
              deadlineSeconds,
            }),
          }),
        API_TIMEOUT_MS,
      );
    } catch (error) {
      if (httpStatus((error as Error).cause) === 404) {
        throw new TcpgadgetError(
          `namespace "${agentNamespace}" does not exist (the agent pods' namespace: --agent-namespace, else the context's)`,
        );
      }
      throw error;
    }
    this.#run.created.push(this.pod);
  }

  /** Waits for Running; throws a per-node error if the pod cannot run. */
  async #waitRunning(signal: AbortSignal): Promise<void> {
    const { client, agentNamespace } = this.#run;
    const deadline = performance.now() + POD_START_TIMEOUT_MS;
    let last: k8s.V1Pod | undefined;
    while (!signal.aborted) {
      try {
        last = await client.call(
          { verb: "get", resource: "pods", namespace: agentNamespace, name: this.pod },
          (core) => core.readNamespacedPod({ name: this.pod, namespace: agentNamespace }),
          API_TIMEOUT_MS,
        );
      } catch (error) {
        const status = httpStatus((error as Error).cause);
        if (status === 404) throw new TcpgadgetError("the agent pod was deleted before it started");
        // A refusal stays one; anything else (a blip of the server) is asked again.
        if ((status >= 400 && status < 500) || performance.now() > deadline) throw error;
      }
      if (last?.status?.phase === "Running") return;
      const failure = last && podFailure(last, this.#run.image);
      if (failure) throw new TcpgadgetError(failure);
      if (performance.now() > deadline) {
        const reason = last?.status?.conditions?.find((c) => c.status === "False")?.message;
        throw new TcpgadgetError(
          `pod did not start within ${POD_START_TIMEOUT_MS / 1000} s (${
            last?.status?.phase ?? "unknown"
          }${reason ? `: ${reason}` : ""})`,
        );
      }
      await sleep(250, signal);
    }
  }

  /** Copies the agent into the pod, again after a dropped stream. */
  async #upload(signal: AbortSignal): Promise<void> {
    for (let attempt = 1;; attempt++) {
      try {
        const report = await this.#run.uploads.use(() =>
          uploadPayload(this.#target, this.#run.payload, signal)
        );
        if (report.bytes > 0) {
          this.#warn(
            `uploaded ${(report.bytes / 1e6).toFixed(1)} MB in ${
              (report.milliseconds / 1000).toFixed(1)
            } s (size and SHA-256 verified)`,
          );
        }
        return;
      } catch (error) {
        const retry = error instanceof ExecDroppedError || error instanceof DamagedCopyError;
        if (!retry || attempt > RECONNECTS || signal.aborted) throw error;
        this.#warn(`upload interrupted (${error.message}); retrying (${attempt}/${RECONNECTS})`);
        await sleep(1000 * attempt, signal);
      }
    }
  }

  /** Runs until stopped; reports a failure of this node and returns. */
  async run(signal: AbortSignal): Promise<void> {
    try {
      await this.#waitRunning(signal);
      if (signal.aborted) return;
      await this.#upload(signal);
      // Reconnects in a row: a stream that got going resets the count.
      let drops = 0;
      while (!signal.aborted) {
        let started = false;
        try {
          const { exitCode } = await this.#stream(signal, () => started = true);
          if (signal.aborted) return;
          throw new TcpgadgetError(`the tracer in the pod exited with status ${exitCode}`);
        } catch (error) {
          if (!(error instanceof ExecDroppedError) || signal.aborted) throw error;
          drops = started ? 1 : drops + 1;
          if (drops > RECONNECTS) throw error;
          this.#warn(`event stream dropped; reconnecting (${drops}/${RECONNECTS})`);
          await sleep(500 * drops, signal);
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      this.failed = true;
      this.#warn(firstLine(error));
    } finally {
      this.#run.nodeSettled();
    }
  }

  #stream(signal: AbortSignal, onStarted: () => void) {
    const run = this.#run;
    const stdout = new LineSplitter((line) => run.event(line, this.node));
    // Its diagnostics (why it failed, lost events) are shown as they come.
    const stderr = new LineSplitter((line) => {
      const message = line.replace(/^tcpgadget: /, "");
      if (message.startsWith("tracing TCP connections")) {
        onStarted();
        if (!this.ready) {
          this.ready = true;
          run.nodeSettled();
        }
        return;
      }
      this.#warn(message);
    });
    const args = agentArgs(run.flags, this.node, run.agentFilterNamespace);
    return execInPod(this.#target, agentCommand(run.payload.command(args)), {
      onStdout: (chunk) => stdout.push(chunk),
      onStderr: (chunk) => stderr.push(chunk),
      signal,
    });
  }
}

/** State shared by the node sessions of one run. */
class ClusterRun {
  readonly runId = randomRunId();
  readonly created: string[] = [];
  readonly sessions: NodeSession[] = [];
  readonly uploads = new Semaphore(PARALLEL_UPLOADS);
  /** What the agents are made of (set before the sessions run). */
  payload!: Payload;
  #announced = false;
  #early: string[] | undefined = [];
  #onSettled: () => void = () => {};
  #onAnnounced: () => void = () => {};

  constructor(
    readonly client: KubeClient,
    readonly flags: TraceFlags,
    readonly io: ClusterIo,
    readonly output: LineOutput,
    readonly formatter: Formatter,
    readonly filter: KubernetesFilter,
    readonly metadata: ClusterMetadata,
    readonly agentNamespace: string,
    readonly image: string,
    readonly deadlineSeconds: number,
    /** The namespace the agents filter on in the kernel (none with -A). */
    readonly agentFilterNamespace: string | undefined,
  ) {}

  /** Called when a node becomes ready or fails. */
  nodeSettled(): void {
    if (!this.sessions.every((s) => s.ready || s.failed)) return;
    const ready = this.sessions.filter((s) => s.ready).length;
    if (!this.#announced && ready > 0) {
      this.#announced = true;
      const header = this.formatter.header();
      if (header !== undefined) this.output.line(header);
      else this.io.warn(`tracing TCP connections on ${ready} node${ready === 1 ? "" : "s"}`);
      for (const line of this.#early ?? []) this.output.line(line);
      this.#early = undefined;
      this.output.flush();
      this.#onAnnounced();
    }
    this.#onSettled();
  }

  /** `settled`: after every change once each node is ready or failed; `announced`: once. */
  on(what: "settled" | "announced", callback: () => void): void {
    if (what === "settled") this.#onSettled = callback;
    else this.#onAnnounced = callback;
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
    // The API knows pods the node's files may not name yet, and labels.
    const pod = (event.podUid ? this.metadata.pod(event.podUid) : undefined) ??
      (event.pod ? this.metadata.podByName(event.namespace, event.pod) : undefined);
    if (pod) {
      event.namespace = pod.namespace;
      event.pod = pod.name;
      event.container = pod.containers.get(event.containerId ?? "") ?? event.container;
    }
    event.srcEndpoint ??= this.metadata.endpoint(event.saddr);
    event.dstEndpoint ??= this.metadata.endpoint(event.daddr);
    // -A: every pod, but host processes only with --host.
    if (this.flags.allNamespaces && !event.pod && !this.flags.host) return;
    if (!matchesFilter(event, this.filter, () => pod?.labels)) return;
    if (this.#early) {
      if (this.#early.length < EARLY_EVENTS_LIMIT) this.#early.push(this.formatter.format(event));
    } else {
      this.formatter.write(event, this.output.buffer);
      this.output.flushIfFull();
    }
  }
}

/** Runs `trace tcp --cluster`. Returns the exit status. */
export async function traceCluster(
  flags: TraceFlags,
  options: ClusterOptions,
  io: ClusterIo = DEFAULT_IO,
): Promise<number> {
  const cleanup = { failed: false };
  const status = await runCluster(flags, options, io, cleanup);
  // Pods left behind make a run that otherwise went well a failure.
  return status === 0 && cleanup.failed ? 1 : status;
}

async function runCluster(
  flags: TraceFlags,
  options: ClusterOptions,
  io: ClusterIo,
  cleanup: { failed: boolean },
): Promise<number> {
  const formatter = formatterFor(flags.output);
  const kubeconfig = loadKubeconfig({ kubeconfig: flags.kubeconfig, context: flags.context });
  const client = new KubeClient(kubeconfig);
  const namespace = flags.allNamespaces ? undefined : flags.namespace ?? kubeconfig.namespace;
  const filter: KubernetesFilter = {
    namespace,
    pod: flags.podname,
    container: flags.containername,
    labels: flags.selector,
    host: flags.host,
  };
  const agentNamespace = flags.agentNamespace ?? kubeconfig.namespace;
  const image = flags.image ?? DEFAULT_AGENT_IMAGE;
  const output = new LineOutput(io.stdout);

  // Stopping is possible from here on: whatever was set up is undone.
  const stopping = new AbortController();
  const signal = stopping.signal;
  let cleaningUp = false;
  const onSignal = () => {
    if (!signal.aborted) return stopping.abort();
    if (!cleaningUp) return;
    // A second interrupt while the pods are being deleted: leave them.
    io.warn("interrupted while deleting the agent pods: 'tcpgadget cleanup' removes them");
    Deno.exit(130);
  };
  for (const name of STOP_SIGNALS) Deno.addSignalListener(name, onSignal);
  const stopped = new Promise<"stopped">((resolve) =>
    signal.addEventListener("abort", () => resolve("stopped"), { once: true })
  );
  // The reader of our output may go away while no event is written.
  const watchOutput = setInterval(() => {
    if (!output.flush() || output.readerGone()) stopping.abort();
  }, 100);
  const metadata = new ClusterMetadata((message) => io.warn(message));
  let payload: Payload | undefined;
  let run: ClusterRun | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let sessionsDone: Promise<unknown> = Promise.resolve();
  try {
    const nodes = await Promise.race([
      targetNodes(client, flags.nodes, io.warn),
      stopped,
    ]);
    if (nodes === "stopped") return 0;
    const deadlineSeconds = flags.timeout !== undefined
      ? Math.ceil(flags.timeout) + 600
      : DEFAULT_DEADLINE_SECONDS;
    run = new ClusterRun(
      client,
      flags,
      io,
      output,
      formatter,
      filter,
      metadata,
      agentNamespace,
      image,
      deadlineSeconds,
      namespace,
    );
    const sessions = run.sessions;
    nodes.forEach((node, index) => sessions.push(new NodeSession(run!, node, index)));
    // Pods first: they start (pull the image) while the rest is prepared. A
    // refusal (RBAC, PodSecurity, quota) is the same on every node: the
    // first pod is created alone, and any failure ends the run.
    await sessions[0].create();
    const rest = await Promise.allSettled(sessions.slice(1).map((s) => s.create()));
    const refused = rest.find((r) => r.status === "rejected");
    if (refused) throw (refused as PromiseRejectedResult).reason;
    if (signal.aborted) return 0;
    const prepared = await Promise.race([
      Promise.all([
        metadata.start(client, { services: true, namespace }),
        preparePayload(options.main, signal).then((p) => payload = p),
      ]),
      stopped,
    ]).catch((error) => {
      if (signal.aborted) return "stopped" as const;
      throw error;
    });
    if (prepared === "stopped" || signal.aborted) return 0;
    const [coverage] = prepared;
    if (flags.selector && coverage.pods === "none") {
      throw new TcpgadgetError(
        "-l/--selector needs the pods' labels, but pods cannot be listed and watched (see above)",
      );
    }
    run.payload = prepared[1];

    const allFailed = new Promise<"failed">((resolve) =>
      run!.on("settled", () => {
        if (sessions.every((s) => s.failed)) resolve("failed");
      })
    );
    // --timeout counts from when the nodes trace, not from the pods' start.
    run.on("announced", () => {
      if (flags.timeout !== undefined) {
        timer = setTimeout(() => stopping.abort(), flags.timeout * 1000);
      }
    });
    sessionsDone = Promise.all(sessions.map((session) => session.run(signal)));
    const outcome = await Promise.race([stopped, allFailed, sessionsDone]);
    if (outcome !== "stopped" && sessions.every((s) => s.failed)) {
      throw new TcpgadgetError(
        `no node could be traced (${sessions.length === 1 ? "the node" : "every node"} failed)`,
      );
    }
    return 0;
  } finally {
    cleaningUp = true;
    stopping.abort();
    clearTimeout(timer);
    clearInterval(watchOutput);
    // Streams close at once on abort; a stuck one is not waited for long.
    const patience = new AbortController();
    await Promise.race([sessionsDone, sleep(5000, patience.signal)]);
    patience.abort();
    output.flush();
    if (run) cleanup.failed = (await deletePods(client, agentNamespace, run.created, io)).size > 0;
    await metadata.stop();
    await payload?.dispose();
    for (const name of STOP_SIGNALS) Deno.removeSignalListener(name, onSignal);
  }
}

/**
 * Deletes pods and waits (bounded) until they are gone, that is until
 * their kubelet has stopped their processes. Returns the pods that could
 * not be deleted, with why.
 */
async function deletePods(
  client: KubeClient,
  namespace: string,
  names: string[],
  io: Pick<ClusterIo, "warn">,
): Promise<Map<string, string>> {
  const failures = new Map<string, string>();
  // The pods' own grace period (1 s): the kubelet stops their processes
  // before the objects go, so their absence means they are stopped.
  await Promise.all(names.map(async (name) => {
    try {
      await client.call(
        { verb: "delete", resource: "pods", namespace, name },
        (core) => core.deleteNamespacedPod({ name, namespace }),
        API_TIMEOUT_MS,
      );
    } catch (error) {
      const cause = (error as Error).cause;
      if (httpStatus(cause) !== 404) failures.set(name, firstLine(error));
    }
  }));
  const deadline = performance.now() + CLEANUP_TIMEOUT_MS;
  let remaining = names.filter((name) => !failures.has(name));
  while (remaining.length > 0 && performance.now() < deadline) {
    remaining = await stillThere(client, namespace, remaining);
    if (remaining.length > 0) await sleep(200);
  }
  for (const [name, why] of failures) io.warn(`cannot delete pod ${namespace}/${name}: ${why}`);
  if (remaining.length > 0) {
    io.warn(
      `pods still being deleted after ${CLEANUP_TIMEOUT_MS / 1000} s: ${
        remaining.join(", ")
      } (namespace ${namespace}); 'tcpgadget cleanup' removes leftovers`,
    );
    for (const name of remaining) failures.set(name, "still being deleted");
  }
  return failures;
}

/** Which of the pods still exist: one list of tcpgadget's pods, else one read per pod. */
async function stillThere(
  client: KubeClient,
  namespace: string,
  names: string[],
): Promise<string[]> {
  try {
    const list = await client.core.listNamespacedPod({
      namespace,
      labelSelector: `${MANAGED_BY_LABEL}=${MANAGED_BY}`,
    });
    const listed = new Set(list.items.map((pod) => pod.metadata?.name));
    return names.filter((name) => listed.has(name));
  } catch {
    // Not allowed to list (or a failure): ask for each.
  }
  const still: string[] = [];
  await Promise.all(names.map(async (name) => {
    try {
      await client.core.readNamespacedPod({ name, namespace });
      still.push(name);
    } catch (error) {
      if (httpStatus(error) !== 404) still.push(name);
    }
  }));
  return still;
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
  const namespace = options.namespace;
  const pods = namespace
    ? await client.call(
      { verb: "list", resource: "pods", namespace },
      (core) => core.listNamespacedPod({ namespace, labelSelector }),
      API_TIMEOUT_MS,
    )
    : await client.call(
      { verb: "list", resource: "pods" },
      (core) => core.listPodForAllNamespaces({ labelSelector }),
      API_TIMEOUT_MS,
    );
  if (pods.items.length === 0) {
    io.log(`no tcpgadget pods found${namespace ? ` in namespace ${namespace}` : ""}`);
    return 0;
  }
  const byNamespace = new Map<string, string[]>();
  for (const pod of pods.items) {
    const ns = pod.metadata?.namespace ?? "default";
    byNamespace.set(ns, [...(byNamespace.get(ns) ?? []), pod.metadata?.name ?? ""]);
  }
  let failed = 0;
  for (const [ns, names] of byNamespace) {
    const failures = await deletePods(client, ns, names.sort(), io);
    for (const name of names) if (!failures.has(name)) io.log(`deleted pod ${ns}/${name}`);
    failed += failures.size;
  }
  if (failed > 0) {
    throw new TcpgadgetError(`${failed} pod${failed === 1 ? "" : "s"} could not be deleted`);
  }
  return 0;
}
