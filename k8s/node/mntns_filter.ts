/**
 * The container filters (`-n`, `-p`, `-c`, `--host`) applied in the kernel:
 * the BPF program only lets through processes whose mount namespace is in
 * a set, and this keeps that set equal to the namespaces of the matching
 * containers as containers come and go. Events of other containers then
 * cost no work in user space.
 *
 * The set follows the rescans of a {@link ContainerResolver}: a container
 * that starts is let through from the first rescan that sees it, so the
 * caller's pod filter stays as a second check of each event.
 *
 * Which containers match is the caller's predicate (a pod filter of
 * k8s/pod_filter.ts, with labels if it has them): this module only keeps
 * the kernel's set equal to its answers.
 *
 * @module
 */

import type { ContainerInfo, ContainerResolver } from "./container_resolver.ts";

/** What the set is pushed to; {@link TcpTracer} implements it. */
export interface MountNamespaceGate {
  allowMountNamespace(mntns: number): void;
  disallowMountNamespace(mntns: number): void;
}

/** Which containers to let through. */
export interface ContainerSelection {
  /**
   * Whether the processes of a mount namespace are traced, from its
   * container (empty names for processes outside pods).
   */
  matches(info: ContainerInfo): boolean;
  /** Whether the host's own processes (outside containers) are traced too. */
  host?: boolean;
}

/** Options of {@link MountNamespaceFilter}. */
export interface MountNamespaceFilterOptions {
  /** Called with what a gate threw (a namespace is then retried at the next update). */
  onError?: (error: unknown) => void;
}

/** What one {@link MountNamespaceFilter.update} changed. */
export interface MountNamespaceChanges {
  allowed: number[];
  disallowed: number[];
}

/**
 * Keeps the kernel's set of allowed mount namespaces equal to those of the
 * containers that match a filter, updated after every rescan of the
 * resolver.
 *
 * @example
 * ```ts ignore
 * const resolver = new ContainerResolver({ hostRoot: flags.hostRoot });
 * const keeper = new MountNamespaceFilter(resolver, {
 *   matches: (info) => info.namespace === "shop",
 * });
 * resolver.refresh(); // the keeper updates after every refresh
 * const tracer = TcpTracer.open({ mountNamespaces: keeper.allowed });
 * keeper.attach(tracer);
 * resolver.start(500);
 * // ...
 * resolver.stop();
 * keeper.close();
 * ```
 */
export class MountNamespaceFilter implements Disposable {
  readonly #resolver: ContainerResolver;
  readonly #selection: ContainerSelection;
  readonly #onError: (error: unknown) => void;
  readonly #unsubscribe: () => void;
  #allowed = new Set<number>();
  #gate: MountNamespaceGate | undefined;

  constructor(
    resolver: ContainerResolver,
    selection: ContainerSelection,
    options: MountNamespaceFilterOptions = {},
  ) {
    this.#resolver = resolver;
    this.#selection = selection;
    this.#onError = options.onError ?? (() => {});
    this.#unsubscribe = resolver.onRefresh(() => this.update());
    this.update();
  }

  /** The mount namespaces let through now. */
  get allowed(): ReadonlySet<number> {
    return this.#allowed;
  }

  /**
   * From now on, pushes changes to `gate`; first the whole current set
   * (allowing twice is harmless).
   */
  attach(gate: MountNamespaceGate): void {
    this.#gate = gate;
    const failed: number[] = [];
    for (const mntns of this.#allowed) {
      if (!this.#push(gate, mntns, true)) failed.push(mntns);
    }
    for (const mntns of failed) this.#allowed.delete(mntns);
  }

  /**
   * Re-evaluates the namespaces the resolver knows (after each of its
   * refreshes this runs by itself) and pushes the differences.
   */
  update(): MountNamespaceChanges {
    const wanted = new Set<number>();
    for (const [mntns, info] of this.#resolver.namespaces()) {
      if (this.#selection.matches(info)) wanted.add(mntns);
    }
    const host = this.#resolver.hostMountNamespace;
    if (this.#selection.host && host !== undefined) wanted.add(host);
    const changes: MountNamespaceChanges = { allowed: [], disallowed: [] };
    for (const mntns of wanted) {
      if (this.#allowed.has(mntns)) continue;
      if (this.#gate && !this.#push(this.#gate, mntns, true)) continue;
      this.#allowed.add(mntns);
      changes.allowed.push(mntns);
    }
    for (const mntns of this.#allowed) {
      if (wanted.has(mntns)) continue;
      if (this.#gate && !this.#push(this.#gate, mntns, false)) continue;
      this.#allowed.delete(mntns);
      changes.disallowed.push(mntns);
    }
    return changes;
  }

  /** Stops following the resolver's refreshes. The kernel's set stays as it is. */
  close(): void {
    this.#unsubscribe();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #push(gate: MountNamespaceGate, mntns: number, allow: boolean): boolean {
    try {
      if (allow) gate.allowMountNamespace(mntns);
      else gate.disallowMountNamespace(mntns);
      return true;
    } catch (error) {
      this.#onError(error);
      return false;
    }
  }
}
