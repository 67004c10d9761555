/**
 * The container filters (`-n`, `-p`, `-c`, `-l`, `--host`) applied in the
 * kernel, so that other containers' events cost no work in user space.
 *
 * The kernel keeps a decision (let through, or drop) per mount namespace,
 * and lets through the events of a namespace it has no decision for. This
 * makes the decision from the first such event: the resolver names the
 * event's container from its process (or cgroup) and kubelet's files, the
 * caller's predicate says whether it is selected, and the answer goes to
 * the kernel. A container that starts while tracing is seen from its first
 * connection, however soon after starting it connects (a Job, an init
 * container), and any other costs one event. The caller's pod filter in
 * user space stays authoritative: it checks every event, including those
 * that come before a decision.
 *
 * Why decide on events rather than on rescans of `/proc`: a rescan comes
 * every few hundred milliseconds, and a container that connects and exits
 * in between would not be seen at all (the kernel would drop its events
 * as those of an unknown namespace).
 *
 * Decisions are keyed by the namespace's seq, which the kernel never
 * reuses until reboot, not by its inode number, which a new namespace gets
 * as soon as the old one is gone (the lowest free number: on Linux 6.18, a
 * namespace made right after one ended had its number 6 times in 6): a new
 * container gets a decision of its own. A namespace stays undecided while
 * its container is not known for good (kubelet's log link not there yet;
 * its process gone and its cgroup too): its events keep coming for user
 * space to filter.
 *
 * After every rescan of the resolver, decisions are taken again where the
 * answer may have changed: labels of a pod (`-l`, from the API) come and
 * change, and a process in a namespace of its own may be moved into a
 * pod's cgroup after its first event (a runtime creates the namespace
 * first).
 *
 * @module
 */

import type { TcpEvent } from "../../core/event.ts";
import type { ContainerInfo, ContainerResolver } from "./container_resolver.ts";

/** Where decisions go; {@link TcpTracer} implements it. */
export interface MountNamespaceGate {
  /** The kernel lets the events of mount namespace `seq` through (`allowed`) or drops them. */
  decideMountNamespace(seq: number, allowed: boolean): void;
}

/** Which containers to let through. */
export interface ContainerSelection {
  /**
   * Whether the processes of a mount namespace are traced, from its
   * container (empty names for processes outside pods).
   */
  matches(info: ContainerInfo): boolean;
}

/** Options of {@link MountNamespaceFilter}. */
export interface MountNamespaceFilterOptions {
  /** Called with what a gate threw (the decision is then pushed again later). */
  onError?: (error: unknown) => void;
  /** Clock in milliseconds (tests). */
  now?: () => number;
}

/** What an event tells about its mount namespace. */
export type NamespaceOfEvent = Pick<TcpEvent, "mntns" | "mntnsSeq" | "pid" | "cgroupId">;

/** A decision about one mount namespace (by seq). */
interface Decision {
  /** Inode number of the namespace, and the process it was named from. */
  readonly mntns: number;
  readonly pid: number;
  info: ContainerInfo;
  allowed: boolean;
  /** When it was last given to the gate; undefined: not yet (no gate, or it threw). */
  pushedAt: number | undefined;
}

// How long an undecided namespace's events are not looked into again: its
// first events come in a burst, and each look reads files in /proc.
const UNDECIDED_RETRY_MS = 250;
// A denied namespace's events still arriving this long after its decision
// went to the kernel mean the kernel lost it (its LRU map dropped it): give
// it again. Before, they were queued before the decision.
const REPUSH_AFTER_MS = 1000;
// Namespaces remembered at most (the kernel's map holds 8192): a decision
// forgotten here is taken again on the namespace's next event.
const MAX_DECISIONS = 8192;
const MAX_UNDECIDED = 4096;

/**
 * Decides, from the first event of each mount namespace, whether the
 * kernel lets its processes' events through, and tells the kernel.
 *
 * @example
 * ```ts ignore
 * const resolver = new ContainerResolver({ hostRoot: flags.hostRoot });
 * const keeper = new MountNamespaceFilter(resolver, {
 *   matches: (info) => info.namespace === "shop",
 * });
 * const tracer = TcpTracer.open({ filterMountNamespaces: true });
 * keeper.attach(tracer);
 * resolver.start(500); // decisions are reviewed after every rescan
 * tracer.drain((event) => {
 *   keeper.decide(event);
 *   // enrich, filter, print ...
 * });
 * resolver.stop();
 * keeper.close();
 * ```
 */
export class MountNamespaceFilter implements Disposable {
  readonly #resolver: ContainerResolver;
  readonly #selection: ContainerSelection;
  readonly #onError: (error: unknown) => void;
  readonly #now: () => number;
  readonly #unsubscribe: () => void;
  /** By seq; in the order they were taken (the oldest is forgotten first). */
  readonly #decisions = new Map<number, Decision>();
  /** Undecided namespaces (by seq): when to look into them again. */
  readonly #undecided = new Map<number, number>();
  // The last namespace let through (events come in runs of one process).
  #lastAllowed = -1;
  #gate: MountNamespaceGate | undefined;

  constructor(
    resolver: ContainerResolver,
    selection: ContainerSelection,
    options: MountNamespaceFilterOptions = {},
  ) {
    this.#resolver = resolver;
    this.#selection = selection;
    this.#onError = options.onError ?? (() => {});
    this.#now = options.now ?? (() => performance.now());
    this.#unsubscribe = resolver.onRefresh(() => this.review());
  }

  /** From now on, gives decisions to `gate`; first those already taken. */
  attach(gate: MountNamespaceGate): void {
    this.#gate = gate;
    for (const [seq, decision] of this.#decisions) this.#push(seq, decision);
  }

  /**
   * Decides about the mount namespace of an event, if that was not done
   * yet and its container is known for good. Cheap for events of a
   * namespace already let through: a comparison, or a Map lookup.
   */
  decide(event: NamespaceOfEvent): void {
    const seq = event.mntnsSeq ?? 0;
    if (seq === this.#lastAllowed) return;
    // 0: the kernel did not know the namespace (an exiting process): user
    // space filters the event, nothing to keep.
    if (seq === 0) return;
    const decision = this.#decisions.get(seq);
    if (decision !== undefined) {
      if (decision.allowed) {
        this.#lastAllowed = seq;
      } else if (
        decision.pushedAt === undefined || this.#now() - decision.pushedAt >= REPUSH_AFTER_MS
      ) {
        this.#push(seq, decision);
      }
      return;
    }
    const now = this.#now();
    const retryAt = this.#undecided.get(seq);
    if (retryAt !== undefined && now < retryAt) return;
    const { info, final } = this.#resolver.identify(event.mntns, event.pid, event.cgroupId);
    if (!final) {
      if (this.#undecided.size >= MAX_UNDECIDED) this.#undecided.clear();
      this.#undecided.set(seq, now + UNDECIDED_RETRY_MS);
      return;
    }
    this.#undecided.delete(seq);
    if (this.#decisions.size >= MAX_DECISIONS) {
      this.#decisions.delete(this.#decisions.keys().next().value!);
    }
    const taken: Decision = {
      mntns: event.mntns,
      pid: event.pid,
      info,
      allowed: this.#selection.matches(info),
      pushedAt: undefined,
    };
    this.#decisions.set(seq, taken);
    this.#push(seq, taken);
  }

  /**
   * The decision about mount namespace `seq`: true (let through), false
   * (dropped), undefined (none yet).
   */
  decision(seq: number): boolean | undefined {
    return this.#decisions.get(seq)?.allowed;
  }

  /**
   * Takes decisions again where the answer may have changed, and forgets
   * those of namespaces that are gone. Runs after every rescan of the
   * resolver.
   */
  review(): void {
    const live = new Set<number>();
    for (const [mntns] of this.#resolver.namespaces()) live.add(mntns);
    for (const [seq, decision] of this.#decisions) {
      // An inode number still known may be another namespace's by now:
      // then this decision is kept a little longer than needed.
      if (!live.has(decision.mntns)) {
        this.#decisions.delete(seq);
        if (seq === this.#lastAllowed) this.#lastAllowed = -1;
        continue;
      }
      // Outside pods: maybe not yet (a runtime makes the namespace, then
      // moves the process into the container's cgroup). Read again while the
      // process it was named from is in it (the inode number is then this
      // namespace's).
      if (decision.info.podUid === "") {
        const { info, final } = this.#resolver.identify(decision.mntns, decision.pid);
        if (final) decision.info = info;
      }
      const allowed = this.#selection.matches(decision.info);
      if (allowed !== decision.allowed) {
        decision.allowed = allowed;
        if (seq === this.#lastAllowed) this.#lastAllowed = -1;
        this.#push(seq, decision);
      } else if (decision.pushedAt === undefined) {
        this.#push(seq, decision);
      }
    }
  }

  /** Stops following the resolver's rescans. The kernel's decisions stay as they are. */
  close(): void {
    this.#unsubscribe();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #push(seq: number, decision: Decision): void {
    if (this.#gate === undefined) return;
    try {
      this.#gate.decideMountNamespace(seq, decision.allowed);
      decision.pushedAt = this.#now();
    } catch (error) {
      decision.pushedAt = undefined;
      this.#onError(error);
    }
  }
}
