/**
 * The fake's "etcd": objects by resource, one global resourceVersion
 * counter, and a bounded history of changes so watches can resume from a
 * resourceVersion (and get 410 Expired once it has been compacted away).
 *
 * @module
 */

/** `metadata` of stored objects. */
export interface ObjectMeta {
  name: string;
  namespace?: string;
  generateName?: string;
  uid?: string;
  resourceVersion?: string;
  generation?: number;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  deletionGracePeriodSeconds?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  ownerReferences?: unknown[];
  finalizers?: string[];
  [key: string]: unknown;
}

/** Any stored API object. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: ObjectMeta;
  // deno-lint-ignore no-explicit-any
  [key: string]: any;
}

/** Watch event types that the store produces. */
export type ChangeType = "ADDED" | "MODIFIED" | "DELETED";

/** One change, as kept in the history and given to subscribers. */
export interface Change {
  type: ChangeType;
  resource: string;
  resourceVersion: number;
  /** The object after the change (for DELETED: the last state, new RV). */
  object: KubeObject;
  /** The object before the change (MODIFIED and DELETED). */
  previous?: KubeObject;
}

/** RFC 3339 with second precision, as metav1.Time marshals. */
export function timestamp(date: Date = new Date()): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function objectKey(namespace: string | undefined, name: string): string {
  return namespace ? `${namespace}/${name}` : name;
}

/** In-memory object storage with resourceVersions and a change history. */
export class Store {
  #rv = 1;
  readonly #data = new Map<string, Map<string, KubeObject>>();
  #history: Change[] = [];
  readonly #historyLimit: number;
  /** Changes with a resourceVersion at or below this are gone. */
  #compacted = 1;
  readonly #subscribers = new Set<(change: Change) => void>();

  constructor(historyLimit = 10_000) {
    this.#historyLimit = historyLimit;
  }

  /** The current (latest) resourceVersion. */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** The oldest resourceVersion a watch may resume from. */
  get compactedResourceVersion(): number {
    return this.#compacted;
  }

  #bucket(resource: string): Map<string, KubeObject> {
    let bucket = this.#data.get(resource);
    if (!bucket) {
      bucket = new Map();
      this.#data.set(resource, bucket);
    }
    return bucket;
  }

  /** A copy of one object, or undefined. */
  get(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const object = this.#bucket(resource).get(objectKey(namespace, name));
    return object ? structuredClone(object) : undefined;
  }

  /** Copies of the objects of a resource (in a namespace), sorted by key like etcd. */
  list(resource: string, namespace?: string): KubeObject[] {
    const out: KubeObject[] = [];
    const keys = [...this.#bucket(resource).keys()].sort();
    for (const key of keys) {
      const object = this.#bucket(resource).get(key)!;
      if (namespace && object.metadata.namespace !== namespace) continue;
      out.push(structuredClone(object));
    }
    return out;
  }

  /** Whether a name is taken. */
  has(resource: string, namespace: string | undefined, name: string): boolean {
    return this.#bucket(resource).has(objectKey(namespace, name));
  }

  /**
   * Stores a new object: sets uid, resourceVersion and creationTimestamp,
   * emits ADDED. The caller checks for duplicates.
   */
  create(resource: string, object: KubeObject): KubeObject {
    const stored = structuredClone(object);
    const rv = ++this.#rv;
    stored.metadata.uid ??= crypto.randomUUID();
    stored.metadata.resourceVersion = String(rv);
    stored.metadata.creationTimestamp ??= timestamp();
    this.#bucket(resource).set(objectKey(stored.metadata.namespace, stored.metadata.name), stored);
    this.#emit({ type: "ADDED", resource, resourceVersion: rv, object: structuredClone(stored) });
    return structuredClone(stored);
  }

  /**
   * Replaces an existing object (bumping its resourceVersion) and emits
   * MODIFIED; returns undefined when it no longer exists.
   */
  update(resource: string, object: KubeObject): KubeObject | undefined {
    const key = objectKey(object.metadata.namespace, object.metadata.name);
    const previous = this.#bucket(resource).get(key);
    if (!previous) return undefined;
    const stored = structuredClone(object);
    const rv = ++this.#rv;
    stored.metadata.resourceVersion = String(rv);
    stored.metadata.uid = previous.metadata.uid;
    stored.metadata.creationTimestamp = previous.metadata.creationTimestamp;
    this.#bucket(resource).set(key, stored);
    this.#emit({
      type: "MODIFIED",
      resource,
      resourceVersion: rv,
      object: structuredClone(stored),
      previous: structuredClone(previous),
    });
    return structuredClone(stored);
  }

  /**
   * Applies `mutate` to a copy of an object and stores it if it changed.
   * Returns the stored object, or undefined if it does not exist.
   */
  mutate(
    resource: string,
    namespace: string | undefined,
    name: string,
    mutate: (object: KubeObject) => void,
  ): KubeObject | undefined {
    const current = this.#bucket(resource).get(objectKey(namespace, name));
    if (!current) return undefined;
    const next = structuredClone(current);
    mutate(next);
    if (JSON.stringify(next) === JSON.stringify(current)) return structuredClone(current);
    return this.update(resource, next);
  }

  /** Removes an object and emits DELETED; returns its last state (new RV). */
  delete(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    const key = objectKey(namespace, name);
    const previous = this.#bucket(resource).get(key);
    if (!previous) return undefined;
    this.#bucket(resource).delete(key);
    const rv = ++this.#rv;
    const last = structuredClone(previous);
    last.metadata.resourceVersion = String(rv);
    this.#emit({
      type: "DELETED",
      resource,
      resourceVersion: rv,
      object: structuredClone(last),
      previous: structuredClone(previous),
    });
    return last;
  }

  /**
   * The changes of a resource after `resourceVersion`, or `"expired"` when
   * the history no longer reaches back that far.
   */
  changesSince(resource: string, resourceVersion: number): Change[] | "expired" {
    if (resourceVersion < this.#compacted) return "expired";
    return this.#history
      .filter((c) => c.resource === resource && c.resourceVersion > resourceVersion)
      .map((c) => structuredClone(c));
  }

  /** Forgets the whole history (as an etcd compaction would). */
  compact(): void {
    this.#history = [];
    this.#compacted = this.#rv;
  }

  /** Calls `fn` for every change from now on; returns the unsubscribe function. */
  subscribe(fn: (change: Change) => void): () => void {
    this.#subscribers.add(fn);
    return () => this.#subscribers.delete(fn);
  }

  #emit(change: Change): void {
    this.#history.push(change);
    if (this.#history.length > this.#historyLimit) {
      const dropped = this.#history.splice(0, this.#history.length - this.#historyLimit);
      this.#compacted = dropped[dropped.length - 1].resourceVersion;
    }
    for (const fn of [...this.#subscribers]) {
      try {
        fn(structuredClone(change));
      } catch (error) {
        console.error("kube_apiserver: subscriber failed:", error);
      }
    }
  }
}
