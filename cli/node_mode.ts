/**
 * `tcpgadget trace tcp` in node mode: the whole flow of an event, from the
 * kernel to a line of output:
 *
 *   kernel event --(ring buffer)--> decode --> enrich --> filter --> format
 *
 * and the ways it ends: Ctrl-C, SIGTERM, SIGHUP, --timeout, or the reader
 * of stdout going away. Every way ends with all programs detached.
 *
 * @module
 */

import { TcpTracer, type TracerOptions } from "../core/tracer.ts";
import type { TcpEvent } from "../core/event.ts";
import { TcpgadgetError, UsageError } from "../core/errors.ts";
import { containerNamingWarning } from "../core/system.ts";
import type { Enricher, KubernetesFields } from "../core/trace_event.ts";
import { containerSelection, type KubernetesFilter } from "../k8s/pod_filter.ts";
import { ContainerResolver } from "../k8s/node/container_resolver.ts";
import { ContainerEnricher } from "../k8s/node/container_enricher.ts";
import { MountNamespaceFilter } from "../k8s/node/mntns_filter.ts";
import { hostPath } from "../k8s/node/host_paths.ts";
import type { ClusterMetadata } from "../k8s/api/cluster_metadata.ts";
import type { MetadataEnricher } from "../k8s/api/metadata_enricher.ts";
import { formatterFor } from "./output/formatter.ts";
import { LineOutput, notWritten } from "./output/line_output.ts";
import type { TraceFlags } from "./flags.ts";
import { EventPipeline, writeTo } from "./pipeline.ts";
import { DEFAULT_IO, type TraceIo } from "./run_io.ts";
import { STOP_GRACE_MS, StopControl } from "./stop_control.ts";
import { sleep } from "../core/sleep.ts";

/** The tracer options that `trace tcp` flags ask for. */
export function tracerOptions(flags: TraceFlags, io: TraceIo = DEFAULT_IO): TracerOptions {
  return {
    pid: flags.pid,
    comm: flags.comm,
    kinds: { connect: flags.connectOnly, accept: flags.acceptOnly, failure: flags.failureOnly },
    onWarning: io.warn,
  };
}

/** The pod and container selection that `trace tcp` flags ask for. */
export function kubernetesFilter(flags: TraceFlags): KubernetesFilter {
  return {
    namespace: flags.allNamespaces ? undefined : flags.namespace,
    pod: flags.podname,
    container: flags.containername,
    labels: flags.selector,
    host: flags.host,
  };
}

/**
 * The node's name: `--node-name`, else the host's name (read from the host
 * root's /etc/hostname when that is not this file system's, as in a pod).
 */
export function nodeName(flags: Pick<TraceFlags, "nodeName" | "hostRoot">): string {
  if (flags.nodeName) return flags.nodeName;
  if (flags.hostRoot !== "/") {
    try {
      const name = Deno.readTextFileSync(hostPath(flags.hostRoot, "/etc/hostname")).trim();
      if (name) return name;
    } catch {
      // fall back to this kernel's host name
    }
  }
  return Deno.hostname();
}

/**
 * The watch of pods and services that node mode uses when given API access,
 * loaded only then (the client library takes a while to load).
 */
async function startMetadata(flags: TraceFlags, io: TraceIo): Promise<ApiNames> {
  const { loadKubeconfig, inClusterKubeconfig } = await import("../k8s/api/kubeconfig.ts");
  const { KubeClient } = await import("../k8s/api/kube_client.ts");
  const { ClusterMetadata } = await import("../k8s/api/cluster_metadata.ts");
  const { MetadataEnricher } = await import("../k8s/api/metadata_enricher.ts");
  const client = new KubeClient(
    flags.inCluster
      ? inClusterKubeconfig()
      : loadKubeconfig({ kubeconfig: flags.kubeconfig, context: flags.context }),
  );
  const metadata = new ClusterMetadata((message) => io.warn(message));
  await metadata.start(client, { services: true });
  const names = new MetadataEnricher(metadata);
  return {
    metadata,
    enricher: (inner) => new MetadataEnricher(metadata, inner),
    labelsOf: (fields) => names.labelsOf(fields),
  };
}

/** What node mode gets from the API. */
interface ApiNames {
  metadata: ClusterMetadata;
  /** `inner`'s enrichment, with the API's names. */
  enricher(inner: Enricher): MetadataEnricher;
  labelsOf(fields: PodFields): Record<string, string> | undefined;
}

type PodFields = Pick<KubernetesFields, "podUid" | "namespace" | "pod">;

/** Runs `trace tcp` on this host until it is told to stop. Returns the exit status. */
export async function traceTcp(flags: TraceFlags, io: TraceIo = DEFAULT_IO): Promise<number> {
  // Validate everything before touching the kernel.
  const formatter = formatterFor(flags.output);
  const filter = kubernetesFilter(flags);
  const useApi = flags.kubeconfig !== undefined || flags.context !== undefined || flags.inCluster;
  if (filter.labels && !useApi) {
    throw new UsageError(
      "--selector needs the Kubernetes API for pod labels: give --kubeconfig (or --in-cluster), or use cluster mode (--cluster)",
    );
  }
  // Signals and --timeout are in force from here on, the wait for the API included.
  using stop = new StopControl();
  if (flags.timeout !== undefined) stop.startTimeout(flags.timeout);

  // Optional: the API names remote pods and services and gives labels.
  const api = useApi ? await stop.race(startMetadata(flags, io)) : undefined;
  if (stop.stopped) {
    await api?.metadata.stop();
    // A run that ends by its clock before it traced anything did not do
    // what was asked: say why, as a failure (a Ctrl-C is the user's own).
    if (stop.reason === "timeout") {
      throw new TcpgadgetError(
        `--timeout (${flags.timeout} s) ended the run before tracing started: the Kubernetes API server had not answered yet`,
      );
    }
    return 0;
  }
  const metadata = api?.metadata;
  const labelsOf = (fields: PodFields) => api?.labelsOf(fields);

  // Containers are found by rescanning /proc and kubelet's files; with a pod
  // filter, the kernel is told which mount namespaces to let through, each
  // decided from its first event.
  const resolver = new ContainerResolver({ hostRoot: flags.hostRoot });
  resolver.refresh();
  const selection = containerSelection(filter, labelsOf);
  const keeper = selection ? new MountNamespaceFilter(resolver, selection) : undefined;
  let tracer: TcpTracer;
  try {
    tracer = TcpTracer.open({
      ...tracerOptions(flags, io),
      filterMountNamespaces: keeper !== undefined,
    });
  } catch (error) {
    keeper?.close();
    await metadata?.stop();
    throw error;
  }
  const ptrace = containerNamingWarning();
  if (ptrace) io.warn(ptrace);
  keeper?.attach(tracer);
  resolver.start(keeper ? 500 : 1000, (error) => io.warn(`container rescan failed: ${error}`));
  const containers = new ContainerEnricher(resolver, nodeName(flags));
  const enricher: Enricher = api ? api.enricher(containers) : containers;

  // A stop wakes the reader wherever it waits: for the kernel, between
  // batches, or for the reader of stdout.
  stop.signal.addEventListener("abort", () => tracer.stop(), { once: true });
  const output = new LineOutput(io.stdout);
  try {
    // Printed once the programs are attached, so a script can wait for it.
    const header = formatter.header();
    if (header !== undefined) output.line(header);
    else io.warn(`tracing TCP connections (attached via ${tracer.attachMethod})`);
    output.flush();

    // decode (in drain) -> enrich -> filter -> format
    const pipeline = new EventPipeline({
      enricher,
      filter,
      labelsOf,
      sink: writeTo(formatter, output),
    });
    const handle = keeper
      ? (event: TcpEvent) => {
        keeper.decide(event);
        pipeline.handle(event);
      }
      : pipeline.handle.bind(pipeline);
    while (!stop.stopped && !output.closed) {
      if (output.backlogged) {
        // The reader of stdout is behind: events wait in the kernel's
        // rings meanwhile, and what does not fit there is counted as lost.
        await output.ready(stop.signal);
        continue;
      }
      // Events are formatted before the next record is decoded.
      const read = tracer.drain(handle, { reuse: true });
      // A write tells that the reader is gone; with nothing to write, ask.
      const writing = output.buffer.length > 0;
      if (!output.flush() || (!writing && output.readerGone())) break;
      tracer.reportLost();
      if (read > 0) {
        // Events are flowing: let a batch build up for a moment rather
        // than ask poll() (a thread hop per call) after every few events.
        await sleep(tracer.batchIntervalMs, stop.signal);
      } else {
        await tracer.wait();
      }
    }
    if (!output.closed) {
      // Events that happened before the stop still count; what the reader
      // does not take within the grace period is reported, not waited for.
      tracer.drain(handle, { reuse: true });
      const unwritten = await output.finish(STOP_GRACE_MS);
      if (unwritten > 0 && !output.closed) io.warn(notWritten(unwritten));
    }
  } finally {
    output.close();
    resolver.stop();
    keeper?.close();
    await tracer.close();
    await metadata?.stop();
  }
  return 0;
}
