/**
 * `tcpgadget trace tcp --cluster`: traces the nodes of the kubeconfig's
 * cluster with nothing installed beforehand. The flow:
 *
 *   select nodes --> one agent pod per node (k8s/api/agent_session.ts:
 *   pod, upload of tcpgadget unless its image holds it, node mode
 *   streaming JSON lines)
 *   --> per line: decode --> enrich (API names) --> filter --> format
 *
 * and, however it ends, every pod deleted and waited for.
 *
 * @module
 */

import "../k8s/api/silence_node_warnings.ts";
import { TcpgadgetError } from "../core/errors.ts";
import { sleep } from "../core/sleep.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import type { KubernetesFilter } from "../k8s/pod_filter.ts";
import { AGENT_PID_FILE, DEFAULT_AGENT_IMAGE, HOST_ROOT } from "../k8s/api/agent_pod.ts";
import {
  type AgentListener,
  type AgentRun,
  AgentSession,
  type ProgramDelivery,
  programInImage,
} from "../k8s/api/agent_session.ts";
import { ClusterMetadata } from "../k8s/api/cluster_metadata.ts";
import { KubeClient } from "../k8s/api/kube_client.ts";
import { loadKubeconfig } from "../k8s/api/kubeconfig.ts";
import { MetadataEnricher } from "../k8s/api/metadata_enricher.ts";
import { kubernetesArch, selectNodes } from "../k8s/api/node_selection.ts";
import { PayloadDistribution } from "../k8s/api/payload_distribution.ts";
import { deletePods } from "../k8s/api/pod_cleanup.ts";
import { type Payload, preparePayload } from "../k8s/api/self_copy.ts";
import { AGENT_IMAGE_PROGRAM } from "../k8s/image/agent_image.ts";
import { CopyProgress } from "./copy_progress.ts";
import { traceArgs, type TraceFlags } from "./flags.ts";
import { formatterFor } from "./output/formatter.ts";
import { parseJsonEvent } from "./output/json_event.ts";
import { LineOutput, notWritten } from "./output/line_output.ts";
import { EventPipeline } from "./pipeline.ts";
import { DEFAULT_IO, type TraceIo } from "./run_io.ts";
import { HeldOutput } from "./held_output.ts";
import { STOP_GRACE_MS, StopControl } from "./stop_control.ts";

const DEFAULT_DEADLINE_SECONDS = 6 * 3600;
/**
 * Copies at once from one sender (this machine, or an agent serving
 * others): a tree of 4 reaches 32 nodes in 3 hops.
 */
const DEFAULT_PARALLEL_UPLOADS = 4;
/**
 * Bytes of lines queued for stdout while the reader is behind, beyond
 * which events are counted as not written: the agents' streams are not
 * held back, so a stalled reader must not make the client grow.
 */
const OUTPUT_LIMIT = 16 << 20;

/** Settings of cluster mode beyond the trace flags. */
export interface ClusterOptions {
  /** The program's entry module, bundled for the pods under `deno run`. */
  main: URL;
  /** What `egress watch --cluster` adds. */
  judge?: ClusterJudge;
}

/** What `egress watch --cluster` adds to cluster mode's flow. */
export interface ClusterJudge {
  /** Every event that passes the filter, with its pod's labels (before it is written). */
  sink(event: TraceEvent, labels: Record<string, string> | undefined): void;
  /** Whether events are also written to stdout (`-o`). */
  write: boolean;
  /** Called once every node traces; the run ends when what it returns settles (COMMAND). */
  tracing(): Promise<unknown> | undefined;
  /** A node was given up: its events from then on are not seen. */
  nodeFailed(node: string): void;
}

/**
 * The node-mode command line the agent on `node` runs: JSON on the host's
 * root, with the filters the kernel there applies, each flag one word.
 */
export function agentArgs(flags: TraceFlags, node: string, namespace?: string): string[] {
  return [
    "trace",
    "tcp",
    ...traceArgs({
      output: "json",
      hostRoot: HOST_ROOT,
      nodeName: node,
      namespace,
      podname: flags.podname,
      containername: flags.containername,
      host: flags.host,
      pid: flags.pid,
      comm: flags.comm,
      connectOnly: flags.connectOnly,
      acceptOnly: flags.acceptOnly,
      failureOnly: flags.failureOnly,
      names: flags.names,
      agentPidFile: AGENT_PID_FILE,
    }),
  ];
}

/** The pod selection of cluster mode: `-n` defaults to the context's namespace. */
export function clusterFilter(flags: TraceFlags, contextNamespace: string): KubernetesFilter {
  return {
    namespace: flags.allNamespaces ? undefined : flags.namespace ?? contextNamespace,
    pod: flags.podname,
    container: flags.containername,
    labels: flags.selector,
    // -A: every pod, but host processes only with --host.
    podsOnly: flags.allNamespaces,
    host: flags.host,
  };
}

function randomRunId(): string {
  return [...crypto.getRandomValues(new Uint8Array(3))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Runs `trace tcp --cluster`. Returns the exit status. */
export async function traceCluster(
  flags: TraceFlags,
  options: ClusterOptions,
  io: TraceIo = DEFAULT_IO,
): Promise<number> {
  const cleanup = { failed: false };
  const status = await runCluster(flags, options, io, cleanup);
  // Pods left behind make a run that otherwise went well a failure.
  return status === 0 && cleanup.failed ? 1 : status;
}

async function runCluster(
  flags: TraceFlags,
  options: ClusterOptions,
  io: TraceIo,
  cleanup: { failed: boolean },
): Promise<number> {
  const formatter = formatterFor(flags.output);
  // Stopping is possible from here on: whatever was set up is undone.
  using stop = new StopControl();
  const signal = stop.signal;
  const kubeconfig = loadKubeconfig({ kubeconfig: flags.kubeconfig, context: flags.context });
  const client = new KubeClient(kubeconfig);
  const filter = clusterFilter(flags, kubeconfig.namespace);
  const agentNamespace = flags.agentNamespace ?? kubeconfig.namespace;
  const output = new LineOutput(io.stdout, { limit: OUTPUT_LIMIT });
  // While copies run, on a terminal, every line goes through their progress.
  const terminal = io === DEFAULT_IO && Deno.stderr.isTerminal();
  const progress = new CopyProgress({
    warn: io.warn,
    terminal: terminal
      ? {
        write: (text) => {
          for (let data = new TextEncoder().encode(text); data.length > 0;) {
            data = data.subarray(Deno.stderr.writeSync(data));
          }
        },
        columns: () => Deno.consoleSize().columns,
      }
      : undefined,
  });
  const warn = (message: string) => progress.line(message);
  const held = new HeldOutput(output, formatter, warn);
  const metadata = new ClusterMetadata(warn);
  const enricher = new MetadataEnricher(metadata);
  const judge = options.judge;
  const pipeline = new EventPipeline({
    enricher,
    filter,
    labelsOf: (event) => enricher.labelsOf(event),
    sink: judge
      ? (event) => {
        judge.sink(event, enricher.labelsOf(event));
        if (judge.write) held.write(event);
      }
      : held.write,
  });

  // The reader of our output may go away while no event is written.
  const watchOutput = setInterval(() => {
    if (!output.flush() || output.readerGone()) stop.stop();
  }, 100);
  let preparing: Promise<Payload> | undefined;
  let copies: PayloadDistribution | undefined;
  let sessions: AgentSession[] = [];
  let sessionsDone: Promise<unknown> = Promise.resolve();
  try {
    const nodes = await stop.race(
      selectNodes(client, flags.nodes, warn, { arch: kubernetesArch() }),
    );
    if (nodes === undefined) return 0;

    // One agent per node; the run's settings are the same for all.
    const run: AgentRun = {
      client,
      namespace: agentNamespace,
      runId: randomRunId(),
      image: flags.agentImage ?? flags.image ?? DEFAULT_AGENT_IMAGE,
      program: flags.agentImage !== undefined ? AGENT_IMAGE_PROGRAM : undefined,
      imagePullSecrets: flags.imagePullSecrets,
      deadlineSeconds: flags.timeout !== undefined
        ? Math.ceil(flags.timeout) + 600
        : DEFAULT_DEADLINE_SECONDS,
      agentArgs: (node) => agentArgs(flags, node, filter.namespace),
    };
    let allFailed: () => void = () => {};
    const listener: AgentListener = {
      // decode -> enrich -> filter -> format
      line(session, line) {
        let event: TraceEvent;
        try {
          event = parseJsonEvent(line);
        } catch {
          warn(`node ${session.node}: unreadable event: ${line.slice(0, 120)}`);
          return;
        }
        pipeline.handle(event);
      },
      warn: (session, message) => warn(`node ${session.node}: ${message}`),
      settled(session) {
        if (session.failed) judge?.nodeFailed(session.node);
        if (!sessions.every((s) => s.ready || s.failed)) return;
        // Every node traces or failed: the copies are over.
        void copies?.close();
        progress.close();
        const ready = sessions.filter((s) => s.ready).length;
        if (!held.released && ready > 0) {
          held.release(ready);
          // --timeout counts from when the nodes trace, not from the pods' start.
          if (flags.timeout !== undefined) stop.startTimeout(flags.timeout);
          judge?.tracing()?.finally(() => stop.stop());
        }
        if (sessions.every((s) => s.failed)) allFailed();
      },
    };
    sessions = nodes.map((node, index) => new AgentSession(run, listener, node, index));

    // Pods first: they start (pull the image) while the rest is prepared. A
    // refusal (RBAC, PodSecurity, quota) is the same on every node: the
    // first pod is created alone, and any failure ends the run.
    await sessions[0].create();
    const rest = await Promise.allSettled(sessions.slice(1).map((s) => s.create()));
    const refused = rest.find((r) => r.status === "rejected");
    if (refused) throw (refused as PromiseRejectedResult).reason;
    if (signal.aborted) return 0;
    // An image that holds tcpgadget needs nothing prepared nor copied.
    preparing = flags.agentImage === undefined ? preparePayload(options.main, signal) : undefined;
    const prepared = await stop.race(
      Promise.all([
        metadata.start(client, { services: true, namespace: filter.namespace }),
        preparing,
      ]),
    ).catch((error) => {
      if (signal.aborted) return undefined;
      throw error;
    });
    if (prepared === undefined || signal.aborted) return 0;
    const [coverage, ready] = prepared;
    if (flags.selector && coverage.pods === "none") {
      throw new TcpgadgetError(
        "-l/--selector needs the pods' labels, but pods cannot be listed and watched (see above)",
      );
    }

    const failed = new Promise<"failed">((resolve) => allFailed = () => resolve("failed"));
    copies = ready === undefined ? undefined : new PayloadDistribution(ready, {
      parallel: flags.maxParallelUploads ?? DEFAULT_PARALLEL_UPLOADS,
      events: {
        progress: (node, from, done, total) => progress.update(node, from, done, total),
        copied: (node, message) => progress.done(node, message),
        warn: (node, message) => warn(`node ${node}: ${message}`),
        notice: warn,
      },
    });
    const delivery: ProgramDelivery = copies ?? programInImage(AGENT_IMAGE_PROGRAM);
    sessionsDone = Promise.all(sessions.map((session) => session.run(delivery, signal)));
    const outcome = await Promise.race([
      stop.whenStopped.then(() => "stopped"),
      failed,
      sessionsDone,
    ]);
    if (outcome !== "stopped" && sessions.every((s) => s.failed)) {
      throw new TcpgadgetError(
        `no node could be traced (${sessions.length === 1 ? "the node" : "every node"} failed)`,
      );
    }
    return 0;
  } finally {
    // A second interrupt while the pods are being deleted: leave them (the
    // bundle is removed on the way out, see preparePayload).
    stop.onSecondSignal(() => {
      io.warn("interrupted while deleting the agent pods: 'tcpgadget cleanup' removes them");
      Deno.exit(130);
    });
    stop.stop();
    clearInterval(watchOutput);
    progress.close();
    // Streams close at once on abort; a stuck one is not waited for long.
    const patience = new AbortController();
    await Promise.race([
      Promise.all([sessionsDone, copies?.close()]),
      sleep(5000, patience.signal),
    ]);
    patience.abort();
    // What the reader does not take within the grace period is reported,
    // not waited for: the pods are deleted whatever the reader does.
    const unwritten = await output.finish(STOP_GRACE_MS);
    if (unwritten > 0 && !output.closed) io.warn(notWritten(unwritten));
    if (held.holding > 0) {
      io.warn(
        `lost ${held.holding} event${
          held.holding === 1 ? "" : "s"
        } (held until every node traces, and not every node did)`,
      );
    }
    output.close();
    const created = sessions.filter((s) => s.created).map((s) => s.pod);
    if (created.length > 0) {
      cleanup.failed = (await deletePods(client, agentNamespace, created, io.warn)).size > 0;
    }
    await metadata.stop();
    // The bundler is stopped by the abort; its directory is removed once it has.
    await preparing?.then((payload) => payload.dispose(), () => {});
  }
}
