/**
 * Buffered line output to a file descriptor (stdout), which notices when
 * the reader has gone away (`| head -3`) instead of throwing.
 *
 * @module
 */

import { openLibc } from "../core/libc.ts";

const POLLERR = 0x8;
const POLLHUP = 0x10;

/** Where bytes go; `Deno.stdout` fits. */
export interface SyncWriter {
  writeSync(data: Uint8Array): number;
}

/** Collects lines and writes them in large chunks. */
export class LineOutput {
  readonly #writer: SyncWriter;
  readonly #encoder = new TextEncoder();
  readonly #flushAt: number;
  // Lines are appended to one string and encoded in one call per flush:
  // per-line encoding costs several times more at high event rates.
  #pending = "";
  #buffer = new Uint8Array(256 * 1024);
  #closed = false;
  readonly #fd: number | undefined;

  /**
   * @param writer where to write
   * @param options `fd`: the descriptor behind `writer`, watched for the
   * reader going away while nothing is written; `flushAt`: buffered
   * characters that trigger a write
   */
  constructor(
    writer: SyncWriter = Deno.stdout,
    options: { fd?: number; flushAt?: number } = {},
  ) {
    this.#writer = writer;
    this.#fd = options.fd ?? (writer === Deno.stdout ? 1 : undefined);
    this.#flushAt = options.flushAt ?? 64 * 1024;
  }

  /** True once the reader closed the pipe; later lines are dropped. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a line (a newline is added). */
  line(text: string): void {
    if (this.#closed) return;
    this.#pending += `${text}\n`;
    if (this.#pending.length >= this.#flushAt) this.flush();
  }

  /** Writes everything queued. Returns false if the reader has gone. */
  flush(): boolean {
    if (this.#closed) return false;
    const text = this.#pending;
    if (text.length === 0) return true;
    this.#pending = "";
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    if (text.length * 3 > this.#buffer.length) this.#buffer = new Uint8Array(text.length * 3);
    // Flattening the concatenated string first makes encodeInto much faster.
    text.charCodeAt(0);
    const { written } = this.#encoder.encodeInto(text, this.#buffer);
    try {
      let offset = 0;
      while (offset < written) {
        offset += this.#writer.writeSync(this.#buffer.subarray(offset, written));
      }
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe) {
        this.#closed = true;
        return false;
      }
      throw error;
    }
    return true;
  }

  /**
   * Whether the reader has gone (closed pipe or socket, hung-up terminal),
   * checked without writing: a quiet tracer piped into `head` must still
   * notice that head has exited.
   */
  readerGone(): boolean {
    if (this.#closed) return true;
    if (this.#fd === undefined) return false;
    // struct pollfd { int fd; short events; short revents; }: errors are
    // always reported, whatever events asks for.
    const pollfd = new Uint8Array(8);
    new DataView(pollfd.buffer).setInt32(0, this.#fd, true);
    if (openLibc().poll(pollfd, 1n, 0) <= 0) return false;
    const revents = new DataView(pollfd.buffer).getInt16(6, true);
    if (revents & (POLLERR | POLLHUP)) this.#closed = true;
    return this.#closed;
  }
}
