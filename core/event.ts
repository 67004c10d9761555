/**
 * The event model: what the kernel reports (`struct event`, laid out in
 * tcptracer_abi.ts) and its decoding into a typed {@link TcpEvent}.
 *
 * @module
 */

import { errnoName } from "./errno.ts";
import { AF_INET, EVENT_LAYOUT, TYPE_LETTERS } from "./tcptracer_abi.ts";

/** The T column: connect, accept, close, unknown. */
export type EventType = "C" | "A" | "X" | "U";

/** The JSON `operation` of each {@link EventType}. */
export const OPERATIONS = {
  C: "connect",
  A: "accept",
  X: "close",
  U: "unknown",
} as const satisfies Record<EventType, string>;

/** One TCP event, decoded. */
export interface TcpEvent {
  type: EventType;
  /**
   * Wall-clock time of the event: whole seconds since the Unix epoch, and
   * nanoseconds within that second (as a C `struct timespec`). Two numbers
   * rather than one bigint: they cost nothing to make per event.
   */
  timeSec: number;
  timeNsec: number;
  /** Process (thread group) the event is attributed to; 0 for U. */
  pid: number;
  tid: number;
  uid: number;
  gid: number;
  comm: string;
  /** Mount namespace inode number of the process (0 if unknown). */
  mntns: number;
  /** Network namespace inode number of the socket. */
  netns: number;
  /** cgroup v2 id of the process (0 if unknown; a number: ids stay far below 2^53). */
  cgroupId: number;
  /**
   * Id of the process's mount namespace that, unlike its inode number, is
   * never reused until reboot: set with the container filter on (see
   * TracerOptions.filterMountNamespaces), else 0 or absent.
   */
  mntnsSeq?: number;
  ipversion: 4 | 6;
  /** Local address and port (for an accepted connection: the server's). */
  saddr: string;
  sport: number;
  /** Remote address and port. */
  daddr: string;
  dport: number;
  /** errno name of a failed connect ("ECONNREFUSED"), else undefined. */
  error?: string;
}

/**
 * Decodes `struct event` records. `bootToRealtimeNs` converts the kernel's
 * boot-time clock to wall-clock time.
 */
export class EventDecoder {
  readonly #bootToRealtimeNs: bigint;
  // The wall-clock time of boot-time (#high << 32) ns: events share the
  // high word of their 64-bit timestamp for 4.3 s at a time.
  #high = -1;
  #baseSec = 0;
  #baseNsec = 0;
  // Strings are cached: the same processes and addresses recur, and
  // building strings is most of the cost of decoding.
  readonly #comms = new Map<number, CommEntry>();
  readonly #ipv4 = new Map<number, string>();
  readonly #ipv6 = new Map<string, string>();
  // Byte views of the DataViews records come in (one per ring buffer),
  // made once: records of several rings alternate.
  readonly #byteViews = new WeakMap<DataView, Uint8Array>();
  // The last entries found, checked before the maps: events of one
  // process and address pair come in runs.
  #lastComm: CommEntry | undefined;
  #lastCommPid = -1;
  #lastV4Key = -1;
  #lastV4 = "";

  constructor(bootToRealtimeNs: bigint) {
    this.#bootToRealtimeNs = bootToRealtimeNs;
  }

  /**
   * Decodes one record at `offset` of `view`.
   *
   * @example
   * ```ts
   * import { EventDecoder } from "./event.ts";
   * import { EVENT_LAYOUT } from "./tcptracer_abi.ts";
   * import assert from "node:assert/strict";
   * const bytes = new Uint8Array(EVENT_LAYOUT.size);
   * const view = new DataView(bytes.buffer);
   * view.setUint8(EVENT_LAYOUT.type, 1);
   * view.setUint16(EVENT_LAYOUT.family, 2, true);
   * const event = new EventDecoder(0n).decode(view, 0);
   * assert.equal(event.type, "C");
   * ```
   */
  decode(view: DataView, offset: number, into?: TcpEvent): TcpEvent {
    const L = EVENT_LAYOUT;
    const family = view.getUint16(offset + L.family, true);
    const errorCode = view.getUint16(offset + L.error, true);
    let ipversion: 4 | 6;
    let saddr: string;
    let daddr: string;
    if (family === AF_INET) {
      ipversion = 4;
      saddr = this.#v4(view, offset + L.saddr);
      daddr = this.#v4(view, offset + L.daddr);
    } else if (
      isV4Mapped(this.#bytes(view), offset + L.daddr) &&
      (isV4Mapped(this.#bytes(view), offset + L.saddr) ||
        isZero(this.#bytes(view), offset + L.saddr))
    ) {
      // A dual-stack socket talking to an IPv4 peer.
      ipversion = 4;
      saddr = this.#v4(view, offset + L.saddr + 12);
      daddr = this.#v4(view, offset + L.daddr + 12);
    } else {
      ipversion = 6;
      saddr = this.#v6(view, offset + L.saddr);
      daddr = this.#v6(view, offset + L.daddr);
    }
    const pid = view.getUint32(offset + L.pid, true);
    const high = view.getUint32(offset + L.timestamp_ns + 4, true);
    if (high !== this.#high) this.#setBase(high);
    // Exact: below 2^53.
    const nsec = this.#baseNsec + view.getUint32(offset + L.timestamp_ns, true);
    const type = TYPE_LETTERS[view.getUint8(offset + L.type)] ?? "U";
    // Not `nsec % 1e9`: a remainder of doubles is a call into C.
    const seconds = Math.floor(nsec / 1_000_000_000);
    const timeSec = this.#baseSec + seconds;
    const timeNsec = nsec - seconds * 1_000_000_000;
    const tid = view.getUint32(offset + L.tid, true);
    const uid = view.getUint32(offset + L.uid, true);
    const gid = view.getUint32(offset + L.gid, true);
    const comm = this.#comm(view, offset + L.comm, pid);
    const mntns = view.getUint32(offset + L.mntns_id, true);
    const netns = view.getUint32(offset + L.netns_id, true);
    const cgroupId = view.getUint32(offset + L.cgroup_id, true) +
      view.getUint32(offset + L.cgroup_id + 4, true) * 0x1_0000_0000;
    const mntnsSeq = view.getUint32(offset + L.mntns_seq, true) +
      view.getUint32(offset + L.mntns_seq + 4, true) * 0x1_0000_0000;
    const sport = view.getUint16(offset + L.sport, true);
    const dport = view.getUint16(offset + L.dport, true);
    const error = errorCode ? errnoName(errorCode) : undefined;
    if (into) {
      // Overwritten in place: no allocation per event (see TcpTracer.drain).
      into.type = type;
      into.timeSec = timeSec;
      into.timeNsec = timeNsec;
      into.pid = pid;
      into.tid = tid;
      into.uid = uid;
      into.gid = gid;
      into.comm = comm;
      into.mntns = mntns;
      into.netns = netns;
      into.cgroupId = cgroupId;
      into.mntnsSeq = mntnsSeq;
      into.ipversion = ipversion;
      into.saddr = saddr;
      into.sport = sport;
      into.daddr = daddr;
      into.dport = dport;
      into.error = error;
      return into;
    }
    const event: TcpEvent = {
      type,
      timeSec,
      timeNsec,
      pid,
      tid,
      uid,
      gid,
      comm,
      mntns,
      netns,
      cgroupId,
      mntnsSeq,
      ipversion,
      saddr,
      sport,
      daddr,
      dport,
    };
    if (error) event.error = error;
    return event;
  }

  #setBase(high: number): void {
    const base = (BigInt(high) << 32n) + this.#bootToRealtimeNs;
    this.#high = high;
    this.#baseSec = Number(base / 1_000_000_000n);
    this.#baseNsec = Number(base % 1_000_000_000n);
  }

  /** `view`'s bytes as a Uint8Array. */
  #bytes(view: DataView): Uint8Array {
    let bytes = this.#byteViews.get(view);
    if (bytes === undefined) {
      bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      this.#byteViews.set(view, bytes);
    }
    return bytes;
  }

  #comm(view: DataView, at: number, pid: number): string {
    const w0 = view.getUint32(at, true);
    const w1 = view.getUint32(at + 4, true);
    const w2 = view.getUint32(at + 8, true);
    const w3 = view.getUint32(at + 12, true);
    const cached = pid === this.#lastCommPid ? this.#lastComm : this.#comms.get(pid);
    if (cached && cached.w0 === w0 && cached.w1 === w1 && cached.w2 === w2 && cached.w3 === w3) {
      this.#lastCommPid = pid;
      this.#lastComm = cached;
      return cached.value;
    }
    const entry = { w0, w1, w2, w3, value: decodeComm(this.#bytes(view), at) };
    if (this.#comms.size >= CACHE_LIMIT) this.#comms.clear();
    this.#comms.set(pid, entry);
    this.#lastCommPid = pid;
    this.#lastComm = entry;
    return entry.value;
  }

  #v4(view: DataView, at: number): string {
    const key = view.getUint32(at, false);
    if (key === this.#lastV4Key) return this.#lastV4;
    let value = this.#ipv4.get(key);
    if (value === undefined) {
      value = `${key >>> 24}.${(key >>> 16) & 0xff}.${(key >>> 8) & 0xff}.${key & 0xff}`;
      if (this.#ipv4.size >= CACHE_LIMIT) this.#ipv4.clear();
      this.#ipv4.set(key, value);
    }
    this.#lastV4Key = key;
    this.#lastV4 = value;
    return value;
  }

  #v6(view: DataView, at: number): string {
    const key = `${view.getUint32(at)},${view.getUint32(at + 4)},${view.getUint32(at + 8)},${
      view.getUint32(at + 12)
    }`;
    let value = this.#ipv6.get(key);
    if (value === undefined) {
      value = formatIPv6(this.#bytes(view), at);
      if (this.#ipv6.size >= CACHE_LIMIT) this.#ipv6.clear();
      this.#ipv6.set(key, value);
    }
    return value;
  }
}

interface CommEntry {
  w0: number;
  w1: number;
  w2: number;
  w3: number;
  value: string;
}

// Entries per cache before it starts over: bounds memory on a busy host.
const CACHE_LIMIT = 65536;

/** An event's time as nanoseconds since the Unix epoch. */
export function eventTimeNs(event: Pick<TcpEvent, "timeSec" | "timeNsec">): bigint {
  return BigInt(event.timeSec) * 1_000_000_000n + BigInt(event.timeNsec);
}

const utf8Decoder = new TextDecoder();

/**
 * The command name in the 16 bytes at `at`, up to its NUL, as UTF-8: an
 * invalid sequence (the kernel keeps 15 bytes, which may cut a character
 * in two) becomes U+FFFD. Called once per distinct name of a process.
 */
function decodeComm(bytes: Uint8Array, at: number): string {
  const limit = at + 16;
  let text = "";
  for (let i = at; i < limit; i++) {
    const c = bytes[i];
    if (c === 0) break;
    if (c >= 0x80) {
      let end = i;
      while (end < limit && bytes[end] !== 0) end++;
      // A copy: the ring's memory is the kernel's to reuse.
      return utf8Decoder.decode(bytes.slice(at, end));
    }
    text += String.fromCharCode(c);
  }
  return text;
}

function isZero(bytes: Uint8Array, at: number): boolean {
  for (let i = 0; i < 16; i++) if (bytes[at + i] !== 0) return false;
  return true;
}

function isV4Mapped(bytes: Uint8Array, at: number): boolean {
  for (let i = 0; i < 10; i++) if (bytes[at + i] !== 0) return false;
  return bytes[at + 10] === 0xff && bytes[at + 11] === 0xff;
}

/** Dotted quad of 4 bytes in network order. */
export function formatIPv4(bytes: Uint8Array, at = 0): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}`;
}

/**
 * RFC 5952 text of 16 bytes: lower case, leading zeros dropped, the first
 * longest run of two or more zero groups replaced by "::".
 */
export function formatIPv6(bytes: Uint8Array, at = 0): string {
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push((bytes[at + 2 * i] << 8) | bytes[at + 2 * i + 1]);
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]) => list.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}
