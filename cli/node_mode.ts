/**
 * `tcpgadget trace tcp` in node mode: the whole flow of an event, from the
 * kernel to a line of output:
 *
 *   kernel event --(ring buffer)--> decode --> enrich --> filter --> name --> format
 *
 * and the ways it ends: Ctrl-C, SIGTERM, SIGHUP, --timeout, or the reader
 * of stdout going away. Every way ends with all programs detached.
 *
 * @module
 */

import { takeOverPidFile } from "../core/pid_file.ts";
import type { TracerOptions } from "../core/tracer.ts";
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
import { LineOutput } from "./output/line_output.ts";
import type { TraceFlags } from "./flags.ts";
import { EventPipeline, writeTo } from "./pipeline.ts";
import { DEFAULT_IO, type TraceIo } from "./run_io.ts";
import { StopControl } from "./stop_control.ts";
import { EventSources } from "./event_sources.ts";
import { readEvents } from "./read_events.ts";

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

/** Node mode's stages on this host, attached: what `trace tcp` and `egress watch` run over. */
export interface NodeStages extends AsyncDisposable {
  /** The tracer and, with `--names`, the names of destinations. */
  sources: EventSources;
  enricher: Enricher;
  filter: KubernetesFilter;
  /** The labels of an event's pod (from the API; undefined without it). */
  labelsOf(fields: PodFields): Record<string, string> | undefined;
  /**
   * `handle`, with the container filter's decision on each event's mount
   * namespace made first (the kernel is told, for the namespace's next
   * events).
   */
  deciding(handle: (event: TcpEvent) => void): (event: TcpEvent) => void;
}

/** The `--selector` needs labels, so the API. */
export function checkSelector(flags: TraceFlags): void {
  if (flags.selector && !usesApi(flags)) {
    throw new UsageError(
      "--selector needs the Kubernetes API for pod labels: give --kubeconfig (or --in-cluster), or use cluster mode (--cluster)",
    );
  }
}

function usesApi(flags: TraceFlags): boolean {
  return flags.kubeconfig !== undefined || flags.context !== undefined || flags.inCluster;
}

/**
 * Attaches node mode's stages: the API's names if asked for, the
 * containers of this node, the container filter (in the kernel), the
 * tracer and, with `--names`, the DNS snooper. Undefined if the run was
 * stopped meanwhile (while waiting for the API).
 */
export async function openNodeStages(
  flags: TraceFlags,
  io: TraceIo,
  stop: StopControl,
  options: { tracer?: Partial<TracerOptions>; dnsRingBytes?: number } = {},
): Promise<NodeStages | undefined> {
  const filter = kubernetesFilter(flags);
  // Optional: the API names remote pods and services and gives labels.
  const api = usesApi(flags) ? await stop.race(startMetadata(flags, io)) : undefined;
  if (stop.stopped) {
    await api?.metadata.stop();
    // A run that ends by its clock before it traced anything did not do
    // what was asked: say why, as a failure (a Ctrl-C is the user's own).
    if (stop.reason === "timeout") {
      throw new TcpgadgetError(
        `--timeout (${flags.timeout} s) ended the run before tracing started: the Kubernetes API server had not answered yet`,
      );
    }
    return undefined;
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
  let sources: EventSources;
  try {
    sources = await EventSources.open({
      tracer: {
        ...tracerOptions(flags, io),
        filterMountNamespaces: keeper !== undefined,
        ...options.tracer,
      },
      names: flags.names,
      dnsRingBytes: options.dnsRingBytes,
      proc: hostPath(flags.hostRoot, "/proc"),
      warn: io.warn,
    });
  } catch (error) {
    keeper?.close();
    await metadata?.stop();
    throw error;
  }
  const ptrace = containerNamingWarning();
  if (ptrace) io.warn(ptrace);
  keeper?.attach(sources.tracer);
  resolver.start(keeper ? 500 : 1000, (error) => io.warn(`container rescan failed: ${error}`));
  const containers = new ContainerEnricher(resolver, nodeName(flags));
  return {
    sources,
    enricher: api ? api.enricher(containers) : containers,
    filter,
    labelsOf,
    deciding: (handle) =>
      keeper
        ? (event) => {
          keeper.decide(event);
          handle(event);
        }
        : handle,
    async [Symbol.asyncDispose]() {
      resolver.stop();
      keeper?.close();
      await sources.close();
      await metadata?.stop();
    },
  };
}

/** Runs `trace tcp` on this host until it is told to stop. Returns the exit status. */
export async function traceTcp(flags: TraceFlags, io: TraceIo = DEFAULT_IO): Promise<number> {
  // Validate everything before touching the kernel.
  const formatter = formatterFor(flags.output);
  checkSelector(flags);
  // Signals and --timeout are in force from here on, the wait for the API included.
  using stop = new StopControl();
  if (flags.timeout !== undefined) stop.startTimeout(flags.timeout);
  // An agent whose stream dropped may still run: this one replaces it.
  if (flags.agentPidFile !== undefined) takeOverPidFile(flags.agentPidFile);
  await using stages = await openNodeStages(flags, io, stop);
  if (stages === undefined) return 0;
  const output = new LineOutput(io.stdout);
  try {
    // Printed once the programs are attached, so a script can wait for it.
    const header = formatter.header();
    if (header !== undefined) output.line(header);
    else io.warn(`tracing TCP connections (attached via ${stages.sources.tracer.attachMethod})`);
    output.flush();

    // decode (in readEvents) -> enrich -> filter -> name -> format
    const pipeline = new EventPipeline({
      ...stages,
      names: stages.sources.names,
      sink: writeTo(formatter, output),
    });
    await readEvents(stages.sources, stages.deciding((event) => pipeline.handle(event)), {
      until: stop.signal,
      output,
      endWithReader: true,
      warn: io.warn,
    });
  } finally {
    output.close();
  }
  return 0;
}
