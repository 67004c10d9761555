/**
 * What the Kubernetes API says about pods and services, kept current by
 * list-and-watch (never a request per event): pods by UID (names, labels,
 * container names by id) and pods and services by IP, for naming the two
 * ends of a connection.
 *
 * Without the permission to list pods in every namespace it falls back to
 * the one namespace the run traces; without any, it says once what is lost
 * and carries on (names then come from the nodes alone).
 *
 * @module
 */

import "./silence_node_warnings.ts";
import * as k8s from "@kubernetes/client-node";
import { errorLine, TcpgadgetError } from "../../core/errors.ts";
import type { Endpoint } from "../../core/trace_event.ts";
import { apiError, ApiUnreachableError, httpStatus, noAnswerError } from "./api_errors.ts";
import { boundedWatch, isWatchTimeout } from "./bounded_watch.ts";
import type { KubeClient } from "./kube_client.ts";

/** A pod, as far as events need it. */
export interface PodInfo {
  uid: string;
  namespace: string;
  name: string;
  node: string;
  labels: Record<string, string>;
  /** Container names by container id (without the runtime's scheme). */
  containers: Map<string, string>;
}

/** What {@link ClusterMetadata.start} could set up. */
export interface MetadataCoverage {
  /** "all": every namespace; a namespace name; or "none". */
  pods: string;
  services: boolean;
}

function podInfo(pod: k8s.V1Pod): PodInfo {
  const containers = new Map<string, string>();
  const statuses = [
    ...(pod.status?.containerStatuses ?? []),
    ...(pod.status?.initContainerStatuses ?? []),
    ...(pod.status?.ephemeralContainerStatuses ?? []),
  ];
  for (const status of statuses) {
    // "containerd://<id>", "cri-o://<id>", "docker://<id>"
    const id = status.containerID?.replace(/^[a-z-]+:\/\//, "");
    if (id) containers.set(id, status.name);
  }
  return {
    uid: pod.metadata?.uid ?? "",
    namespace: pod.metadata?.namespace ?? "",
    name: pod.metadata?.name ?? "",
    node: pod.spec?.nodeName ?? "",
    labels: pod.metadata?.labels ?? {},
    containers,
  };
}

/** The HTTP status of a failed list (translated or not) or watch. */
function failureStatus(error: unknown): number {
  const cause = error instanceof TcpgadgetError ? error.cause : error;
  const watchStatus = (cause as { statusCode?: unknown })?.statusCode;
  return typeof watchStatus === "number" ? watchStatus : httpStatus(cause);
}

// Pause between restarts of a failed watch: doubling up to the maximum.
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;

/** Keeps pods (and, optionally, services) of the cluster in memory. */
export class ClusterMetadata {
  readonly #pods = new Map<string, PodInfo>();
  readonly #podsByName = new Map<string, PodInfo>();
  readonly #podsByIp = new Map<string, Endpoint>();
  readonly #servicesByIp = new Map<string, Endpoint>();
  readonly #informers: k8s.Informer<k8s.KubernetesObject>[] = [];
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #onWarning: (message: string) => void;
  #stopped = false;

  constructor(onWarning: (message: string) => void) {
    this.#onWarning = onWarning;
  }

  /**
   * Lists and starts watching pods (in every namespace, else in
   * `namespace`) and, if `services`, services in every namespace. Resolves
   * once the first lists are in, with what could be watched; what could
   * not (RBAC) is reported once through the warning callback. Rejects,
   * with nothing left running, if the server cannot be reached or does not
   * answer a first list or watch in time ({@link ApiUnreachableError}).
   */
  async start(
    client: KubeClient,
    options: { services?: boolean; namespace?: string } = {},
  ): Promise<MetadataCoverage> {
    try {
      return await this.#start(client, options);
    } catch (error) {
      await this.stop();
      throw error;
    }
  }

  async #start(
    client: KubeClient,
    options: { services?: boolean; namespace?: string },
  ): Promise<MetadataCoverage> {
    const coverage: MetadataCoverage = { pods: "none", services: false };
    const informer = <T extends k8s.KubernetesObject>(
      path: string,
      list: () => Promise<k8s.KubernetesListObject<T>>,
    ) =>
      new k8s.ListWatch<T>(
        path,
        boundedWatch(client.kubeconfig.config, client.timeoutMs),
        list,
        false,
      );
    const podHandlers = (informer: k8s.Informer<k8s.V1Pod>) => {
      const onPod = (pod: k8s.V1Pod) => this.#addPod(pod);
      informer.on("add", onPod);
      informer.on("update", onPod);
      informer.on("delete", (pod) => this.#removePod(pod));
    };
    const allPods = informer<k8s.V1Pod>(
      "/api/v1/pods",
      () =>
        client.call({ verb: "list", resource: "pods" }, (core) => core.listPodForAllNamespaces()),
    );
    podHandlers(allPods);
    const denied: string[] = [];
    let podError = await this.#run(allPods, "pods", client);
    if (podError === undefined) coverage.pods = "all";
    else if (options.namespace !== undefined) {
      const namespace = options.namespace;
      const namespaced = informer<k8s.V1Pod>(
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
        () =>
          client.call(
            { verb: "list", resource: "pods", namespace },
            (core) => core.listNamespacedPod({ namespace }),
          ),
      );
      podHandlers(namespaced);
      podError = await this.#run(namespaced, `pods in namespace ${namespace}`, client);
      if (podError === undefined) coverage.pods = namespace;
    }
    if (podError !== undefined) denied.push(errorLine(podError));
    if (options.services) {
      const services = informer<k8s.V1Service>(
        "/api/v1/services",
        () =>
          client.call(
            { verb: "list", resource: "services" },
            (core) => core.listServiceForAllNamespaces(),
          ),
      );
      const onService = (service: k8s.V1Service) => this.#addService(service);
      services.on("add", onService);
      services.on("update", onService);
      services.on("delete", (service) => this.#removeService(service));
      const serviceError = await this.#run(services, "services", client);
      if (serviceError === undefined) coverage.services = true;
      else denied.push(errorLine(serviceError));
    }
    if (coverage.pods === "none") {
      this.#onWarning(`pods not watched, names come from the nodes alone: ${denied[0]}`);
    } else if (coverage.pods !== "all") {
      this.#onWarning(
        `pods watched in namespace ${coverage.pods} only (cannot list them in every namespace)`,
      );
    }
    if (options.services && !coverage.services) {
      this.#onWarning(`services not watched, remote addresses are not named: ${denied.at(-1)}`);
    }
    return coverage;
  }

  /**
   * Starts an informer: lists, then watches. If the server cannot be
   * reached or does not answer in time, throws. A refusal of the first
   * list (401, 403, 404) is returned and the informer given up. Other
   * failures (an answer with an error), and any later one (a watch that
   * breaks), are warned once per kind and retried with a growing pause
   * until stop().
   */
  async #run(
    informer: k8s.Informer<k8s.KubernetesObject>,
    what: string,
    client: KubeClient,
  ): Promise<unknown> {
    // The failure of the start under way, if one is: client-node's start()
    // resolves after a failure too, having only reported it as an event.
    let attempt: { error?: unknown } | undefined;
    let pause = RETRY_MIN_MS;
    let lastMessage = "";
    const startOnce = async (): Promise<unknown> => {
      const current: { error?: unknown } = {};
      attempt = current;
      try {
        await informer.start();
      } catch (error) {
        current.error ??= error;
      } finally {
        attempt = undefined;
      }
      return current.error;
    };
    const retryLater = (error: unknown) => {
      const message = errorLine(this.#translated(error, what, client));
      // Said once per kind of failure, not at every retry.
      if (message !== lastMessage) {
        lastMessage = message;
        this.#onWarning(`watching ${what} failed (${message}); retrying`);
      }
      const timer = setTimeout(async () => {
        this.#timers.delete(timer);
        if (this.#stopped) return;
        const error = await startOnce();
        if (this.#stopped) return;
        if (error === undefined) pause = RETRY_MIN_MS;
        else retryLater(error);
      }, pause);
      this.#timers.add(timer);
      pause = Math.min(pause * 2, RETRY_MAX_MS);
    };
    informer.on("error", (error) => {
      if (this.#stopped) return;
      if (attempt) attempt.error ??= error;
      // A watch that ran and broke (its restarts by client-node included).
      else retryLater(error);
    });

    const error = await startOnce();
    if (error === undefined) {
      this.#informers.push(informer);
      return undefined;
    }
    const translated = this.#translated(error, what, client);
    if (translated instanceof ApiUnreachableError) {
      await informer.stop();
      throw translated;
    }
    if ([401, 403, 404].includes(failureStatus(error))) {
      await informer.stop();
      return error;
    }
    // The server answers, with an error: it may get better.
    this.#informers.push(informer);
    retryLater(error);
    return undefined;
  }

  /** A failure of a list (already translated) or of a watch, as one line. */
  #translated(error: unknown, what: string, client: KubeClient): unknown {
    if (error instanceof TcpgadgetError) return error;
    if (isWatchTimeout(error)) return noAnswerError(client.kubeconfig, client.timeoutMs);
    // Connection failures name the server; a refusal keeps the server's words.
    if ((error as { name?: unknown })?.name !== "FetchError") return error;
    return apiError(error, { verb: "watch", resource: what }, client.kubeconfig);
  }

  #addPod(pod: k8s.V1Pod): void {
    const info = podInfo(pod);
    this.#pods.set(info.uid, info);
    this.#podsByName.set(`${info.namespace}/${info.name}`, info);
    for (const { ip } of pod.status?.podIPs ?? []) {
      // Host-network pods share the node's address: not the pod's own.
      if (ip && !pod.spec?.hostNetwork) {
        this.#podsByIp.set(ip, { kind: "pod", namespace: info.namespace, name: info.name });
      }
    }
  }

  #removePod(pod: k8s.V1Pod): void {
    const info = podInfo(pod);
    this.#pods.delete(info.uid);
    const key = `${info.namespace}/${info.name}`;
    if (this.#podsByName.get(key)?.uid === info.uid) this.#podsByName.delete(key);
    for (const { ip } of pod.status?.podIPs ?? []) {
      const known = this.#podsByIp.get(ip);
      if (known?.name === info.name && known.namespace === info.namespace) {
        this.#podsByIp.delete(ip);
      }
    }
  }

  #serviceIps(service: k8s.V1Service): string[] {
    const ips = service.spec?.clusterIPs ?? [service.spec?.clusterIP ?? ""];
    return ips.filter((ip) => ip && ip !== "None");
  }

  #addService(service: k8s.V1Service): void {
    const endpoint: Endpoint = {
      kind: "svc",
      namespace: service.metadata?.namespace ?? "",
      name: service.metadata?.name ?? "",
    };
    for (const ip of this.#serviceIps(service)) this.#servicesByIp.set(ip, endpoint);
  }

  #removeService(service: k8s.V1Service): void {
    for (const ip of this.#serviceIps(service)) this.#servicesByIp.delete(ip);
  }

  /** A pod by UID. */
  pod(uid: string): PodInfo | undefined {
    return this.#pods.get(uid);
  }

  /** A pod by namespace and name. */
  podByName(namespace: string, name: string): PodInfo | undefined {
    return this.#podsByName.get(`${namespace}/${name}`);
  }

  /** The pod or service an address belongs to. */
  endpoint(ip: string): Endpoint | undefined {
    return this.#servicesByIp.get(ip) ?? this.#podsByIp.get(ip);
  }

  /** Stops watching. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await Promise.all(this.#informers.map((informer) => informer.stop().catch(() => {})));
  }
}
