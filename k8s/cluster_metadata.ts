/**
 * What the Kubernetes API says about pods and services, kept current by
 * list-and-watch (never a request per event): pods by UID (names, labels,
 * container names by id) and pods and services by IP, for naming the two
 * ends of a connection.
 *
 * @module
 */

import * as k8s from "@kubernetes/client-node";
import type { KubeClient } from "./kube_client.ts";

/** What an address is in the cluster. */
export interface Endpoint {
  kind: "pod" | "svc";
  namespace: string;
  name: string;
}

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

/** Keeps pods (and, optionally, services) of the cluster in memory. */
export class ClusterMetadata {
  readonly #pods = new Map<string, PodInfo>();
  readonly #podsByIp = new Map<string, Endpoint>();
  readonly #servicesByIp = new Map<string, Endpoint>();
  readonly #informers: k8s.Informer<k8s.KubernetesObject>[] = [];
  readonly #onError: (message: string) => void;
  #stopped = false;

  constructor(onError: (message: string) => void) {
    this.#onError = onError;
  }

  /**
   * Lists and starts watching pods (and services if `services`). Resolves
   * once the first lists are in.
   */
  async start(client: KubeClient, options: { services?: boolean } = {}): Promise<void> {
    const config = client.kubeconfig.config;
    const core = client.core;
    const pods = k8s.makeInformer<k8s.V1Pod>(
      config,
      "/api/v1/pods",
      () => client.call({ verb: "list", resource: "pods" }, () => core.listPodForAllNamespaces()),
    );
    const onPod = (pod: k8s.V1Pod) => this.#addPod(pod);
    pods.on("add", onPod);
    pods.on("update", onPod);
    pods.on("delete", (pod) => this.#removePod(pod));
    this.#informers.push(pods as k8s.Informer<k8s.KubernetesObject>);
    const started = [this.#run(pods, "pods")];
    if (options.services) {
      const services = k8s.makeInformer<k8s.V1Service>(
        config,
        "/api/v1/services",
        () =>
          client.call(
            { verb: "list", resource: "services" },
            () => core.listServiceForAllNamespaces(),
          ),
      );
      const onService = (service: k8s.V1Service) => this.#addService(service);
      services.on("add", onService);
      services.on("update", onService);
      services.on("delete", (service) => this.#removeService(service));
      this.#informers.push(services as k8s.Informer<k8s.KubernetesObject>);
      started.push(this.#run(services, "services"));
    }
    await Promise.all(started);
  }

  // Starts an informer and restarts it after errors (a watch that ends or
  // fails), with a pause, until stop().
  async #run(informer: k8s.Informer<k8s.KubernetesObject>, what: string): Promise<void> {
    informer.on("error", (error) => {
      if (this.#stopped) return;
      this.#onError(`watching ${what} failed (${errorText(error)}); retrying`);
      setTimeout(() => {
        if (!this.#stopped) informer.start().catch(() => {});
      }, 2000);
    });
    await informer.start();
  }

  #addPod(pod: k8s.V1Pod): void {
    const info = podInfo(pod);
    this.#pods.set(info.uid, info);
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

  /** The pod or service an address belongs to. */
  endpoint(ip: string): Endpoint | undefined {
    return this.#servicesByIp.get(ip) ?? this.#podsByIp.get(ip);
  }

  /** Stops watching. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all(this.#informers.map((informer) => informer.stop().catch(() => {})));
  }
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n")[0];
}
