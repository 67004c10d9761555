/**
 * A reader of a BPF ring buffer (`BPF_MAP_TYPE_RINGBUF`) that maps the
 * buffer into this process and reads records straight from shared memory:
 * no system call and no FFI call per record, only one `poll()` when the
 * buffer is empty.
 *
 * Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (we
 * write it); page 1 the producer position; the data pages follow, mapped
 * twice in a row so a record that wraps around is still contiguous. Each
 * record has an 8-byte header: a u32 length with BUSY (not yet committed)
 * and DISCARD bits, and a u32 page offset; records are 8-byte aligned.
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
 * Reads records from a ring buffer map.
 *
 * @example
 * ```ts ignore
 * using reader = new RingBufferReader(object.map("events").fd, 8 << 20);
 * while (running) {
 *   if (reader.consume(handle) === 0) await reader.wait(100);
 * }
 * ```
 */
export class RingBufferReader {
  readonly #mapFd: number;
  readonly #size: number;
  readonly #pageSize: number;
  #consumerPage: Deno.PointerObject | null;
  #producerPages: Deno.PointerObject | null;
  readonly #consumerPos: BigUint64Array;
  readonly #producerPos: BigUint64Array;
  readonly #data: DataView;
  readonly #dataWords: Uint32Array;
  readonly #wakeFd: number;
  readonly #pollFds: Uint8Array<ArrayBuffer>;
  #waiting: Promise<number> | null = null;
  #closed = false;

  /**
   * @param mapFd file descriptor of the ring buffer map
   * @param size the map's max_entries: its data size, a power of two
   */
  constructor(mapFd: number, size: number) {
    const libc = openLibc();
    this.#mapFd = mapFd;
    this.#size = size;
    this.#pageSize = Deno.build.os === "linux" ? systemPageSize() : 4096;
    const consumer = libc.mmap(
      null,
      BigInt(this.#pageSize),
      PROT_READ | PROT_WRITE,
      MAP_SHARED,
      mapFd,
      0n,
    );
    if (mapFailed(consumer)) throw mmapError("consumer page", errno());
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
    this.#data = new DataView(data);
    this.#dataWords = new Uint32Array(data);
    this.#wakeFd = libc.eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (this.#wakeFd < 0) throw new TcpgadgetError(`eventfd: ${strerror(errno())}`);
    // struct pollfd { int fd; short events; short revents; } x 2
    this.#pollFds = new Uint8Array(16);
    const fds = new DataView(this.#pollFds.buffer);
    fds.setInt32(0, mapFd, true);
    fds.setInt16(4, POLLIN, true);
    fds.setInt32(8, this.#wakeFd, true);
    fds.setInt16(12, POLLIN, true);
  }

  /** Bytes committed by the kernel and not yet consumed. */
  get pending(): number {
    if (this.#closed) return 0;
    return Number(Atomics.load(this.#producerPos, 0) - Atomics.load(this.#consumerPos, 0));
  }

  /**
   * Hands every committed record to `handler`, then releases them to the
   * kernel. Returns the number of records read (discarded ones excluded).
   * `limit` bounds the bytes read in one call so the caller can interleave
   * other work.
   */
  consume(handler: RecordHandler, limit = Infinity): number {
    if (this.#closed) return 0;
    const mask = this.#size - 1;
    const data = this.#data;
    const words = this.#dataWords;
    const start = Number(Atomics.load(this.#consumerPos, 0));
    const producer = Number(Atomics.load(this.#producerPos, 0));
    const end = Math.min(producer, start + limit);
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
      position += (length + HEADER_SIZE + 7) & ~7;
    }
    if (position !== start) Atomics.store(this.#consumerPos, 0, BigInt(position));
    return count;
  }

  /**
   * Waits until the kernel wakes the reader, {@link interrupt} is called,
   * or `timeoutMs` passes. Returns false once interrupted.
   */
  async wait(timeoutMs: number): Promise<boolean> {
    if (this.#closed) return false;
    this.#waiting = openLibc().poll_async(this.#pollFds, 2n, timeoutMs);
    try {
      await this.#waiting;
    } finally {
      this.#waiting = null;
    }
    return !this.#interrupted();
  }

  #interrupted(): boolean {
    return (new DataView(this.#pollFds.buffer).getInt16(14, true) & POLLIN) !== 0;
  }

  /** Wakes a pending {@link wait} now; every later wait returns at once. */
  interrupt(): void {
    if (this.#closed) return;
    const one = new BigUint64Array([1n]);
    openLibc().write(this.#wakeFd, new Uint8Array(one.buffer), 8n);
  }

  /**
   * Unmaps the buffer. Waits for a pending {@link wait} (interrupting it)
   * so its worker thread never polls a closed descriptor.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#waiting) {
      this.interrupt();
      await this.#waiting.catch(() => {});
    }
    this.#closed = true;
    const libc = openLibc();
    libc.munmap(this.#consumerPage, BigInt(this.#pageSize));
    libc.munmap(this.#producerPages, BigInt(this.#pageSize + 2 * this.#size));
    libc.close(this.#wakeFd);
    this.#consumerPage = null;
    this.#producerPages = null;
    void this.#mapFd;
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
