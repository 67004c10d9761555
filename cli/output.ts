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
  #pending: string[] = [];
  #pendingLength = 0;
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

  /** True once the reader closed the pipe; later lines are dropped. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Queues a line (a newline is added). */
  line(text: string): void {
    if (this.#closed) return;
    this.#pending.push(text);
    this.#pendingLength += text.length + 1;
    if (this.#pendingLength >= this.#flushAt) this.flush();
  }

  /** Writes everything queued. Returns false if the reader has gone. */
  flush(): boolean {
    if (this.#closed) return false;
    if (this.#pending.length === 0) return true;
    const bytes = this.#encoder.encode(this.#pending.join("\n") + "\n");
    this.#pending = [];
    this.#pendingLength = 0;
    try {
      let written = 0;
      while (written < bytes.length) written += this.#writer.writeSync(bytes.subarray(written));
    } catch (error) {
      if (error instanceof Deno.errors.BrokenPipe) {
        this.#closed = true;
        return false;
      }
      throw error;
    }
    return true;
  }
}
