/**
 * DNS answers observed in the kernel, in every network namespace: loads
 * the embedded bpf/dnssnoop.bpf.o, attaches its cgroup_skb/ingress program
 * to the root of the cgroup v2 hierarchy (so it runs for every socket of
 * every process), and reads the answers it copies into its ring.
 *
 * @module
 */

import dnssnoopObject from "../bpf/dnssnoop.bpf.o" with { type: "bytes" };
import { type BpfLink, type BpfMap, BpfObject, possibleCpus } from "./object.ts";
import { MergedRingBuffers, RingBufferReader } from "./ringbuf.ts";
import { DNS_COUNTER, DNS_EVENT_LAYOUT, IPPROTO_UDP } from "./dnssnoop_abi.ts";
import type { DnsAnswer, DnsAnswerSource } from "./dns_answer.ts";
import {
  CLOCK_BOOTTIME,
  CLOCK_REALTIME,
  clockNs,
  cString,
  errno,
  O_CLOEXEC,
  O_DIRECTORY,
  openLibc,
  strerror,
} from "./libc.ts";
import { errorLine, TcpgadgetError, UnsupportedError } from "./errors.ts";
import { requireBpfPrivileges, requireKernelBtf } from "./system.ts";

/** The compiled DNS answer snooper, embedded in tcpgadget. */
export const DNSSNOOP_OBJECT: Uint8Array = dnssnoopObject;

/** Options of {@link DnsSnooper.open}. */
export interface DnsSnooperOptions {
  /**
   * Where the cgroup v2 hierarchy's root is mounted (default: found in
   * /proc/self/mountinfo). Answers to processes in cgroups below it are
   * seen: the root sees every process.
   */
  cgroupRoot?: string;
  /** Size of the answers ring, a power of two of at least 4096 (default 1 MiB). */
  ringBytes?: number;
  /**
   * The offset from the kernel's boot-time clock to wall-clock time; pass
   * the tracer's ({@link TcpTracer.bootToRealtimeNs}) so that answers and
   * connections are on one clock.
   */
  bootToRealtimeNs?: bigint;
}

const F_DUPFD_CLOEXEC = 1030;

/**
 * DNS answers delivered to sockets, as they arrive.
 *
 * @example
 * ```ts ignore
 * const snooper = DnsSnooper.open({ bootToRealtimeNs: tracer.bootToRealtimeNs });
 * snooper.drain((answer) => console.log(answer.netns, addressRecords(answer)));
 * await snooper.close();
 * ```
 */
export class DnsSnooper implements DnsAnswerSource {
  readonly #object: BpfObject;
  readonly #link: BpfLink;
  readonly #rings: MergedRingBuffers;
  readonly #counters: BpfMap;
  readonly #bootToRealtimeNs: bigint;
  /** Where the program is attached: the cgroup v2 root. */
  readonly cgroupRoot: string;
  #closed = false;

  private constructor(
    object: BpfObject,
    link: BpfLink,
    rings: MergedRingBuffers,
    cgroupRoot: string,
    bootToRealtimeNs: bigint,
  ) {
    this.#object = object;
    this.#link = link;
    this.#rings = rings;
    this.#counters = object.map("counters");
    this.cgroupRoot = cgroupRoot;
    this.#bootToRealtimeNs = bootToRealtimeNs;
  }

  /**
   * Loads and attaches the snooper; answers are queued from the moment
   * this returns. Throws {@link UnsupportedError} where the kernel cannot
   * run it (Linux 6.2 or later is needed) or no cgroup v2 hierarchy is
   * mounted.
   */
  static open(options: DnsSnooperOptions = {}): DnsSnooper {
    if (Deno.build.os !== "linux") throw new UnsupportedError("tcpgadget runs on Linux only");
    requireBpfPrivileges();
    requireKernelBtf();
    const cgroupRoot = options.cgroupRoot ?? findCgroup2Root();
    const ringBytes = options.ringBytes ?? 1 << 20;
    if (ringBytes < 4096 || (ringBytes & (ringBytes - 1)) !== 0) {
      throw new TcpgadgetError(
        `ring buffer size ${ringBytes} is not a power of two of at least 4096`,
      );
    }
    const object = BpfObject.open(DNSSNOOP_OBJECT, "dnssnoop");
    let link: BpfLink | undefined;
    let rings: MergedRingBuffers | undefined;
    try {
      object.map("answers").maxEntries = ringBytes;
      try {
        object.load();
      } catch (error) {
        const reason = errorLine(error);
        // The kfunc that reaches the socket's namespace came in Linux 6.2.
        const tooOld = /bpf_cast_to_kern_ctx|ksym/.test(reason)
          ? " (Linux 6.2 or later is needed)"
          : "";
        throw new UnsupportedError(`cannot observe DNS answers on this kernel${tooOld}: ${reason}`);
      }
      const libc = openLibc();
      const ringFd = libc.fcntl(object.map("answers").fd, F_DUPFD_CLOEXEC, 0);
      if (ringFd < 0) throw new TcpgadgetError(`cannot read the DNS ring: ${strerror(errno())}`);
      rings = new MergedRingBuffers([new RingBufferReader(ringFd, ringBytes)], {
        timeOffset: DNS_EVENT_LAYOUT.timestamp_ns,
        now: () => Number(clockNs(CLOCK_BOOTTIME)),
      });
      const cgroupFd = libc.open(cString(cgroupRoot), O_DIRECTORY | O_CLOEXEC);
      if (cgroupFd < 0) {
        throw new TcpgadgetError(`cannot open the cgroup ${cgroupRoot}: ${strerror(errno())}`);
      }
      try {
        link = object.program("dns_answers").attachCgroup(cgroupFd);
      } finally {
        libc.close(cgroupFd);
      }
      const offset = options.bootToRealtimeNs ??
        clockNs(CLOCK_REALTIME) - clockNs(CLOCK_BOOTTIME);
      return new DnsSnooper(object, link, rings, cgroupRoot, offset);
    } catch (error) {
      link?.close();
      // Not awaited: a reader that was never waited on closes at once.
      void rings?.close();
      object.close();
      throw error;
    }
  }

  /**
   * Hands every answer that has arrived to `handler`, oldest first (the
   * payload is the handler's to keep), and returns the time before which
   * every answer a process could have acted on has been handed out.
   */
  drain(handler: (answer: DnsAnswer) => void): bigint {
    if (this.#closed) return 0n;
    // Taken before the ring is read: see DnsAnswerSource.drain.
    const complete = clockNs(CLOCK_BOOTTIME) + this.#bootToRealtimeNs;
    const L = DNS_EVENT_LAYOUT;
    this.#rings.consume((view, offset, length) => {
      if (length < L.size) return;
      const copied = Math.min(view.getUint16(offset + L.copied, true), length - L.size);
      const start = view.byteOffset + offset + L.size;
      handler({
        timeNs: view.getBigUint64(offset + L.timestamp_ns, true) + this.#bootToRealtimeNs,
        netns: view.getUint32(offset + L.netns_id, true),
        transport: view.getUint8(offset + L.protocol) === IPPROTO_UDP ? "udp" : "tcp",
        payload: new Uint8Array(view.buffer.slice(start, start + copied)),
        cut: view.getUint32(offset + L.payload_length, true) > copied,
      });
    });
    return complete;
  }

  /** Answers the kernel dropped because the ring was full. */
  lostAnswers(): bigint {
    return this.#counter(DNS_COUNTER.DNS_COUNTER_LOST);
  }

  /** Answers longer than the kernel copies (8 KiB): cut, and not read. */
  cutAnswers(): bigint {
    return this.#counter(DNS_COUNTER.DNS_COUNTER_CUT);
  }

  #counter(index: number): bigint {
    if (this.#closed) return 0n;
    const values = new BigUint64Array(possibleCpus());
    const key = new Uint8Array(new Uint32Array([index]).buffer);
    if (!this.#counters.lookup(key, new Uint8Array(values.buffer))) return 0n;
    return values.reduce((sum, value) => sum + value, 0n);
  }

  /** Detaches the program and frees every kernel object. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#link.close();
    await this.#rings.close();
    this.#object.close();
  }
}

/**
 * Where the root of the cgroup v2 hierarchy is mounted: the first cgroup2
 * mount of the whole hierarchy in /proc/self/mountinfo.
 */
export function findCgroup2Root(mountinfo = "/proc/self/mountinfo"): string {
  for (const line of Deno.readTextFileSync(mountinfo).split("\n")) {
    // id parent major:minor root mountpoint options [optional...] - type source super
    const [left, right] = line.split(" - ");
    if (!right || right.split(" ")[0] !== "cgroup2") continue;
    const fields = left.split(" ");
    if (fields[3] !== "/") continue;
    return fields[4].replace(
      /\\([0-7]{3})/g,
      (_, octal) => String.fromCharCode(parseInt(octal, 8)),
    );
  }
  throw new UnsupportedError(
    "no cgroup v2 hierarchy is mounted, which DNS answers are observed through: mount one with 'mount -t cgroup2 none /sys/fs/cgroup/unified'",
  );
}
