/**
 * How every agent pod gets tcpgadget, with one upload from the client
 * instead of one per node: the first pod that runs receives the client's
 * upload (packed, through the exec API), and every other pod copies it
 * from a pod that has it or is receiving it, over the pod network, while
 * it arrives (a tree: each pod serves at most `parallel` others at once,
 * and starts serving as soon as it starts receiving). Every copy is
 * checked in its pod against the client's size and SHA-256 before it is
 * kept.
 *
 * Faults fall back, never sink the run: a copy cut short, stalled or
 * damaged is fetched again from another pod (the pods that were copying
 * from the failed one start over too), and after two failed copies a pod
 * gets the client's own upload; a pod that cannot serve (no perl in the
 * image) or agents that cannot reach each other (a network policy) turn
 * the copies between agents off, and each pod gets the client's upload,
 * `parallel` at a time, as before.
 *
 * @module
 */

import { errorLine, TcpgadgetError } from "../../core/errors.ts";
import { Semaphore } from "../../core/semaphore.ts";
import { sleep } from "../../core/sleep.ts";
import type { ServedFile } from "./copy_scripts.ts";
import { ExecDroppedError, type ExecTarget } from "./exec.ts";
import { fetchFromPeer, PeerCopyError, PeerServer } from "./peer_copy.ts";
import {
  DamagedCopyError,
  newAttempt,
  type Payload,
  type PayloadFile,
  receivedFile,
  uploadFiles,
} from "./self_copy.ts";

/** Uploads from the client to one pod, in a row, before the pod is given up. */
const UPLOAD_RETRIES = 3;
/** Failed copies from other pods before a pod gets the client's upload. */
const PEER_TRIES = 2;
/** Copies restarted because the pod they came through failed, before the client uploads. */
const RESTARTS = 5;
/** Copies that cannot reach another pod, none having succeeded, before copies between agents stop. */
const UNREACHABLE_LIMIT = 3;

/** A pod to deliver the payload to. */
export interface CopyTarget {
  /** The node's name, for messages. */
  node: string;
  exec: ExecTarget;
  /** The pod's IP, where it serves others; without it, it only receives. */
  podIP?: string;
}

/** What a distribution tells its user (each call names the node). */
export interface DistributionEvents {
  /** A copy to `node` is under way: `done` of `total` bytes, from `from` ("this machine", "node X"). */
  progress(node: string, from: string, done: number, total: number): void;
  /** `node` has the payload: one line saying how it came. */
  copied(node: string, message: string): void;
  /** Something failed on the way to `node`, which goes on. */
  warn(node: string, message: string): void;
  /** Something about every node (copies between agents turned off). */
  notice(message: string): void;
}

/** Settings of a distribution. */
export interface DistributionOptions {
  /** Copies at once from one sender: this machine, or a pod serving others. */
  parallel: number;
  events: DistributionEvents;
}

/** A pod that has the payload or is receiving it: a source for others. */
class Holder {
  readonly target: CopyTarget;
  /** The attempt whose files it writes (and serves while they arrive). */
  readonly attempt: string;
  /** Where it receives from; undefined: this machine. */
  readonly upstream: Holder | undefined;
  /** Pods between it and this machine. */
  readonly depth: number;
  /** Ends its receiving (the pod it copies from failed). */
  readonly abort = new AbortController();
  /** Every file is in the pod, checked. */
  complete = false;
  /** It cannot serve (its server failed or ended): not a source. */
  unusable = false;
  /** Peers copying from it now. */
  serving = 0;
  server: Promise<PeerServer | undefined> | undefined;

  constructor(target: CopyTarget, attempt: string, upstream: Holder | undefined) {
    this.target = target;
    this.attempt = attempt;
    this.upstream = upstream;
    this.depth = upstream ? upstream.depth + 1 : 0;
  }

  get name(): string {
    return `node ${this.target.node}`;
  }
}

function megabytes(bytes: number): string {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(1)} s`;
}

/**
 * Delivers one payload to many pods.
 *
 * @example
 * ```ts ignore
 * const copies = new PayloadDistribution(payload, { parallel: 4, events });
 * await Promise.all(pods.map((pod) => copies.deliver(pod, signal)));
 * await copies.close();
 * ```
 */
export class PayloadDistribution {
  readonly payload: Payload;
  readonly #parallel: number;
  readonly #events: DistributionEvents;
  readonly #uploads: Semaphore;
  /** Pods that have the payload or are receiving it, by node. */
  readonly #holders = new Map<string, Holder>();
  /** Uploads from this machine in progress or waiting for a place. */
  #uploading = 0;
  /** Why copies between agents are off, once they are. */
  #peersOff: string | undefined;
  #unreachable = 0;
  #peerCopies = 0;
  #waiters: (() => void)[] = [];
  readonly #closing = new AbortController();

  constructor(payload: Payload, options: DistributionOptions) {
    this.payload = payload;
    this.#parallel = options.parallel;
    this.#events = options.events;
    this.#uploads = new Semaphore(options.parallel);
  }

  /** The command line that runs `tcpgadget <args>` from the payload in a pod. */
  command(args: string[]): string[] {
    return this.payload.command(args);
  }

  /**
   * Puts the payload into the target pod, checked; resolves once it is
   * there (or `signal` aborted), throws if the pod cannot get it.
   */
  async deliver(target: CopyTarget, signal: AbortSignal): Promise<void> {
    const done = new Set<PayloadFile>();
    let peerFailures = 0;
    let restarts = 0;
    while (!signal.aborted) {
      const missing = this.payload.files.filter((file) => !done.has(file));
      const source = this.#pickSource(target);
      const tryPeers = this.#peersOff === undefined && peerFailures < PEER_TRIES &&
        restarts < RESTARTS;
      if (source && tryPeers) {
        try {
          await this.#fetch(target, source, missing, done, signal);
          return;
        } catch (error) {
          if (signal.aborted) return;
          if (error instanceof SourceFailedError) restarts++;
          else if (!(error instanceof ExecDroppedError)) peerFailures++;
          this.#fetchFailed(target, source, error as Error);
          continue;
        }
      }
      if (!tryPeers || !this.#sourceMayCome(target)) {
        await this.#upload(target, missing, done, signal);
        return;
      }
      await this.#changed(signal);
    }
  }

  /** Stops every server (the copies are over). */
  async close(): Promise<void> {
    this.#closing.abort();
    const servers = [...this.#holders.values()].map((holder) => holder.server);
    await Promise.all(servers.map((server) => server?.then((s) => s?.stop())));
    this.#notify();
  }

  /**
   * A pod to copy from, among those with room: complete ones first, then
   * the nearest to this machine (a tree, not a chain: fewer hops, fewer
   * pods whose failure restarts a copy), then the least busy; undefined if
   * none has room.
   */
  #pickSource(target: CopyTarget): Holder | undefined {
    const rank = (holder: Holder) => [holder.complete ? 0 : 1, holder.depth, holder.serving];
    let best: Holder | undefined;
    for (const holder of this.#holders.values()) {
      if (!this.#canServe(holder) || holder.target.node === target.node) continue;
      if (holder.serving >= this.#parallel) continue;
      if (!best) {
        best = holder;
        continue;
      }
      const [a, b] = [rank(holder), rank(best)];
      const i = a.findIndex((value, j) => value !== b[j]);
      if (i >= 0 && a[i] < b[i]) best = holder;
    }
    return best;
  }

  #canServe(holder: Holder): boolean {
    return !holder.unusable && !holder.abort.signal.aborted && holder.target.podIP !== undefined &&
      !this.#closing.signal.aborted;
  }

  /** Whether a pod to copy from is there (busy now) or on its way: then waiting is worth it. */
  #sourceMayCome(target: CopyTarget): boolean {
    if (this.#uploading > 0) return true;
    return [...this.#holders.values()].some((holder) =>
      holder.target.node !== target.node && this.#canServe(holder)
    );
  }

  /** The server of a holder, started on first use; undefined if it cannot serve. */
  #serverOf(holder: Holder): Promise<PeerServer | undefined> {
    holder.server ??= (async () => {
      const files: ServedFile[] = this.payload.files.map((file) => {
        const { final, part } = receivedFile(file, holder.attempt);
        return { name: file.name, size: file.size, final, part };
      });
      try {
        const server = await PeerServer.start(
          holder.target.exec,
          holder.target.podIP!,
          files,
          this.#closing.signal,
        );
        // A server that ends before the copies are over is no source anymore.
        server.ended.then(() => {
          holder.unusable = true;
          this.#notify();
        });
        return server;
      } catch (error) {
        holder.unusable = true;
        // Not warned otherwise: the pods that would copy from it get the
        // payload elsewhere, and a cause shared by every exec (a refusal)
        // is said once by the node's own failure.
        if (error instanceof PeerCopyError && error.reason === "missing program") {
          this.#turnPeersOff(`node ${holder.target.node}: ${error.message}`);
        }
        this.#notify();
        return undefined;
      }
    })();
    return holder.server;
  }

  async #fetch(
    target: CopyTarget,
    source: Holder,
    missing: PayloadFile[],
    done: Set<PayloadFile>,
    signal: AbortSignal,
  ): Promise<void> {
    const started = performance.now();
    const holder = this.#hold(target, source);
    source.serving++;
    try {
      const server = await this.#serverOf(source);
      if (!server) throw new SourceFailedError(`${source.name} cannot serve`);
      const total = missing.reduce((sum, file) => sum + file.size, 0);
      const receiving = AbortSignal.any([signal, holder.abort.signal]);
      let before = 0;
      for (const file of missing) {
        this.#events.progress(target.node, source.name, before, total);
        await fetchFromPeer(
          target.exec,
          server.address,
          file.name,
          receivedFile(file, holder.attempt),
          {
            onProgress: (bytes) =>
              this.#events.progress(target.node, source.name, before + bytes, total),
            signal: receiving,
          },
        );
        if (signal.aborted) return;
        if (holder.abort.signal.aborted) {
          throw new SourceFailedError(`${source.name}'s own copy failed`);
        }
        done.add(file);
        before += file.size;
      }
      holder.complete = true;
      this.#peerCopies++;
      this.#events.copied(
        target.node,
        `copied ${megabytes(total)} from ${source.name} in ${
          seconds(started)
        } (size and SHA-256 verified)`,
      );
    } catch (error) {
      this.#release(holder);
      throw error;
    } finally {
      source.serving--;
      this.#notify();
    }
  }

  #fetchFailed(target: CopyTarget, source: Holder, error: Error): void {
    const reason = error instanceof PeerCopyError ? error.reason : undefined;
    if (reason === "missing program") {
      this.#turnPeersOff(`node ${target.node}: ${error.message}`);
      return;
    }
    if (reason === "unreachable") {
      if (++this.#unreachable >= UNREACHABLE_LIMIT && this.#peerCopies === 0) {
        this.#turnPeersOff(
          `the agents cannot reach each other over the pod network (${errorLine(error)})`,
        );
        return;
      }
      source.unusable = true;
    }
    // A complete copy that serves damaged bytes is not trusted again.
    if (reason === "damaged" && source.complete) source.unusable = true;
    if (error instanceof SourceFailedError) return;
    this.#events.warn(
      target.node,
      `copy from ${source.name} failed (${errorLine(error)}); copying again`,
    );
  }

  #turnPeersOff(why: string): void {
    if (this.#peersOff !== undefined) return;
    this.#peersOff = why;
    this.#events.notice(
      `${why}: each node gets its copy from this machine (${this.#parallel} at a time)`,
    );
    this.#notify();
  }

  async #upload(
    target: CopyTarget,
    missing: PayloadFile[],
    done: Set<PayloadFile>,
    signal: AbortSignal,
  ): Promise<void> {
    this.#uploading++;
    try {
      for (let attempt = 1;; attempt++) {
        const left = missing.filter((file) => !done.has(file));
        try {
          await this.#uploads.use(() => this.#uploadOnce(target, left, done, signal));
          return;
        } catch (error) {
          if (signal.aborted) return;
          const retry = error instanceof ExecDroppedError || error instanceof DamagedCopyError;
          if (!retry || attempt > UPLOAD_RETRIES) throw error;
          this.#events.warn(
            target.node,
            `upload interrupted (${
              (error as Error).message
            }); retrying (${attempt}/${UPLOAD_RETRIES})`,
          );
          await sleep(1000 * attempt, signal);
        }
      }
    } finally {
      this.#uploading--;
      this.#notify();
    }
  }

  async #uploadOnce(
    target: CopyTarget,
    files: PayloadFile[],
    done: Set<PayloadFile>,
    signal: AbortSignal,
  ): Promise<void> {
    if (signal.aborted) return;
    const started = performance.now();
    const holder = this.#hold(target, undefined);
    const total = files.reduce((sum, file) => sum + file.packed.size, 0);
    const unpacked = files.reduce((sum, file) => sum + file.size, 0);
    this.#events.progress(target.node, "this machine", 0, total);
    try {
      await uploadFiles(target.exec, files, holder.attempt, {
        onProgress: (bytes) => this.#events.progress(target.node, "this machine", bytes, total),
        onFile: (file) => done.add(file),
        signal,
      });
    } catch (error) {
      this.#release(holder);
      throw error;
    }
    if (signal.aborted) return;
    holder.complete = true;
    this.#notify();
    this.#events.copied(
      target.node,
      `uploaded ${megabytes(total)} (${megabytes(unpacked)} unpacked) in ${
        seconds(started)
      } (size and SHA-256 verified)`,
    );
  }

  /** Makes the target a holder receiving from `upstream` (undefined: this machine). */
  #hold(target: CopyTarget, upstream: Holder | undefined): Holder {
    const holder = new Holder(target, newAttempt(), upstream);
    this.#holders.set(target.node, holder);
    this.#notify();
    return holder;
  }

  /**
   * A holder's receiving failed: it is no source anymore (its server, which
   * serves that attempt's files, is stopped), and the pods copying through
   * it start over.
   */
  #release(holder: Holder): void {
    if (this.#holders.get(holder.target.node) === holder) {
      this.#holders.delete(holder.target.node);
    }
    holder.unusable = true;
    holder.abort.abort();
    holder.server?.then((server) => server?.stop());
    for (const other of this.#holders.values()) {
      if (other.upstream === holder && !other.complete) this.#release(other);
    }
    this.#notify();
  }

  #notify(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }

  /** Resolves at the next change (a source, a failure), or after a second. */
  #changed(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, 1000);
      signal.addEventListener("abort", done, { once: true });
      this.#waiters.push(done);
    });
  }
}

/** The copy stopped because the pod it came through failed (not this pod's fault). */
class SourceFailedError extends TcpgadgetError {
  constructor(message: string) {
    super(message);
    this.name = "SourceFailedError";
  }
}
