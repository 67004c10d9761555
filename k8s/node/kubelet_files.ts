/**
 * Pod and container names from the files kubelet writes on every node, so
 * that no API credentials are needed:
 *
 * - `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`:
 *   one directory per pod, created before its containers start;
 * - `/var/log/containers/<pod>_<namespace>_<container>-<id>.log`: a link to
 *   the container's log file, created once the container has started.
 *
 * Namespace, pod and container names never contain `_` (DNS names), so `_`
 * separates them; a container id is 64 hex digits. Kubelet cuts a link name
 * at 255 bytes, which can cut the id: the link's target then still gives the
 * names and the pod UID.
 *
 * @module
 */

import { hostPath } from "./host_paths.ts";

/** A pod, from its log directory. */
export interface PodNames {
  namespace: string;
  pod: string;
  podUid: string;
}

/** A container, from its log link. */
export interface ContainerNames {
  namespace: string;
  pod: string;
  container: string;
  containerId: string;
  /** From the link's target; empty if unknown. */
  podUid: string;
}

const LOG_NAME = /^([^_/]+)_([^_/]+)_([^_/]+)-([0-9a-f]{64})\.log$/;
const POD_DIR = /^([^_/]+)_([^_/]+)_([^_/]+)$/;
const LOG_TARGET = /(?:^|\/)([^_/]+)_([^_/]+)_([^_/]+)\/([^_/]+)\/[^/]*$/;

/**
 * Parses a `/var/log/containers` link name: `<pod>_<namespace>_<container>-<id>.log`.
 *
 * @example
 * ```ts
 * import { parseContainerLogName } from "./kubelet_files.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseContainerLogName(`web-7d4b9c-xk2p_shop_nginx-${"ab".repeat(32)}.log`), {
 *   pod: "web-7d4b9c-xk2p",
 *   namespace: "shop",
 *   container: "nginx",
 *   containerId: "ab".repeat(32),
 * });
 * ```
 */
export function parseContainerLogName(
  name: string,
): { pod: string; namespace: string; container: string; containerId: string } | undefined {
  const match = LOG_NAME.exec(name);
  if (!match) return undefined;
  return { pod: match[1], namespace: match[2], container: match[3], containerId: match[4] };
}

/**
 * Parses a `/var/log/pods` directory name: `<namespace>_<pod>_<uid>`.
 *
 * @example
 * ```ts
 * import { parsePodLogDir } from "./kubelet_files.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(
 *   parsePodLogDir("kube-system_coredns-5d78c9869d-9xq2v_0f3c8a56-2d1e-4b5a-9c7d-1e2f3a4b5c6d"),
 *   {
 *     namespace: "kube-system",
 *     pod: "coredns-5d78c9869d-9xq2v",
 *     podUid: "0f3c8a56-2d1e-4b5a-9c7d-1e2f3a4b5c6d",
 *   },
 * );
 * ```
 */
export function parsePodLogDir(name: string): PodNames | undefined {
  const match = POD_DIR.exec(name);
  if (!match) return undefined;
  return { namespace: match[1], pod: match[2], podUid: match[3] };
}

/**
 * Parses the target of a `/var/log/containers` link:
 * `.../<namespace>_<pod>_<uid>/<container>/<restart>.log`.
 *
 * @example
 * ```ts
 * import { parseContainerLogTarget } from "./kubelet_files.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(
 *   parseContainerLogTarget(
 *     "/var/log/pods/shop_web-0_0f3c8a56-2d1e-4b5a-9c7d-1e2f3a4b5c6d/nginx/0.log",
 *   ),
 *   {
 *     namespace: "shop",
 *     pod: "web-0",
 *     podUid: "0f3c8a56-2d1e-4b5a-9c7d-1e2f3a4b5c6d",
 *     container: "nginx",
 *   },
 * );
 * ```
 */
export function parseContainerLogTarget(
  target: string,
): (PodNames & { container: string }) | undefined {
  const match = LOG_TARGET.exec(target);
  if (!match) return undefined;
  return { namespace: match[1], pod: match[2], podUid: match[3], container: match[4] };
}

// As short as a container id is commonly abbreviated.
const MIN_ID_PREFIX = 12;

/** A link whose name kubelet cut before the end of the container id. */
interface TruncatedLink {
  names: PodNames & { container: string };
  /** What is left of the container id (possibly nothing). */
  idPrefix: string;
}

/** A directory listing, re-read only when the directory changed. */
class DirectoryWatch {
  readonly #path: string;
  #mtime = Number.NaN;
  #readAt = 0;

  constructor(path: string) {
    this.#path = path;
  }

  /** The entry names if the directory may have changed since the last call, else undefined. */
  changedEntries(): string[] | undefined {
    let mtime: number;
    try {
      mtime = Deno.statSync(this.#path).mtime?.getTime() ?? Number.NaN;
    } catch {
      mtime = Number.NaN;
    }
    // The kernel's file times are coarse (a clock tick): a change just after
    // the last read may have kept the mtime, so recent ones are read again.
    const quiet = mtime === this.#mtime && this.#readAt - mtime > 1000;
    if (quiet) return undefined;
    this.#mtime = mtime;
    this.#readAt = Date.now();
    try {
      const names: string[] = [];
      for (const entry of Deno.readDirSync(this.#path)) names.push(entry.name);
      return names;
    } catch {
      return [];
    }
  }
}

/**
 * Pod and container names from kubelet's log files under a host root.
 * {@link refresh} re-reads only the directories that changed.
 *
 * @example
 * ```ts ignore
 * import { KubeletFiles } from "./kubelet_files.ts";
 * const files = new KubeletFiles("/host");
 * files.refresh();
 * files.container("ab".repeat(32))?.container; // "nginx"
 * ```
 */
export class KubeletFiles {
  readonly #containersDir: string;
  readonly #containersWatch: DirectoryWatch;
  readonly #podsWatch: DirectoryWatch;
  /** Link name to what it says; kept across re-reads to read each link once. */
  #links = new Map<string, ContainerNames | TruncatedLink | undefined>();
  #byId = new Map<string, ContainerNames>();
  #truncated: TruncatedLink[] = [];
  #pods = new Map<string, PodNames>();

  constructor(hostRoot = "/") {
    this.#containersDir = hostPath(hostRoot, "/var/log/containers");
    this.#containersWatch = new DirectoryWatch(this.#containersDir);
    this.#podsWatch = new DirectoryWatch(hostPath(hostRoot, "/var/log/pods"));
  }

  /** Re-reads the directories that changed. Returns whether anything was re-read. */
  refresh(): boolean {
    let changed = false;
    const links = this.#containersWatch.changedEntries();
    if (links !== undefined) {
      changed = true;
      this.#readLinks(links);
    }
    const pods = this.#podsWatch.changedEntries();
    if (pods !== undefined) {
      changed = true;
      const map = new Map<string, PodNames>();
      for (const name of pods) {
        const pod = parsePodLogDir(name);
        if (pod) map.set(pod.podUid, pod);
      }
      this.#pods = map;
    }
    return changed;
  }

  /**
   * The names of a container. `podUid` (from its cgroup) lets a link whose
   * name was cut short be matched too.
   */
  container(containerId: string, podUid = ""): ContainerNames | undefined {
    const found = this.#byId.get(containerId);
    if (found || !podUid) return found;
    let match: TruncatedLink | undefined;
    for (const link of this.#truncated) {
      if (link.names.podUid !== podUid || !containerId.startsWith(link.idPrefix)) continue;
      // Too little of the id left to tell the container from the pod's sandbox.
      if (link.idPrefix.length < MIN_ID_PREFIX) continue;
      // Two containers of the pod whose ids were cut alike: ambiguous.
      if (match && match.names.container !== link.names.container) return undefined;
      match = link;
    }
    return match && { ...match.names, containerId };
  }

  /** The names of a pod, from its log directory. */
  pod(podUid: string): PodNames | undefined {
    return this.#pods.get(podUid);
  }

  #readLinks(names: string[]): void {
    const links = new Map<string, ContainerNames | TruncatedLink | undefined>();
    for (const name of names) {
      if (!name.endsWith(".log")) continue;
      links.set(name, this.#links.has(name) ? this.#links.get(name) : this.#readLink(name));
    }
    this.#links = links;
    const byId = new Map<string, ContainerNames>();
    const truncated: TruncatedLink[] = [];
    for (const value of links.values()) {
      if (value === undefined) continue;
      if ("idPrefix" in value) truncated.push(value);
      else byId.set(value.containerId, value);
    }
    this.#byId = byId;
    this.#truncated = truncated;
  }

  #readLink(name: string): ContainerNames | TruncatedLink | undefined {
    let target: PodNames & { container: string } | undefined;
    try {
      target = parseContainerLogTarget(Deno.readLinkSync(`${this.#containersDir}/${name}`));
    } catch {
      target = undefined;
    }
    const parsed = parseContainerLogName(name);
    if (parsed) {
      // The target is only for the UID: names come from the link's own name.
      const podUid = target && target.namespace === parsed.namespace && target.pod === parsed.pod
        ? target.podUid
        : "";
      return { ...parsed, podUid };
    }
    if (!target) return undefined;
    const start = `${target.pod}_${target.namespace}_${target.container}-`;
    const stem = name.slice(0, -".log".length);
    const rest = stem.startsWith(start) ? stem.slice(start.length) : "";
    if (!/^[0-9a-f]*$/.test(rest)) return undefined;
    return { names: target, idPrefix: rest };
  }
}
