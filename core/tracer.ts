/**
 * The TCP tracer: loads the embedded BPF object, configures it, attaches
 * it, and turns ring buffer records into {@link TcpEvent}s.
 *
 * @module
 */

import tcptracerObject from "../bpf/tcptracer.bpf.o" with { type: "bytes" };
import {
  type BpfLink,
  type BpfMap,
  BpfObject,
  type BpfProgram,
  createMap,
  possibleCpus,
} from "./object.ts";
import { MergedRingBuffers, RingBufferReader } from "./ringbuf.ts";
import { EventDecoder, type TcpEvent } from "./event.ts";
import {
  CONFIG_LAYOUT,
  EVENT_KIND,
  EVENT_LAYOUT,
  MNTNS_DECISION,
  TASK_COMM_LEN,
  TREE_MEMBER_LAYOUT,
} from "./tcptracer_abi.ts";
import { CLOCK_BOOTTIME, CLOCK_REALTIME, clockNs } from "./libc.ts";
import { openLibbpf } from "./libbpf.ts";
import { errorLine, TcpgadgetError, UnsupportedError } from "./errors.ts";
import { ensureTracefs, requireBpfPrivileges, requireKernelBtf } from "./system.ts";
import { printWarning } from "./warning.ts";

/** The compiled kernel program, embedded in tcpgadget. */
export const BPF_OBJECT: Uint8Array = tcptracerObject;

/** Which events to report; the kernel drops the others. */
export interface EventKinds {
  /** Connects, successful and failed. */
  connect?: boolean;
  /** Accepts. */
  accept?: boolean;
  /** Failed connects only. */
  failure?: boolean;
}

/**
 * The kernel's event mask for the `--connect-only`, `--accept-only` and
 * `--failure-only` selections: their union, or everything if none is set.
 */
export function kindsMask(kinds: EventKinds = {}): number {
  const { KIND_ACCEPT, KIND_ALL, KIND_CONNECT, KIND_CONNECT_FAILED } = EVENT_KIND;
  let mask = 0;
  if (kinds.connect) mask |= KIND_CONNECT | KIND_CONNECT_FAILED;
  if (kinds.accept) mask |= KIND_ACCEPT;
  if (kinds.failure) mask |= KIND_CONNECT_FAILED;
  return mask || KIND_ALL;
}

/** Options of {@link TcpTracer.open}. */
export interface TracerOptions {
  /** Only events attributed to this process id (thread group id). */
  pid?: number;
  /** Only events attributed to processes with this command name. */
  comm?: string;
  /** Event kinds to report (default: all). */
  kinds?: EventKinds;
  /**
   * The container filter: the kernel drops the events of processes in mount
   * namespaces denied with {@link TcpTracer.decideMountNamespace}. Events of
   * a namespace without a decision come through, with its id in
   * `mntnsSeq`, for the caller to decide.
   */
  filterMountNamespaces?: boolean;
  /**
   * Only processes of a tree: those given to {@link TcpTracer.traceProcess}
   * and every process they start, at any depth (filtered in the kernel).
   */
  processTree?: boolean;
  /**
   * Size in bytes of each CPU's ring buffer, a power of two of at least
   * 4096 (default: {@link defaultRingBytes}).
   */
  ringBufferBytes?: number;
  /**
   * The kernel wakes the reader once this many bytes are queued in a CPU's
   * ring (default: a quarter of it); the reader also polls every
   * {@link pollIntervalMs}.
   */
  wakeupBytes?: number;
  /** Longest delay before a queued event is read (default 100 ms). */
  pollIntervalMs?: number;
  /** Force the raw tracepoint instead of tp_btf (tests, old kernels). */
  forceRawTracepoint?: boolean;
  /** Called with warnings (a program that could not attach, lost events). */
  onWarning?: (message: string) => void;
}

/** How the state-change program was attached. */
export type AttachMethod = "tp_btf" | "raw_tp";

/**
 * The default size of each CPU's ring buffer: 8 MiB over all CPUs, at
 * least 512 KiB and at most 4 MiB per CPU. One CPU at the most events a
 * second measured here (about 250,000, 128 bytes each) fills 4 MiB in
 * 130 ms, 512 KiB in 16 ms; a busy reader reads every
 * {@link batchIntervalMs}.
 */
export function defaultRingBytes(cpus: number): number {
  let size = 4 << 20;
  while (size > 512 << 10 && size * cpus > 8 << 20) size /= 2;
  return size;
}

/**
 * How long a busy reader lets events gather between reads, with rings of
 * `ringBytes` each: a third of the time one CPU at the highest rate above
 * takes to fill one, from 10 to 50 ms (43 ms for 4 MiB). Each read costs
 * a wakeup and cold caches, hundreds of µs of CPU in a VM, so fewer reads
 * slow the traced workload less; a ring must not fill in between.
 *
 * @example
 * ```ts
 * import { batchIntervalMs } from "./tracer.ts";
 * import assert from "node:assert/strict";
 * assert.equal(batchIntervalMs(4 << 20), 43);
 * assert.equal(batchIntervalMs(512 << 10), 10);
 * ```
 */
export function batchIntervalMs(ringBytes: number): number {
  const fillMs = ringBytes / (250_000 * 128) * 1000;
  return Math.min(50, Math.max(10, Math.floor(fillMs / 3)));
}

/** Encodes `struct tcptracer_config`. */
export function encodeConfig(options: TracerOptions): Uint8Array {
  const L = CONFIG_LAYOUT;
  const bytes = new Uint8Array(L.size);
  const view = new DataView(bytes.buffer);
  view.setUint32(L.filter_pid, options.pid ?? 0, true);
  view.setUint32(L.kinds, kindsMask(options.kinds), true);
  // A quarter of the ring: a reader asleep in poll() is woken with three
  // quarters still free, while a busy one, reading every few milliseconds,
  // is never interrupted.
  view.setBigUint64(
    L.wakeup_bytes,
    BigInt(options.wakeupBytes ?? ringBytes(options) / 4),
    true,
  );
  if (options.comm !== undefined) {
    view.setUint8(L.filter_comm_enabled, 1);
    // The kernel keeps 15 bytes of a command name.
    bytes.set(
      new TextEncoder().encode(options.comm).subarray(0, TASK_COMM_LEN - 1),
      L.filter_comm,
    );
  }
  if (options.filterMountNamespaces) view.setUint8(L.filter_mntns_enabled, 1);
  if (options.processTree) view.setUint8(L.filter_tree_enabled, 1);
  return bytes;
}

/**
 * The programs on the state-change tracepoint, for each way to attach it:
 * the handler, and the one after it that handles the state changes the
 * kernel did not run the handler for (see "Rescuing" in tcptracer.bpf.c).
 */
const STATE_PROGRAMS: Record<AttachMethod, { handler: string; rescue: string }> = {
  tp_btf: { handler: "tcp_set_state_btf", rescue: "rescue_state_btf" },
  raw_tp: { handler: "tcp_set_state_raw", rescue: "rescue_state_raw" },
};

/**
 * Traces TCP connects, accepts and closes on this host.
 *
 * @example
 * ```ts ignore
 * const tracer = TcpTracer.open({ kinds: { connect: true } });
 * try {
 *   for await (const event of tracer.events()) {
 *     console.log(event.type, event.pid, event.comm, event.daddr, event.dport);
 *   }
 * } finally {
 *   await tracer.close();
 * }
 * ```
 */
export class TcpTracer {
  readonly #object: BpfObject;
  readonly #links: BpfLink[];
  readonly #rings: MergedRingBuffers;
  readonly #decoder: EventDecoder;
  // The event that drain({ reuse: true }) overwrites.
  readonly #shared: TcpEvent = emptyEvent();
  readonly #lostMap: BpfMap;
  readonly #rescuedMap: BpfMap;
  readonly #mntnsMap: BpfMap;
  readonly #treeMap: BpfMap;
  readonly #treeFullMap: BpfMap;
  readonly #processTree: boolean;
  #treeFullReported = 0n;
  readonly #perCpuValue: Uint8Array;
  readonly #pollIntervalMs: number;
  readonly #onWarning: (message: string) => void;
  #lostReported = 0n;
  #unhandledReported = 0n;
  #unhandledCheckedAt = performance.now();
  // Programs whose skipped runs can lose an event.
  readonly #programs: BpfProgram[];
  #closed = false;
  /** How the state-change program is attached. */
  readonly attachMethod: AttachMethod;
  /** Milliseconds from {@link open} to attached programs. */
  readonly startupMs: number;
  /** How long a busy reader lets events gather between reads ({@link batchIntervalMs}). */
  readonly batchIntervalMs: number;
  /**
   * What turns the kernel's boot-time clock into the events' wall-clock
   * time (fixed at open): for other sources of events, such as DNS
   * answers, to be on the same clock.
   */
  readonly bootToRealtimeNs: bigint;

  private constructor(
    object: BpfObject,
    rings: RingBufferReader[],
    links: BpfLink[],
    attachMethod: AttachMethod,
    options: TracerOptions,
    startupMs: number,
  ) {
    this.#object = object;
    this.#links = links;
    const rescue = STATE_PROGRAMS[attachMethod].rescue;
    this.#programs = object.programs().filter((p) => p.autoload && p.name !== rescue);
    this.attachMethod = attachMethod;
    this.startupMs = startupMs;
    this.#rings = new MergedRingBuffers(rings, {
      timeOffset: EVENT_LAYOUT.timestamp_ns,
      now: () => Number(clockNs(CLOCK_BOOTTIME)),
    });
    this.bootToRealtimeNs = clockNs(CLOCK_REALTIME) - clockNs(CLOCK_BOOTTIME);
    this.#decoder = new EventDecoder(this.bootToRealtimeNs);
    this.#lostMap = object.map("lost");
    this.#rescuedMap = object.map("rescued");
    this.#mntnsMap = object.map("mntns_decisions");
    this.#treeMap = object.map("traced_tgids");
    this.#treeFullMap = object.map("tree_full");
    this.#processTree = options.processTree === true;
    this.#perCpuValue = new Uint8Array(8 * possibleCpus());
    this.#pollIntervalMs = options.pollIntervalMs ?? 100;
    this.batchIntervalMs = batchIntervalMs(rings[0].size);
    this.#onWarning = options.onWarning ?? printWarning;
  }

  /**
   * Checks the host, loads the BPF object into the kernel and attaches it.
   * Events are queued in the kernel from the moment this resolves.
   */
  static open(options: TracerOptions = {}): TcpTracer {
    const started = performance.now();
    if (Deno.build.os !== "linux") throw new UnsupportedError("tcpgadget runs on Linux only");
    requireBpfPrivileges();
    requireKernelBtf();
    ensureTracefs();
    const { symbols } = openLibbpf();
    if (symbols.libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, null) === 0) {
      throw new UnsupportedError("this kernel has no BPF ring buffer (Linux 5.8 or later needed)");
    }
    const warn = options.onWarning ?? printWarning;
    // Preferred first; each later attempt needs less of the kernel.
    const attempts = ATTEMPTS.filter((a) => !options.forceRawTracepoint || a.method === "raw_tp");
    let firstError: unknown;
    for (const { method, seed } of attempts) {
      let object: BpfObject | undefined;
      let rings: RingBufferReader[] = [];
      const links: BpfLink[] = [];
      try {
        object = loadObject(method, seed, options);
        // Before attaching: an event with no ring to go to is lost.
        rings = createRings(object.map("events"), ringBytes(options));
        // The handler first: the kernel calls a tracepoint's programs in
        // the order they were attached, and the rescue must come second.
        const { handler, rescue } = STATE_PROGRAMS[method];
        links.push(object.program(handler).attach());
        links.push(object.program(rescue).attach());
        // The tree's programs before any other: without them a tree is
        // not followed, and tracing it would miss its children.
        for (const name of TREE_PROGRAMS) {
          if (options.processTree) links.push(object.program(name).attach());
        }
        for (const program of object.programs()) {
          if (!program.autoload || program.name === handler || program.name === rescue) continue;
          if (program.name === SEED_PROGRAM || TREE_PROGRAMS.includes(program.name)) continue;
          try {
            links.push(program.attach());
          } catch (error) {
            // Without syscall tracepoints, accepts and closers are unknown
            // but connects and closes are still traced.
            warn(
              `${program.name} not attached (${errorLine(error)}): events it attributes show as U`,
            );
          }
        }
        const seeder = object.program(SEED_PROGRAM);
        // After attaching, so that no connection falls between the two.
        if (seeder.autoload) seeder.runIterator();
        else if (!seed) warn("cannot list existing connections: their owners are unknown");
        return new TcpTracer(
          object,
          rings,
          links,
          method,
          options,
          performance.now() - started,
        );
      } catch (error) {
        closeLinks(links);
        for (const ring of rings) ring.close();
        object?.close();
        firstError ??= error;
        if (error instanceof TcpgadgetError && error.name === "PermissionError") break;
      }
    }
    throw firstError;
  }

  /**
   * Reads every queued event and hands each to `handler`. Returns how many
   * were read; 0 means the queue was empty.
   *
   * With `reuse`, every call of `handler` gets the same object, overwritten
   * by each record: no allocation per event, for handlers that keep nothing
   * of it once they return (copy what you keep).
   */
  drain(handler: (event: TcpEvent) => void, options: { reuse?: boolean } = {}): number {
    const decoder = this.#decoder;
    if (options.reuse) {
      const event = this.#shared;
      return this.#rings.consume((view, offset) => handler(decoder.decode(view, offset, event)));
    }
    return this.#rings.consume((view, offset) => handler(decoder.decode(view, offset)));
  }

  /** Raw records, for callers that decode themselves (benchmarks). */
  drainRaw(handler: (view: DataView, offset: number, length: number) => void): number {
    return this.#rings.consume(handler);
  }

  /**
   * Waits for the kernel's wakeup or the poll interval. Returns false once
   * {@link stop} was called.
   */
  wait(): Promise<boolean> {
    return this.#rings.wait(this.#pollIntervalMs);
  }

  /** Ends {@link events} and any pending {@link wait} promptly. */
  stop(): void {
    this.#rings.interrupt();
  }

  /** Events yielded as they arrive, until {@link stop} or {@link close}. */
  async *events(): AsyncGenerator<TcpEvent> {
    const batch: TcpEvent[] = [];
    while (!this.#closed) {
      this.drain((event) => batch.push(event));
      this.reportLost();
      if (batch.length > 0) {
        yield* batch.splice(0);
        continue;
      }
      if (!(await this.wait())) {
        this.drain((event) => batch.push(event));
        yield* batch.splice(0);
        return;
      }
    }
  }

  /** Events dropped by the kernel so far because the ring buffer was full. */
  lostEvents(): bigint {
    if (this.#closed) return this.#lostReported;
    return this.#sumPerCpu(this.#lostMap);
  }

  /**
   * Runs of the programs that the kernel skipped, and nothing made up for:
   * each may have been an event. A program is skipped when it is already
   * running on that CPU (an interrupt came in the middle of it and hit the
   * same tracepoint); skipped state changes are handled by the rescue
   * program, so this stays 0 unless the kernel skipped the rescue too.
   */
  unhandledRuns(): bigint {
    if (this.#closed) return this.#unhandledReported;
    let skipped = 0n;
    for (const program of this.#programs) skipped += program.recursionMisses();
    // Negative would mean a state change handled twice: a bug, not a loss.
    return skipped - this.#sumPerCpu(this.#rescuedMap);
  }

  /** Rescued state changes: runs of the handler the kernel skipped. */
  rescuedRuns(): bigint {
    return this.#closed ? 0n : this.#sumPerCpu(this.#rescuedMap);
  }

  #sumPerCpu(map: BpfMap): bigint {
    if (!map.lookup(new Uint8Array(4), this.#perCpuValue)) return 0n;
    const view = new DataView(this.#perCpuValue.buffer);
    let total = 0n;
    for (let i = 0; i < this.#perCpuValue.length; i += 8) total += view.getBigUint64(i, true);
    return total;
  }

  /**
   * Warns "lost N events" if more were lost since the last report: ring
   * buffer full, or (checked every second, and when `final`) program runs
   * the kernel skipped that were not rescued.
   */
  reportLost(final = false): void {
    const lost = this.lostEvents();
    if (lost > this.#lostReported) {
      this.#onWarning(`lost ${lost - this.#lostReported} events (ring buffer full)`);
      this.#lostReported = lost;
    }
    const treeFull = this.untracedProcesses();
    if (treeFull > this.#treeFullReported) {
      this.#onWarning(
        `lost the events of ${
          treeFull - this.#treeFullReported
        } processes of the traced tree (more than ${TREE_CAPACITY} at a time)`,
      );
      this.#treeFullReported = treeFull;
    }
    if (!final && performance.now() - this.#unhandledCheckedAt < 1000) return;
    this.#unhandledCheckedAt = performance.now();
    const unhandled = this.unhandledRuns();
    if (unhandled > this.#unhandledReported) {
      const runs = unhandled - this.#unhandledReported;
      this.#onWarning(
        `lost up to ${runs} events (the kernel skipped ${runs} runs of tcpgadget's programs)`,
      );
      this.#unhandledReported = unhandled;
    }
  }

  /**
   * Records the container filter's decision about the processes of the
   * mount namespace `seq` (an event's `mntnsSeq`): the kernel lets their
   * events through (`allowed`) or drops them.
   */
  decideMountNamespace(seq: number, allowed: boolean): void {
    const { MNTNS_ALLOW, MNTNS_DENY } = MNTNS_DECISION;
    this.#mntnsMap.update(seqKey(seq), new Uint8Array([allowed ? MNTNS_ALLOW : MNTNS_DENY]));
  }

  /**
   * The kernel's decision about the mount namespace `seq`: true (let
   * through), false (dropped), or undefined (none yet: let through for the
   * caller to decide).
   */
  mountNamespaceDecision(seq: number): boolean | undefined {
    const value = new Uint8Array(1);
    if (!this.#mntnsMap.lookup(seqKey(seq), value)) return undefined;
    return value[0] !== MNTNS_DECISION.MNTNS_DENY;
  }

  /**
   * Adds a process to the traced tree (option `processTree`): its events
   * and those of every process it starts from now on pass the filter. Add
   * it before it starts anything (see gated_spawn.ts). Throws if the
   * process does not exist.
   */
  traceProcess(pid: number): void {
    if (!this.#processTree) throw new TcpgadgetError("the tracer was opened without processTree");
    const key = new Uint8Array(new Uint32Array([pid]).buffer);
    // start_time 0: removed when any process of this pid is reaped.
    this.#treeMap.update(key, new Uint8Array(TREE_MEMBER_LAYOUT.size));
    // Reaped before it was added: the kernel will not remove it.
    if (!processExists(pid)) {
      this.#treeMap.delete(key);
      throw new TcpgadgetError(`process ${pid} does not exist`);
    }
  }

  /**
   * Thread group ids of the traced tree's processes, and whether each has
   * exited (every thread ended: a zombie its parent has not reaped yet).
   */
  processTreeMembers(): { pid: number; exited: boolean }[] {
    const members: { pid: number; exited: boolean }[] = [];
    const key = new Uint8Array(4);
    const value = new Uint8Array(TREE_MEMBER_LAYOUT.size);
    let previous: Uint8Array | null = null;
    // When the previous key is removed meanwhile, the kernel starts over
    // from the first: a pid may come twice (the last word on it is kept),
    // and the walk is bounded.
    const seen = new Map<number, boolean>();
    for (
      let steps = 0;
      steps < 2 * TREE_CAPACITY && this.#treeMap.nextKey(previous, key);
      steps++
    ) {
      const pid = new DataView(key.buffer).getUint32(0, true);
      if (this.#treeMap.lookup(key, value)) seen.set(pid, value[TREE_MEMBER_LAYOUT.exited] !== 0);
      previous = key.slice();
    }
    for (const [pid, exited] of seen) members.push({ pid, exited });
    return members;
  }

  /**
   * Processes of the traced tree that the kernel could not add (more than
   * it holds at a time): their events are lost. Always 0 without the option.
   */
  untracedProcesses(): bigint {
    return this.#processTree && !this.#closed ? this.#sumPerCpu(this.#treeFullMap) : 0n;
  }

  /** Whether every process of the traced tree has exited (or none was added). */
  processTreeEmpty(): boolean {
    return this.processTreeMembers().every((member) => member.exited);
  }

  /** Detaches every program and frees every kernel object. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    closeLinks(this.#links);
    try {
      this.reportLost(true);
    } catch {
      // the report is best effort while closing
    }
    this.#closed = true;
    await this.#rings.close();
    this.#object.close();
  }
}

const BPF_MAP_TYPE_RINGBUF = 27;
const SEED_PROGRAM = "seed_owners";
/** The programs that follow the process tree (option `processTree`). */
const TREE_PROGRAMS = ["tree_fork", "tree_exit", "tree_free"];
/**
 * Processes of the traced tree at one time (alive or not yet reaped): a
 * hash map of this many entries takes 2.9 MB (measured), made only with the
 * option.
 */
const TREE_CAPACITY = 32768;

/**
 * Ways to load the object, best first: the state-change program as tp_btf
 * or raw_tp, with or without the iterator that finds the owners of
 * connections that existed before tracing.
 */
const ATTEMPTS: readonly { method: AttachMethod; seed: boolean }[] = [
  { method: "tp_btf", seed: true },
  { method: "raw_tp", seed: true },
  { method: "raw_tp", seed: false },
];

function loadObject(method: AttachMethod, seed: boolean, options: TracerOptions): BpfObject {
  const object = BpfObject.open(BPF_OBJECT, "tcptracer");
  try {
    object.setConstant("config", encodeConfig(options));
    const kinds = kindsMask(options.kinds);
    for (const [other, programs] of Object.entries(STATE_PROGRAMS)) {
      if (other === method) continue;
      object.program(programs.handler).autoload = false;
      object.program(programs.rescue).autoload = false;
    }
    // Accepts are needed for A and to know who owns a connection at X.
    const { KIND_ACCEPT, KIND_CLOSE, KIND_UNKNOWN } = EVENT_KIND;
    const needsOwners = (kinds & (KIND_ACCEPT | KIND_CLOSE | KIND_UNKNOWN)) !== 0;
    object.program("tcp_accept4_exit").autoload = needsOwners;
    object.program("tcp_accept_exit").autoload = needsOwners;
    object.program(SEED_PROGRAM).autoload = seed && needsOwners;
    for (const name of TREE_PROGRAMS) object.program(name).autoload = options.processTree === true;
    object.map("traced_tgids").maxEntries = options.processTree ? TREE_CAPACITY : 1;
    // One ring per CPU, made after loading (createRings).
    object.map("events").maxEntries = possibleCpus();
    // Decisions of the container filter: 640 KiB of locked memory for 8192
    // entries, unused without it.
    if (!options.filterMountNamespaces) object.map("mntns_decisions").maxEntries = 1;
    object.load();
    return object;
  } catch (error) {
    object.close();
    throw error;
  }
}

/**
 * Makes and maps one ring buffer per possible CPU, and puts them in
 * `events`. The readers own the rings: closing them frees the rings.
 */
function createRings(events: BpfMap, size: number): RingBufferReader[] {
  const readers: RingBufferReader[] = [];
  try {
    const key = new Uint32Array(1);
    const value = new Uint32Array(1);
    for (let cpu = 0; cpu < events.maxEntries; cpu++) {
      const fd = createMap({
        type: BPF_MAP_TYPE_RINGBUF,
        name: `events_cpu${cpu}`,
        keySize: 0,
        valueSize: 0,
        maxEntries: size,
      });
      readers.push(new RingBufferReader(fd, size));
      key[0] = cpu;
      value[0] = fd;
      events.update(new Uint8Array(key.buffer), new Uint8Array(value.buffer));
    }
    return readers;
  } catch (error) {
    for (const reader of readers) reader.close();
    throw error;
  }
}

/** The size of each CPU's ring buffer that `options` ask for. */
function ringBytes(options: TracerOptions): number {
  const size = options.ringBufferBytes ?? defaultRingBytes(possibleCpus());
  if (size < 4096 || (size & (size - 1)) !== 0) {
    throw new TcpgadgetError(`ring buffer size ${size} is not a power of two of at least 4096`);
  }
  return size;
}

/** The key of a mount namespace in `mntns_decisions`: its seq, a `__u64`. */
function seqKey(seq: number): Uint8Array {
  const key = new Uint8Array(8);
  new DataView(key.buffer).setBigUint64(0, BigInt(seq), true);
  return key;
}

/**
 * Detaches in the reverse order of attaching: the rescue program before
 * the handler, so that it never runs without it (it would handle every
 * state change a second time).
 */
function closeLinks(links: BpfLink[]): void {
  for (const link of links.toReversed()) link.close();
}

/** Whether a process (any task) of this id exists, a zombie included. */
function processExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function emptyEvent(): TcpEvent {
  return {
    type: "U",
    timeSec: 0,
    timeNsec: 0,
    pid: 0,
    tid: 0,
    uid: 0,
    gid: 0,
    comm: "",
    mntns: 0,
    netns: 0,
    cgroupId: 0,
    mntnsSeq: 0,
    ipversion: 4,
    saddr: "",
    sport: 0,
    daddr: "",
    dport: 0,
    error: undefined,
  };
}
