/**
 * Pod and container of a cgroup v2 id, the id the kernel puts in every
 * event. The id of a cgroup is the inode number of its directory, so a walk
 * of the pods' part of the hierarchy maps ids to paths. This names events
 * of processes that are already gone (their cgroup lives a little longer).
 *
 * @module
 */

import { parseCgroupPath, type PodContainerIds } from "./cgroup_path.ts";
import { cgroup2Mount } from "./host_paths.ts";

/** Options of {@link CgroupIds}. */
export interface CgroupIdsOptions {
  /** Shortest time between two walks caused by unknown ids (default 1000 ms). */
  minWalkIntervalMs?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

// Levels walked whatever their names, to find kubepods below a cgroup root
// or an outer container (kind: /kubelet.slice/kubelet-kubepods.slice,
// docker-in-docker: /system.slice/docker-<id>.scope/kubelet.slice/...).
const FREE_DEPTH = 4;
const MAX_DEPTH = 16;

/**
 * Maps cgroup v2 ids to pods and containers by walking the host's cgroup2
 * hierarchy when an id is unknown, at most once per interval.
 *
 * @example
 * ```ts ignore
 * import { CgroupIds } from "./cgroup_ids.ts";
 * const ids = new CgroupIds("/");
 * ids.lookup(event.cgroupId); // { podUid: "...", containerId: "..." } or undefined
 * ```
 */
export class CgroupIds {
  readonly #hostRoot: string;
  readonly #minWalkIntervalMs: number;
  readonly #now: () => number;
  #ids = new Map<number, PodContainerIds>();
  #lastWalk = Number.NEGATIVE_INFINITY;

  constructor(hostRoot = "/", options: CgroupIdsOptions = {}) {
    this.#hostRoot = hostRoot;
    this.#minWalkIntervalMs = options.minWalkIntervalMs ?? 1000;
    this.#now = options.now ?? (() => performance.now());
  }

  /** The pod and container of a cgroup id, or undefined if it is not a pod's. */
  lookup(id: number): PodContainerIds | undefined {
    // 0: no cgroup known; 1: the root.
    if (id <= 1) return undefined;
    const found = this.#ids.get(id);
    if (found) return found;
    const now = this.#now();
    if (now - this.#lastWalk < this.#minWalkIntervalMs) return undefined;
    this.walk();
    return this.#ids.get(id);
  }

  /** Re-reads the hierarchy. */
  walk(): void {
    this.#lastWalk = this.#now();
    const ids = new Map<number, PodContainerIds>();
    // Looked for at every walk: the hierarchy may be mounted later.
    const mount = cgroup2Mount(this.#hostRoot);
    if (mount !== undefined) this.#walk(mount, "", 0, ids);
    this.#ids = ids;
  }

  #walk(dir: string, relative: string, depth: number, ids: Map<number, PodContainerIds>): void {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(dir)];
    } catch {
      return; // removed while walking
    }
    for (const entry of entries) {
      if (!entry.isDirectory) continue;
      const path = `${relative}/${entry.name}`;
      const inPods = path.includes("kubepods");
      if (!inPods && depth >= FREE_DEPTH) continue;
      const full = `${dir}/${entry.name}`;
      if (inPods) {
        const parsed = parseCgroupPath(path);
        if (parsed) {
          try {
            const ino = Deno.statSync(full).ino;
            if (ino !== null) ids.set(ino, parsed);
          } catch {
            continue;
          }
        }
      }
      if (depth < MAX_DEPTH) this.#walk(full, path, depth + 1, ids);
    }
  }
}
