/**
 * Discovery documents (`/api`, `/api/v1`, `/apis`, `/version`) for the
 * resources the fake serves.
 *
 * @module
 */

/** The Kubernetes version the fake claims to be (behaviour follows it). */
export const KUBE_VERSION = {
  major: "1",
  minor: "35",
  gitVersion: "v1.35.0",
  gitCommit: "0000000000000000000000000000000000000000",
  gitTreeState: "clean",
  buildDate: "2025-12-17T00:00:00Z",
  goVersion: "go1.25.5",
  compiler: "gc",
  platform: "linux/amd64",
};

const ALL_VERBS = [
  "create",
  "delete",
  "deletecollection",
  "get",
  "list",
  "patch",
  "update",
  "watch",
];

interface ResourceEntry {
  name: string;
  singularName: string;
  namespaced: boolean;
  kind: string;
  verbs: string[];
  shortNames?: string[];
  categories?: string[];
}

const RESOURCES: ResourceEntry[] = [
  {
    name: "events",
    singularName: "event",
    namespaced: true,
    kind: "Event",
    verbs: ALL_VERBS,
    shortNames: ["ev"],
  },
  {
    name: "namespaces",
    singularName: "namespace",
    namespaced: false,
    kind: "Namespace",
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    shortNames: ["ns"],
  },
  {
    name: "nodes",
    singularName: "node",
    namespaced: false,
    kind: "Node",
    verbs: ALL_VERBS,
    shortNames: ["no"],
  },
  {
    name: "pods",
    singularName: "pod",
    namespaced: true,
    kind: "Pod",
    verbs: ALL_VERBS,
    shortNames: ["po"],
    categories: ["all"],
  },
  {
    name: "pods/exec",
    singularName: "",
    namespaced: true,
    kind: "PodExecOptions",
    verbs: ["create", "get"],
  },
  { name: "pods/log", singularName: "", namespaced: true, kind: "Pod", verbs: ["get"] },
  {
    name: "pods/status",
    singularName: "",
    namespaced: true,
    kind: "Pod",
    verbs: ["get", "patch", "update"],
  },
  {
    name: "services",
    singularName: "service",
    namespaced: true,
    kind: "Service",
    verbs: ALL_VERBS,
    shortNames: ["svc"],
    categories: ["all"],
  },
];

/** `GET /api`. */
export function apiVersions(serverAddress: string): unknown {
  return {
    kind: "APIVersions",
    versions: ["v1"],
    serverAddressByClientCIDRs: [{ clientCIDR: "0.0.0.0/0", serverAddress }],
  };
}

/** `GET /api/v1`. */
export function apiResourceList(): unknown {
  return {
    kind: "APIResourceList",
    groupVersion: "v1",
    resources: RESOURCES.map((r) => ({
      ...r,
      storageVersionHash: r.name.includes("/") ? undefined : btoa(r.name).slice(0, 11),
    })),
  };
}

/** `GET /apis`: no API groups besides the core group. */
export function apiGroupList(): unknown {
  return { kind: "APIGroupList", apiVersion: "v1", groups: [] };
}

/** The kinds of the resources, for list responses. */
export const KINDS: Record<string, string> = {
  events: "Event",
  namespaces: "Namespace",
  nodes: "Node",
  pods: "Pod",
  services: "Service",
};

/** Whether a resource lives in namespaces. */
export const NAMESPACED: Record<string, boolean> = {
  events: true,
  namespaces: false,
  nodes: false,
  pods: true,
  services: true,
};
