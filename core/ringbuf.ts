/**
 * Readers of BPF ring buffers (`BPF_MAP_TYPE_RINGBUF`) that map the buffers
 * into this process and read records straight from shared memory: no
 * system call and no FFI call per record, only one `poll()` when every
 * buffer is empty.
 *
 * Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (we
 * write it); page 1 the producer position; the data pages follow, mapped
 * twice in a row so a record that wraps around is still contiguous. Each
 * record has an 8-byte header: a u32 length with BUSY (not yet committed)
 * and DISCARD bits, and a u32 page offset; records are 8-byte aligned.
 *
 * {@link RingBufferReader} maps one ring; {@link MergedRingBuffers} reads
 * one ring per CPU as a single stream in timestamp order.
 *
 * @module
 */

import {
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  errno,
  MAP_SHARED,
  mapFailed,
  openLibc,
  POLLIN,
  PROT_READ,
  PROT_WRITE,
  strerror,
} from "./libc.ts";
import { TcpgadgetError } from "./errors.ts";

const BUSY_BIT = 0x8000_0000;
const DISCARD_BIT = 0x4000_0000;
const HEADER_SIZE = 8;

/**
 * Called for each record with a view of the shared data region and the
 * record's byte offset and length in it. The bytes are only valid during
 * the call: they are handed back to the kernel after the batch.
 */
export type RecordHandler = (data: DataView, offset: number, length: number) => void;

/**
 * A ring's memory and positions, as {@link MergedRingBuffers} reads them:
 * a {@link RingBufferReader}, or (in tests) rings built in memory.
 */
export interface RingSource {
  /** A descriptor that poll() reports readable while records wait. */
  readonly fd: number;
  /** The data size, a power of two. */
  readonly size: number;
  /** The data pages (twice in a row), as bytes and as u32 words. */
  readonly data: DataView;
  readonly words: Uint32Array;
  /** Where the next record to read starts; set to hand records back. */
  consumerPosition: number;
  /** Where the kernel's next reservation starts. */
  readonly producerPosition: number;
  /** Bytes reserved and not yet consumed. */
  readonly pending: number;
  close(): void;
}

/**
 * One ring buffer map, mapped into this process.
 *
 * @example
 * ```ts ignore
 * const reader = new RingBufferReader(ringFd, 1 << 20); // now owns ringFd
 * reader.consume((data, offset, length) => console.log(offset, length));
 * reader.close();
 * ```
 */
export class RingBufferReader implements RingSource {
  /** The map's file descriptor, owned: closed with the reader. */
  readonly fd: number;
  /** The data size, a power of two. */
  readonly size: number;
  readonly #pageSize: number;
  #consumerPage: Deno.PointerObject | null;
  #producerPages: Deno.PointerObject | null;
  readonly #consumerPos: BigUint64Array;
  readonly #producerPos: BigUint64Array;
  /** The data pages (twice), as bytes and as u32 words. */
  readonly data: DataView;
  readonly words: Uint32Array;
  #closed = false;

  /**
   * @param mapFd file descriptor of the ring buffer map; the reader owns it,
   * and closes it even if mapping fails
   * @param size the map's max_entries: its data size, a power of two
   */
  constructor(mapFd: number, size: number) {
    const libc = openLibc();
    this.fd = mapFd;
    this.size = size;
    this.#pageSize = Deno.build.os === "linux" ? systemPageSize() : 4096;
    const consumer = libc.mmap(
      null,
      BigInt(this.#pageSize),
      PROT_READ | PROT_WRITE,
      MAP_SHARED,
      mapFd,
      0n,
    );
    if (mapFailed(consumer)) {
      const err = errno();
      libc.close(mapFd);
      throw mmapError("consumer page", err);
    }
    const producerLength = this.#pageSize + 2 * size;
    const producer = libc.mmap(
      null,
      BigInt(producerLength),
      PROT_READ,
      MAP_SHARED,
      mapFd,
      BigInt(this.#pageSize),
    );
    if (mapFailed(producer)) {
      const err = errno();
      libc.munmap(consumer, BigInt(this.#pageSize));
      libc.close(mapFd);
      throw mmapError("data pages", err);
    }
    this.#consumerPage = consumer;
    this.#producerPages = producer;
    this.#consumerPos = new BigUint64Array(
      Deno.UnsafePointerView.getArrayBuffer(consumer!, 8),
    );
    this.#producerPos = new BigUint64Array(
      Deno.UnsafePointerView.getArrayBuffer(producer!, 8),
    );
    const data = Deno.UnsafePointerView.getArrayBuffer(producer!, 2 * size, this.#pageSize);
    this.data = new DataView(data);
    this.words = new Uint32Array(data);
  }

  /** Where the next record to read starts (a byte count since the ring was made). */
  get consumerPosition(): number {
    return this.#closed ? 0 : Number(Atomics.load(this.#consumerPos, 0));
  }

  /** Hands the records before `position` back to the kernel. */
  set consumerPosition(position: number) {
    if (!this.#closed) Atomics.store(this.#consumerPos, 0, BigInt(position));
  }

  /** Where the kernel's next reservation starts; records before it are written or busy. */
  get producerPosition(): number {
    return this.#closed ? 0 : Number(Atomics.load(this.#producerPos, 0));
  }

  /** Bytes reserved by the kernel and not yet consumed. */
  get pending(): number {
    return this.producerPosition - this.consumerPosition;
  }

  /**
   * Hands every committed record to `handler`, then releases them to the
   * kernel. Returns the number of records read (discarded ones excluded).
   */
  consume(handler: RecordHandler): number {
    if (this.#closed) return 0;
    const mask = this.size - 1;
    const { data, words } = this;
    const start = this.consumerPosition;
    const end = this.producerPosition;
    let position = start;
    let count = 0;
    while (position < end) {
      const offset = position & mask;
      const header = Atomics.load(words, offset >>> 2) >>> 0;
      if (header & BUSY_BIT) break;
      const length = header & ~(BUSY_BIT | DISCARD_BIT);
      if (!(header & DISCARD_BIT)) {
        handler(data, offset + HEADER_SIZE, length);
        count++;
      }
      position += recordSpan(length);
    }
    if (position !== start) this.consumerPosition = position;
    return count;
  }

  /** Unmaps the buffer and closes the map's descriptor. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const libc = openLibc();
    libc.munmap(this.#consumerPage, BigInt(this.#pageSize));
    libc.munmap(this.#producerPages, BigInt(this.#pageSize + 2 * this.size));
    libc.close(this.fd);
    this.#consumerPage = null;
    this.#producerPages = null;
  }
}

/** Bytes a record of `length` takes in the ring: header, data, 8-byte alignment. */
function recordSpan(length: number): number {
  return (length + HEADER_SIZE + 7) & ~7;
}

/** Options of {@link MergedRingBuffers}. */
export interface MergeOptions {
  /**
   * Where each record holds its time: the byte offset of a little-endian
   * u64 in the record, on the clock of {@link now}. Records are handed out
   * in this order.
   */
  timeOffset: number;
  /** The present time on the records' clock. */
  now(): number;
}

/**
 * Rings of one producer per CPU, read as one stream: each call of
 * {@link consume} hands out the committed records of every ring in time
 * order (each ring is in order already; the heads are compared).
 *
 * Only records stamped before the call started are handed out: a record
 * committed on one CPU after its ring was looked at could otherwise come
 * after a later record of another CPU that was read, such as a connect
 * after the close of the same connection. A record stamped before the
 * call was committed before its stamp's later effects happened, so what
 * a reader sees is never missing an earlier cause.
 *
 * @example
 * ```ts ignore
 * const rings = new MergedRingBuffers(readers, { timeOffset: 0, now });
 * while (running) {
 *   if (rings.consume(handle) === 0) await rings.wait(100);
 * }
 * await rings.close();
 * ```
 */
export class MergedRingBuffers {
  readonly #readers: readonly RingSource[];
  // Per ring, during consume(): the next record's position, the end of
  // what was committed, and the next record's time, offset and length.
  // Typed arrays: positions and times outgrow small integers, and a
  // double stored in an object field would be boxed.
  readonly #position: Float64Array;
  readonly #end: Float64Array;
  readonly #time: Float64Array;
  readonly #offset: Int32Array;
  readonly #length: Int32Array;
  // Rings with a record to hand out, by index.
  readonly #active: Int32Array;
  readonly #timeWord: number;
  readonly #now: () => number;
  readonly #wakeFd: number;
  readonly #pollFds: Uint8Array<ArrayBuffer>;
  #waiting: Promise<number> | null = null;
  #closed = false;

  /** Takes ownership of `readers` (closed with this). */
  constructor(readers: readonly RingSource[], options: MergeOptions) {
    if (readers.length === 0) throw new TcpgadgetError("no ring buffer to read");
    if ((HEADER_SIZE + options.timeOffset) % 4 !== 0) {
      throw new TcpgadgetError(`time offset ${options.timeOffset} is not 4-byte aligned`);
    }
    const count = readers.length;
    this.#readers = readers;
    this.#position = new Float64Array(count);
    this.#end = new Float64Array(count);
    this.#time = new Float64Array(count);
    this.#offset = new Int32Array(count);
    this.#length = new Int32Array(count);
    this.#active = new Int32Array(count);
    this.#timeWord = (HEADER_SIZE + options.timeOffset) >>> 2;
    this.#now = options.now;
    const libc = openLibc();
    this.#wakeFd = libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.#wakeFd < 0) throw new TcpgadgetError(`eventfd: ${strerror(errno())}`);
    // struct pollfd { int fd; short events; short revents; }: the rings,
    // then the eventfd that interrupt() writes.
    this.#pollFds = new Uint8Array(8 * (count + 1));
    const fds = new DataView(this.#pollFds.buffer);
    [...readers.map((reader) => reader.fd), this.#wakeFd].forEach((fd, i) => {
      fds.setInt32(8 * i, fd, true);
      fds.setInt16(8 * i + 4, POLLIN, true);
    });
  }

  /** Bytes reserved by the kernel and not yet consumed, over all rings. */
  get pending(): number {
    return this.#readers.reduce((sum, reader) => sum + reader.pending, 0);
  }

  /**
   * Hands every committed record stamped before now to `handler`, oldest
   * first, then releases them to the kernel. Returns how many were read.
   */
  consume(handler: RecordHandler): number {
    if (this.#closed) return 0;
    // The time first, the positions after: see the class comment.
    const cutoff = this.#now();
    const readers = this.#readers;
    const active = this.#active;
    const time = this.#time;
    let activeCount = 0;
    for (let ring = 0; ring < readers.length; ring++) {
      this.#position[ring] = readers[ring].consumerPosition;
      this.#end[ring] = readers[ring].producerPosition;
      if (this.#advance(ring, cutoff)) active[activeCount++] = ring;
    }
    let count = 0;
    while (activeCount > 0) {
      let slot = 0;
      for (let i = 1; i < activeCount; i++) {
        if (time[active[i]] < time[active[slot]]) slot = i;
      }
      const ring = active[slot];
      handler(readers[ring].data, this.#offset[ring], this.#length[ring]);
      count++;
      this.#position[ring] += recordSpan(this.#length[ring]);
      if (!this.#advance(ring, cutoff)) active[slot] = active[--activeCount];
    }
    return count;
  }

  /**
   * Moves a ring's cursor to its next record to hand out, skipping
   * discarded ones. False (the ring done for this call, its records
   * released) at the end, at a record still being written, or at one
   * stamped after `cutoff`.
   */
  #advance(ring: number, cutoff: number): boolean {
    const reader = this.#readers[ring];
    const words = reader.words;
    const mask = reader.size - 1;
    let position = this.#position[ring];
    const end = this.#end[ring];
    while (position < end) {
      const offset = position & mask;
      const word = offset >>> 2;
      const header = Atomics.load(words, word) >>> 0;
      if (header & BUSY_BIT) break;
      const length = header & ~(BUSY_BIT | DISCARD_BIT);
      if (header & DISCARD_BIT) {
        position += recordSpan(length);
        continue;
      }
      const at = word + this.#timeWord;
      const stamp = words[at + 1] * 4294967296 + words[at];
      if (stamp > cutoff) break;
      this.#position[ring] = position;
      this.#time[ring] = stamp;
      this.#offset[ring] = offset + HEADER_SIZE;
      this.#length[ring] = length;
      return true;
    }
    this.#position[ring] = position;
    reader.consumerPosition = position;
    return false;
  }

  /**
   * Waits until the kernel wakes the reader, {@link interrupt} is called,
   * or `timeoutMs` passes. Returns false once interrupted.
   */
  async wait(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return false;
    this.#waiting = openLibc().poll_async(
      this.#pollFds,
      BigInt(this.#readers.length + 1),
      timeoutMs,
    );
    try {
      await this.#waiting;
    } finally {
      this.#waiting = null;
    }
    return !this.#interrupted();
  }

  #interrupted(): boolean {
    const revents = 8 * this.#readers.length + 6;
    return (new DataView(this.#pollFds.buffer).getInt16(revents, true) & POLLIN) !== 0;
  }

  /** Wakes a pending {@link wait} now; every later wait returns at once. */
  interrupt(): void {
    if (this.#closed) return;
    const one = new BigUint64Array([1n]);
    openLibc().write(this.#wakeFd, new Uint8Array(one.buffer), 8n);
  }

  /**
   * Unmaps the rings. Waits for a pending {@link wait} (interrupting it)
   * so its worker thread never polls a closed descriptor.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#waiting) {
      this.interrupt();
      await this.#waiting.catch(() => {});
    }
    this.#closed = true;
    for (const reader of this.#readers) reader.close();
    openLibc().close(this.#wakeFd);
  }
}

function mmapError(what: string, err: number): TcpgadgetError {
  return new TcpgadgetError(`cannot map the ring buffer's ${what}: ${strerror(err)}`);
}

let pageSize: number | undefined;

function systemPageSize(): number {
  // sysconf(_SC_PAGESIZE) without another symbol: the kernel's auxv says it.
  if (pageSize) return pageSize;
  try {
    const auxv = Deno.readFileSync("/proc/self/auxv");
    const view = new DataView(auxv.buffer);
    for (let i = 0; i + 16 <= auxv.length; i += 16) {
      if (view.getBigUint64(i, true) === 6n /* AT_PAGESZ */) {
        pageSize = Number(view.getBigUint64(i + 8, true));
        return pageSize;
      }
    }
  } catch {
    // fall through
  }
  pageSize = 4096;
  return pageSize;
}
