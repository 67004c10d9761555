/**
 * Writing to stdout without ever blocking the main thread for long: a
 * write(2) that waits for a stalled reader would also hold off every
 * signal handler and timer (Ctrl-C took 9 s, SIGTERM 22 s). Writes are
 * still plain synchronous write(2) calls, as cheap as before, but on a
 * descriptor that never blocks; when the reader is behind, tcpgadget waits
 * for it a few milliseconds with poll() (a reader that is merely slower
 * for a moment catches up), then with poll() on another thread.
 *
 * @module
 */

import {
  EINTR,
  errno,
  O_CLOEXEC,
  O_NOCTTY,
  O_NONBLOCK,
  O_WRONLY,
  openLibc,
  strerror,
} from "../../core/libc.ts";
import { cString } from "../../core/libc.ts";
import { TcpgadgetError } from "../../core/errors.ts";

const EIO = 5;
const EAGAIN = 11;
const EPIPE = 32;
const ENXIO = 6;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const POLLHUP = 0x10;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;

/** Where a {@link LineOutput} writes. */
export interface ChunkWriter {
  /**
   * Writes what can be written of `data` now: returns the bytes written
   * (0 if none could be), or -1 once the reader has gone.
   */
  write(data: Uint8Array): number;
  /**
   * Waits on this thread, at most `timeoutMs` (kept short: nothing else
   * runs meanwhile), until a write may make progress; returns whether it may.
   */
  waitWritable(timeoutMs: number): boolean;
  /**
   * Resolves, with whether a write may make progress, when it may or after
   * `timeoutMs`; waits on another thread.
   */
  writable(timeoutMs: number): Promise<boolean>;
  /** Whether the reader has gone, checked without writing. */
  readerGone(): boolean;
  /** Releases what the writer opened. */
  close(): void;
}

/** How a descriptor is written without blocking. */
type Mode = "reopened" | "socket" | "blocking";

/**
 * Writes to a descriptor (stdout) without blocking:
 *
 * - a pipe, FIFO or terminal is opened again through /proc/self/fd: a new
 *   open file description of the same pipe or terminal, made non-blocking
 *   without changing the flags of the one shared with the shell and other
 *   processes;
 * - a socket is written with send(MSG_DONTWAIT);
 * - a regular file (or where /proc is missing) is written as it is: writes
 *   to a file do not wait for a reader.
 */
export class NonblockingWriter implements ChunkWriter {
  readonly #fd: number;
  readonly #mode: Mode;
  readonly #terminal: boolean;
  #gone = false;
  readonly #pollfd = new Uint8Array(8);
  #polling: Promise<unknown> | undefined;
  #closed = false;

  constructor(fd = 1) {
    const { fd: writeFd, mode, gone, terminal } = openNonblocking(fd);
    this.#fd = writeFd;
    this.#mode = mode;
    this.#terminal = terminal;
    this.#gone = gone;
    new DataView(this.#pollfd.buffer).setInt32(0, writeFd, true);
  }

  write(data: Uint8Array): number {
    if (this.#gone) return -1;
    const libc = openLibc();
    while (true) {
      const written = Number(
        this.#mode === "socket"
          ? libc.send(this.#fd, data, BigInt(data.length), MSG_DONTWAIT | MSG_NOSIGNAL)
          : libc.write(this.#fd, data, BigInt(data.length)),
      );
      if (written >= 0) return written;
      const error = errno();
      if (error === EINTR) continue;
      if (error === EAGAIN) return 0;
      // EIO from a terminal: it hung up.
      if (error === EPIPE || (error === EIO && this.#terminal)) {
        this.#gone = true;
        return -1;
      }
      throw new TcpgadgetError(`cannot write to stdout: ${strerror(error)}`);
    }
  }

  waitWritable(timeoutMs: number): boolean {
    if (this.#gone || this.#closed) return false;
    const pollfd = new Uint8Array(8);
    const view = new DataView(pollfd.buffer);
    view.setInt32(0, this.#fd, true);
    view.setInt16(4, POLLOUT, true);
    return openLibc().poll(pollfd, 1n, timeoutMs) > 0 && (view.getInt16(6, true) & POLLOUT) !== 0;
  }

  async writable(timeoutMs: number): Promise<boolean> {
    if (this.#gone || this.#closed || this.#polling) return false;
    const view = new DataView(this.#pollfd.buffer);
    view.setInt16(4, POLLOUT, true);
    view.setInt16(6, 0, true);
    const polling = openLibc().poll_async(this.#pollfd, 1n, timeoutMs);
    this.#polling = polling;
    try {
      return await polling > 0 && (view.getInt16(6, true) & POLLOUT) !== 0;
    } finally {
      this.#polling = undefined;
    }
  }

  readerGone(): boolean {
    if (this.#gone) return true;
    const pollfd = new Uint8Array(8);
    const view = new DataView(pollfd.buffer);
    view.setInt32(0, this.#fd, true);
    // Errors and hang-ups are always reported, whatever events asks for.
    if (openLibc().poll(pollfd, 1n, 0) > 0 && view.getInt16(6, true) & (POLLERR | POLLHUP)) {
      this.#gone = true;
    }
    return this.#gone;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#mode !== "reopened") return;
    // Never under a pending poll(): its thread would poll a closed (or reused) descriptor.
    const fd = this.#fd;
    const closeFd = () => openLibc().close(fd);
    if (this.#polling) this.#polling.then(closeFd, closeFd);
    else openLibc().close(fd);
  }
}

function openNonblocking(
  fd: number,
): { fd: number; mode: Mode; gone: boolean; terminal: boolean } {
  let info: Deno.FileInfo;
  try {
    info = Deno.statSync(`/proc/self/fd/${fd}`);
  } catch {
    return { fd, mode: "blocking", gone: false, terminal: false };
  }
  const terminal = info.isCharDevice === true;
  if (info.isSocket) return { fd, mode: "socket", gone: false, terminal };
  if (!info.isFifo && !terminal) return { fd, mode: "blocking", gone: false, terminal };
  const reopened = openLibc().open(
    cString(`/proc/self/fd/${fd}`),
    O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC,
  );
  if (reopened >= 0) return { fd: reopened, mode: "reopened", gone: false, terminal };
  // A pipe whose reader has already gone cannot be opened for writing.
  const gone = errno() === ENXIO && info.isFifo === true;
  return { fd, mode: "blocking", gone, terminal };
}

/**
 * A {@link ChunkWriter} over a synchronous writer (`Deno.stdout`-like),
 * for tests and embedders: it blocks as its writer does.
 */
export class SyncChunkWriter implements ChunkWriter {
  readonly #writer: { writeSync(data: Uint8Array): number };
  #gone = false;

  constructor(writer: { writeSync(data: Uint8Array): number }) {
    this.#writer = writer;
  }

  write(data: Uint8Array): number {
    if (this.#gone) return -1;
    try {
      return this.#writer.writeSync(data);
    } catch (error) {
      if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
      this.#gone = true;
      return -1;
    }
  }

  waitWritable(): boolean {
    return true;
  }

  writable(): Promise<boolean> {
    return Promise.resolve(true);
  }

  readerGone(): boolean {
    return this.#gone;
  }

  close(): void {}
}
