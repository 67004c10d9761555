/**
 * Buffered line output to a file descriptor (stdout), which notices when
 * the reader has gone away (`| head -3`) instead of throwing.
 *
 * @module
 */

import { errno, openLibc, strerror } from "../../core/libc.ts";
import { TcpgadgetError } from "../../core/errors.ts";
import { LineBuffer } from "./line_buffer.ts";

const STDOUT = 1;
const POLLOUT = 0x4;
const POLLERR = 0x8;
const EINTR = 4;
const EAGAIN = 11;
const EPIPE = 32;
const POLLHUP = 0x10;

/** Where bytes go; `Deno.stdout` fits. */
export interface SyncWriter {
  writeSync(data: Uint8Array): number;
}

/** Collects lines and writes them in large chunks. */
export class LineOutput {
  readonly #writer: SyncWriter;
  readonly #flushAt: number;
  /** Where formatters write lines; {@link flushIfFull} after each line. */
  readonly buffer = new LineBuffer();
  #closed = false;
  readonly #fd: number | undefined;

  /**
   * @param writer where to write
   * @param options `fd`: the descriptor behind `writer`, watched for the
   * reader going away while nothing is written; `flushAt`: buffered
   * bytes that trigger a write
   */
  constructor(
    writer: SyncWriter = Deno.stdout,
    options: { fd?: number; flushAt?: number } = {},
  ) {
    this.#writer = writer;
    this.#fd = options.fd ?? (writer === Deno.stdout ? 1 : undefined);
    this.#flushAt = options.flushAt ?? 256 * 1024;
    if (writer === Deno.stdout) growPipe(STDOUT);
  }

  /** True once the reader closed the pipe; later lines are dropped. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a line (a newline is added). */
  line(text: string): void {
    if (this.#closed) return;
    this.buffer.text(text);
    this.buffer.newline();
    this.flushIfFull();
  }

  /** Writes what is queued once it is a chunk worth a system call. */
  flushIfFull(): void {
    if (this.buffer.length >= this.#flushAt) this.flush();
  }

  /** Writes everything queued. Returns false if the reader has gone. */
  flush(): boolean {
    const buffer = this.buffer;
    if (this.#closed) {
      buffer.clear();
      return false;
    }
    if (buffer.length === 0) return true;
    const data = buffer.data;
    const end = buffer.length;
    buffer.clear();
    if (this.#writer === Deno.stdout) return this.#writeStdout(data, end);
    try {
      let offset = 0;
      while (offset < end) offset += this.#writer.writeSync(data.subarray(offset, end));
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe) {
        this.#closed = true;
        return false;
      }
      throw error;
    }
    return true;
  }

  // write(2) straight from the buffer: Deno.stdout.writeSync copies it
  // first, which costs as much as the rest of writing a chunk.
  #writeStdout(data: Uint8Array, end: number): boolean {
    const libc = openLibc();
    let offset = 0;
    while (offset < end) {
      const chunk = offset === 0 ? data : data.subarray(offset);
      const written = Number(libc.write(STDOUT, chunk, BigInt(end - offset)));
      if (written >= 0) {
        offset += written;
        continue;
      }
      const error = errno();
      if (error === EINTR) continue;
      if (error === EAGAIN) {
        // stdout was left non-blocking (by a shell or a parent): wait.
        this.#poll(POLLOUT, -1);
        continue;
      }
      if (error === EPIPE) {
        this.#closed = true;
        return false;
      }
      throw new TcpgadgetError(`cannot write to stdout: ${strerror(error)}`);
    }
    return true;
  }

  // poll() of the output descriptor; returns revents.
  #poll(events: number, timeoutMs: number): number {
    const pollfd = new Uint8Array(8);
    const view = new DataView(pollfd.buffer);
    view.setInt32(0, this.#fd ?? STDOUT, true);
    view.setInt16(4, events, true);
    if (openLibc().poll(pollfd, 1n, timeoutMs) <= 0) return 0;
    return view.getInt16(6, true);
  }

  /**
   * Whether the reader has gone (closed pipe or socket, hung-up terminal),
   * checked without writing: a quiet tracer piped into `head` must still
   * notice that head has exited.
   */
  readerGone(): boolean {
    if (this.#closed) return true;
    if (this.#fd === undefined) return false;
    // Errors are always reported, whatever events asks for.
    if (this.#poll(0, 0) & (POLLERR | POLLHUP)) this.#closed = true;
    return this.#closed;
  }
}

const F_SETPIPE_SZ = 1031;
const F_GETPIPE_SZ = 1032;
const PIPE_BYTES = 1024 * 1024;

/**
 * Grows a pipe to 1 MiB (the most an unprivileged process may ask for by
 * default), if `fd` is one: at high event rates a 64 KiB pipe makes the
 * writer and the reader wake each other for every 64 KiB. Nothing happens
 * to anything else (a terminal, a file) or if the system refuses.
 */
function growPipe(fd: number): void {
  const libc = openLibc();
  const size = libc.fcntl(fd, F_GETPIPE_SZ, 0);
  if (size > 0 && size < PIPE_BYTES) libc.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES);
}
