/**
 * Which Kubernetes container a mount namespace belongs to, on this node and
 * without credentials: a process of the namespace (from `/proc`), its cgroup
 * (container id and pod UID), and kubelet's log files (names).
 *
 * The per-event {@link ContainerResolver.lookup} is a Map lookup; reading
 * files happens on misses (at most once per namespace per retry interval)
 * and in {@link ContainerResolver.refresh}, which a timer runs off the
 * event path.
 *
 * @module
 */

import { CgroupIds } from "./cgroup_ids.ts";
import { type PodContainerIds, podContainerOfProcCgroup } from "./cgroup_path.ts";
import { hostMountNamespace, hostPath, mountNamespaceOf } from "./host_paths.ts";
import { KubeletFiles } from "./kubelet_files.ts";

/** The container of a mount namespace; empty strings when not applicable. */
export interface ContainerInfo {
  /** 64 hex digits; empty for host processes. */
  readonly containerId: string;
  readonly podUid: string;
  readonly namespace: string;
  readonly pod: string;
  readonly container: string;
}

/** A process outside any container (or one that cannot be told). */
export const NO_CONTAINER: ContainerInfo = Object.freeze({
  containerId: "",
  podUid: "",
  namespace: "",
  pod: "",
  container: "",
});

/** What {@link ContainerResolver.identify} found. */
export interface Identity {
  readonly info: ContainerInfo;
  /** Nothing more will be learnt: a decision taken on it can be kept. */
  readonly final: boolean;
}

/** Options of {@link ContainerResolver}. */
export interface ContainerResolverOptions {
  /** Where the host's `/` is (default `/`; in a pod, e.g. `/host`). */
  hostRoot?: string;
  /** Shortest time between two look-ups of the same unknown namespace (default 1000 ms). */
  retryIntervalMs?: number;
  /** How long a namespace without processes keeps its container (default 5000 ms). */
  graceMs?: number;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

interface Entry {
  info: ContainerInfo;
  /** Nothing more to learn: lookups return `info` without looking at the clock. */
  final: boolean;
  /** The process the entry was read from (0: none). */
  pid: number;
  /** When a process of the namespace was last seen. */
  lastSeen: number;
  /** When a lookup of a non-final entry may read files again. */
  retryAt: number;
}

// A /proc listing serves look-ups for this long (a burst of new namespaces
// costs one listing, not one each).
const PROC_SNAPSHOT_MS = 200;

/**
 * Maps mount namespace ids to containers, with a cache, a retry limit for
 * unknown namespaces, and a grace period for containers that exited (their
 * last events are still named).
 *
 * @example
 * ```ts ignore
 * import { ContainerResolver } from "./container_resolver.ts";
 * const resolver = new ContainerResolver({ hostRoot: "/" });
 * resolver.refresh();
 * resolver.start(1000);
 * const info = resolver.lookup(event.mntns, event.pid, event.cgroupId);
 * console.log(info.namespace, info.pod, info.container);
 * resolver.stop();
 * ```
 */
export class ContainerResolver implements Disposable {
  /** Where the host's `/` is. */
  readonly hostRoot: string;
  /** The host's own mount namespace (host processes), if it could be read. */
  readonly hostMountNamespace: number | undefined;
  readonly #retryIntervalMs: number;
  readonly #graceMs: number;
  readonly #now: () => number;
  readonly #kubelet: KubeletFiles;
  readonly #cgroupIds: CgroupIds;
  readonly #entries = new Map<number, Entry>();
  readonly #listeners = new Set<() => void>();
  // The last final entry looked up (events come in runs of one process);
  // forgotten whenever #entries changes.
  #lastMntns = -1;
  #lastInfo: ContainerInfo = NO_CONTAINER;
  #snapshot = new Map<number, number>();
  #snapshotAt = Number.NEGATIVE_INFINITY;
  #timer: ReturnType<typeof setInterval> | undefined;

  constructor(options: ContainerResolverOptions = {}) {
    this.hostRoot = options.hostRoot ?? "/";
    this.#retryIntervalMs = options.retryIntervalMs ?? 1000;
    this.#graceMs = options.graceMs ?? 5000;
    this.#now = options.now ?? (() => performance.now());
    this.#kubelet = new KubeletFiles(this.hostRoot);
    this.#cgroupIds = new CgroupIds(this.hostRoot, {
      minWalkIntervalMs: this.#retryIntervalMs,
      now: this.#now,
    });
    this.hostMountNamespace = hostMountNamespace(this.hostRoot);
    if (this.hostMountNamespace !== undefined) {
      this.#entries.set(this.hostMountNamespace, {
        info: NO_CONTAINER,
        final: true,
        pid: 1,
        lastSeen: Number.POSITIVE_INFINITY,
        retryAt: 0,
      });
    }
  }

  /**
   * The container of a mount namespace. `pid` and `cgroupId` (of the event)
   * help find it when the namespace is new: the process itself, or, if it
   * is gone, its cgroup.
   */
  lookup(mntns: number, pid = 0, cgroupId = 0): ContainerInfo {
    if (mntns === this.#lastMntns) return this.#lastInfo;
    const entry = this.#entries.get(mntns);
    if (entry !== undefined && entry.final) {
      this.#lastMntns = mntns;
      this.#lastInfo = entry.info;
      return entry.info;
    }
    this.#lastMntns = -1;
    return this.#lookupSlow(mntns, entry, pid, cgroupId);
  }

  /**
   * The container of an event's process read now, for a decision that is
   * kept (the kernel's container filter): from the process itself while it
   * is in mount namespace `mntns`, else from its cgroup id; never from what
   * is cached for `mntns`, which may be another namespace's (the kernel
   * hands a new namespace the lowest free inode number, often that of one
   * that just died). What the process tells is cached for `mntns`, so the
   * event is named the same way. Not final while kubelet's files do not
   * name the container yet, or when nothing could be read.
   */
  identify(mntns: number, pid: number, cgroupId = 0): Identity {
    if (mntns === 0) return { info: NO_CONTAINER, final: false };
    // Its inode number is never reused: the namespace lives as long as the host.
    if (mntns === this.hostMountNamespace) return { info: NO_CONTAINER, final: true };
    const now = this.#now();
    if (pid > 0 && mountNamespaceOf(this.hostRoot, pid) === mntns) {
      const entry = this.#resolveFrom(pid, mntns, now, undefined);
      if (entry.pid !== 0) {
        this.#entries.set(mntns, entry);
        this.#lastMntns = -1;
        return { info: entry.info, final: entry.final };
      }
    }
    const ids = cgroupId > 1 ? this.#cgroupIds.lookup(cgroupId) : undefined;
    if (ids !== undefined) {
      const entry = this.#entryFor(ids, 0, now);
      return { info: entry.info, final: entry.final };
    }
    return { info: NO_CONTAINER, final: false };
  }

  /**
   * Mount namespaces known now (with processes, or exited within the grace
   * period) and their containers.
   */
  *namespaces(): IterableIterator<[number, ContainerInfo]> {
    for (const [mntns, entry] of this.#entries) yield [mntns, entry.info];
  }

  /**
   * Rescans: every process's mount namespace, new kubelet files, containers
   * that started (their namespaces are named), changed or exited (forgotten
   * after the grace period). Then calls the {@link onRefresh} listeners.
   */
  refresh(): void {
    this.#lastMntns = -1;
    const now = this.#now();
    const live = this.#scanProc(now);
    this.#kubelet.refresh();
    for (const [mntns, pid] of live) {
      if (mntns === this.hostMountNamespace) continue;
      const entry = this.#entries.get(mntns);
      if (entry === undefined || !entry.final) {
        this.#entries.set(mntns, this.#resolveFrom(pid, mntns, now, entry));
        continue;
      }
      // Another process now stands for the namespace (the id may have been
      // reused), or it is not in a container yet (a runtime creates the
      // namespace before moving the process into the container's cgroup).
      if (entry.pid !== pid || entry.info.containerId === "") {
        const ids = readProcIds(this.hostRoot, pid);
        if (ids !== undefined) {
          const [podUid, containerId] = ids === null ? ["", ""] : [ids.podUid, ids.containerId];
          if (podUid !== entry.info.podUid || containerId !== entry.info.containerId) {
            this.#entries.set(mntns, this.#entryFor(ids, pid, now));
            continue;
          }
          entry.pid = pid;
        }
      }
      entry.lastSeen = now;
    }
    for (const [mntns, entry] of this.#entries) {
      if (!live.has(mntns) && now - entry.lastSeen > this.#graceMs) this.#entries.delete(mntns);
    }
    for (const listener of this.#listeners) listener();
  }

  /** Calls `listener` after every {@link refresh}. Returns a function that removes it. */
  onRefresh(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Runs {@link refresh} every `intervalMs` until {@link stop}. The timer
   * does not keep the program alive. `onError` gets what a refresh threw.
   */
  start(intervalMs = 1000, onError: (error: unknown) => void = () => {}): void {
    this.stop();
    const timer = setInterval(() => {
      try {
        this.refresh();
      } catch (error) {
        onError(error);
      }
    }, intervalMs);
    Deno.unrefTimer(timer);
    this.#timer = timer;
  }

  /** Stops the timer of {@link start}. Idempotent. */
  stop(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  [Symbol.dispose](): void {
    this.stop();
  }

  #lookupSlow(
    mntns: number,
    entry: Entry | undefined,
    pid: number,
    cgroupId: number,
  ): ContainerInfo {
    if (mntns === 0) return NO_CONTAINER;
    const now = this.#now();
    if (entry !== undefined && now < entry.retryAt) return entry.info;
    let resolved: Entry | undefined;
    // The event's own process, if it still exists: no scan needed.
    if (pid > 0 && mountNamespaceOf(this.hostRoot, pid) === mntns) {
      resolved = this.#resolveFrom(pid, mntns, now, entry);
    }
    if (resolved === undefined || resolved.pid === 0) {
      const other = this.#findProcess(mntns, now);
      if (other !== undefined) resolved = this.#resolveFrom(other, mntns, now, entry);
    }
    if ((resolved === undefined || resolved.pid === 0) && cgroupId > 1) {
      // Every process gone: its cgroup may still be there.
      const ids = this.#cgroupIds.lookup(cgroupId);
      if (ids !== undefined) resolved = this.#entryFor(ids, 0, now);
    }
    resolved ??= this.#unknown(entry, now);
    this.#entries.set(mntns, resolved);
    return resolved.info;
  }

  /** The entry of a namespace from one of its processes. */
  #resolveFrom(pid: number, mntns: number, now: number, previous: Entry | undefined): Entry {
    const ids = readProcIds(this.hostRoot, pid);
    // Gone between listing and reading; or it left the namespace.
    if (ids === undefined || mountNamespaceOf(this.hostRoot, pid) !== mntns) {
      return this.#unknown(previous, now);
    }
    return this.#entryFor(ids, pid, now);
  }

  #unknown(previous: Entry | undefined, now: number): Entry {
    return {
      info: previous?.info ?? NO_CONTAINER,
      final: false,
      pid: 0,
      lastSeen: previous?.lastSeen ?? now,
      retryAt: now + this.#retryIntervalMs,
    };
  }

  /** The entry for cgroup ids (null: not in a pod), with names from kubelet's files. */
  #entryFor(ids: PodContainerIds | null, pid: number, now: number): Entry {
    const entry = { info: NO_CONTAINER, final: true, pid, lastSeen: now, retryAt: 0 };
    if (ids === null) return entry;
    const { podUid, containerId } = ids;
    if (containerId) {
      const names = this.#kubelet.container(containerId, podUid) ??
        (this.#kubelet.refresh() ? this.#kubelet.container(containerId, podUid) : undefined);
      if (names !== undefined) {
        entry.info = {
          containerId,
          podUid: podUid || names.podUid,
          namespace: names.namespace,
          pod: names.pod,
          container: names.container,
        };
        return entry;
      }
    }
    const pod = podUid
      ? this.#kubelet.pod(podUid) ??
        (this.#kubelet.refresh() ? this.#kubelet.pod(podUid) : undefined)
      : undefined;
    entry.info = {
      containerId,
      podUid,
      namespace: pod?.namespace ?? "",
      pod: pod?.pod ?? "",
      container: "",
    };
    // A container's log link appears once it started: ask again later. A
    // process in the pod's own cgroup has no container name to wait for.
    entry.final = !containerId && pod !== undefined;
    if (!entry.final) entry.retryAt = now + this.#retryIntervalMs;
    return entry;
  }

  /** A process in `mntns`, from a /proc listing at most {@link PROC_SNAPSHOT_MS} old. */
  #findProcess(mntns: number, now: number): number | undefined {
    if (now - this.#snapshotAt >= PROC_SNAPSHOT_MS) this.#scanProc(now);
    return this.#snapshot.get(mntns);
  }

  /** Mount namespace id to one of its processes (the lowest pid), for every process. */
  #scanProc(now: number): Map<number, number> {
    const found = new Map<number, number>();
    let entries: Iterable<Deno.DirEntry>;
    try {
      entries = Deno.readDirSync(hostPath(this.hostRoot, "/proc"));
    } catch {
      entries = [];
    }
    const pids: number[] = [];
    for (const entry of entries) {
      const pid = Number(entry.name);
      if (Number.isInteger(pid) && pid > 0) pids.push(pid);
    }
    pids.sort((a, b) => a - b);
    for (const pid of pids) {
      const mntns = mountNamespaceOf(this.hostRoot, pid);
      if (mntns !== undefined && !found.has(mntns)) found.set(mntns, pid);
    }
    this.#snapshot = found;
    this.#snapshotAt = now;
    return found;
  }
}

/**
 * Pod and container ids of a process from its cgroup file: null if it is
 * not in a pod, undefined if the process is gone.
 */
function readProcIds(hostRoot: string, pid: number): PodContainerIds | null | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(hostPath(hostRoot, `/proc/${pid}/cgroup`));
  } catch {
    return undefined;
  }
  return podContainerOfProcCgroup(text) ?? null;
}
