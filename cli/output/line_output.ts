/**
 * Buffered line output to stdout that never blocks the main thread: lines
 * are formatted into one buffer while the other is written, a reader that
 * falls behind holds the producer back (backpressure) instead of the
 * process, and a stop never waits for a stalled reader for long: what is
 * not written by then is counted. It notices when the reader has gone away
 * (`| head -3`) instead of throwing.
 *
 * @module
 */

import { LineBuffer } from "./line_buffer.ts";
import { type ChunkWriter, NonblockingWriter, SyncChunkWriter } from "./nonblocking_writer.ts";
import { openLibc } from "../../core/libc.ts";

/** Where bytes go synchronously; `Deno.stdout` fits. */
export interface SyncWriter {
  writeSync(data: Uint8Array): number;
}

// How long a wait for a stalled reader lasts before it is checked again
// (whether to give up, whether the reader has gone).
const WAIT_SLICE_MS = 100;
// How long a write waits for the reader on the main thread, at most, before
// it waits on another thread: a reader that is only slower for a moment
// (the benchmark's, `cat`) catches up within it, and lines do not pile up
// in memory meanwhile (without it, 1 write in 10 went on waiting, and
// the buffer grew to 3 MB: peak RSS +11 to +31 MiB); a signal waits no
// longer than this.
const WRITE_WAIT_MS = 20;

/** Lines in a buffer, and where each event's line ends. */
class Chunk {
  readonly buffer: LineBuffer;
  ends = new Uint32Array(1024);
  events = 0;
  /** The end of the last whole line (an event's or another). */
  committed = 0;

  constructor(capacity: number) {
    this.buffer = new LineBuffer(capacity);
  }

  endEvent(): void {
    if (this.events === this.ends.length) {
      const grown = new Uint32Array(this.ends.length * 2);
      grown.set(this.ends);
      this.ends = grown;
    }
    this.ends[this.events++] = this.committed = this.buffer.length;
  }

  /** Events whose lines end after `offset`: not (entirely) written. */
  eventsAfter(offset: number): number {
    let count = 0;
    for (let i = this.events - 1; i >= 0 && this.ends[i] > offset; i--) count++;
    return count;
  }

  clear(): void {
    this.buffer.clear();
    this.events = 0;
    this.committed = 0;
  }
}

/**
 * Collects lines and writes them in large chunks.
 *
 * @example
 * ```ts
 * import { LineOutput } from "./line_output.ts";
 * import assert from "node:assert/strict";
 * const chunks: string[] = [];
 * const output = new LineOutput({
 *   writeSync: (data) => (chunks.push(new TextDecoder().decode(data)), data.length),
 * });
 * output.line("HEADER");
 * output.buffer.text("event 1\n");
 * output.endEvent();
 * output.flush();
 * assert.deepEqual(chunks, ["HEADER\nevent 1\n"]);
 * assert.equal(await output.finish(0), 0);
 * ```
 */
export class LineOutput {
  readonly #writer: ChunkWriter;
  readonly #flushAt: number;
  readonly #limit: number;
  // Lines are formatted into #fill while #out (if any) is written; #spare
  // is the other buffer when nothing is being written.
  #fill: Chunk;
  #spare: Chunk | undefined;
  #out: Chunk | undefined;
  #offset = 0;
  #pumping = false;
  #abandoned = false;
  #closed = false;
  #failure: unknown;
  #dropped = 0;
  #waiters: (() => void)[] = [];

  /**
   * @param writer where to write: stdout (the default) is written without
   * ever blocking; another writer is written as it writes
   * @param options `flushAt`: buffered bytes that start a write; `limit`:
   * bytes buffered while a write waits for the reader beyond which events
   * are dropped, and counted (default: no limit; the producer is expected
   * to wait while {@link backlogged})
   */
  constructor(
    writer: SyncWriter | ChunkWriter = Deno.stdout,
    options: { flushAt?: number; limit?: number } = {},
  ) {
    if (writer === Deno.stdout) {
      growPipe(1);
      this.#writer = new NonblockingWriter(1);
    } else {
      this.#writer = "writeSync" in writer ? new SyncChunkWriter(writer) : writer;
    }
    this.#flushAt = options.flushAt ?? 256 * 1024;
    this.#limit = options.limit ?? Infinity;
    this.#fill = new Chunk(this.#flushAt);
    this.#spare = new Chunk(this.#flushAt);
  }

  /** Where formatters write lines; {@link endEvent} after each event's. */
  get buffer(): LineBuffer {
    return this.#fill.buffer;
  }

  /** True once the reader closed the pipe; later lines are dropped. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * True while a write waits for the reader and the next chunk is ready:
   * the producer should wait ({@link ready}) rather than queue more.
   */
  get backlogged(): boolean {
    return this.#out !== undefined && this.#fill.buffer.length >= this.#flushAt;
  }

  /** Queues a line that is not an event (a header); a newline is added. */
  line(text: string): void {
    if (this.#closed) return;
    this.buffer.text(text);
    this.buffer.newline();
    this.#fill.committed = this.buffer.length;
    this.flushIfFull();
  }

  /**
   * Queues an event's line, already formatted (a newline is added),
   * whatever the limit: such lines were bounded before they came here.
   */
  eventLine(text: string): void {
    if (this.#closed) return;
    this.buffer.text(text);
    this.buffer.newline();
    this.#fill.endEvent();
    this.flushIfFull();
  }

  /**
   * Marks the end of an event's line(s), written into {@link buffer}. Past
   * the limit, while a write waits for the reader, the event is taken back
   * and counted as not written.
   */
  endEvent(): void {
    const fill = this.#fill;
    // One comparison for every event; the rest once a chunk is full.
    if (fill.buffer.length < this.#flushAt) return fill.endEvent();
    if (this.#out !== undefined && fill.buffer.length > this.#limit) {
      fill.buffer.truncate(fill.committed);
      this.#dropped++;
      return;
    }
    fill.endEvent();
    if (this.#out === undefined) this.flush();
  }

  /** Starts a write once what is queued is a chunk worth a system call. */
  flushIfFull(): void {
    if (this.#fill.buffer.length >= this.#flushAt) this.flush();
  }

  /**
   * Starts writing what is queued, unless a write is under way (it goes
   * on to what is queued when it ends). Returns false if the reader has gone.
   */
  flush(): boolean {
    if (this.#failure !== undefined) throw this.#failure;
    if (this.#closed) {
      this.#fill.clear();
      return false;
    }
    if (this.#out === undefined && this.#fill.buffer.length > 0) {
      this.#out = this.#fill;
      this.#offset = 0;
      this.#fill = this.#spare!;
      this.#spare = undefined;
      this.#write();
    }
    return !this.#closed;
  }

  /** Resolves once the output is not {@link backlogged}, the reader has gone, or `signal` aborts. */
  async ready(signal: AbortSignal): Promise<void> {
    while (this.backlogged && !this.#closed && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          signal.removeEventListener("abort", done);
          resolve();
        };
        this.#waiters.push(done);
        signal.addEventListener("abort", done);
      });
    }
    if (this.#failure !== undefined) throw this.#failure;
  }

  /**
   * Writes everything queued, waiting for the reader at most `graceMs`,
   * and returns how many events were not written (dropped, or still queued
   * then; those of a write the reader never took count as not written).
   * Nothing more is written afterwards.
   */
  async finish(graceMs: number): Promise<number> {
    const deadline = performance.now() + graceMs;
    while (!this.#closed) {
      this.flush();
      if (this.#out === undefined) {
        if (this.#fill.buffer.length === 0) break;
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.#abandoned = true;
    const pending = this.#out?.eventsAfter(this.#offset) ?? 0;
    return this.#dropped + pending + this.#fill.events;
  }

  /**
   * Whether the reader has gone (closed pipe or socket, hung-up terminal),
   * checked without writing: a quiet tracer piped into `head` must still
   * notice that head has exited.
   */
  readerGone(): boolean {
    if (!this.#closed && this.#writer.readerGone()) this.#setClosed();
    return this.#closed;
  }

  /** Releases the descriptor the output opened. */
  close(): void {
    this.#abandoned = true;
    this.#writer.close();
  }

  // Writes #out as far as the reader takes it, waiting for it at most
  // `waitMs` here; then on another thread for the rest.
  #write(waitMs = WRITE_WAIT_MS): void {
    const out = this.#out!;
    const end = out.buffer.length;
    let waited = 0;
    while (this.#offset < end) {
      const written = this.#writer.write(out.buffer.data.subarray(this.#offset, end));
      if (written < 0) return this.#setClosed();
      if (written === 0) {
        const started = performance.now();
        if (waited >= waitMs || !this.#writer.waitWritable(Math.ceil(waitMs - waited))) {
          return this.#pump();
        }
        waited += performance.now() - started;
        continue;
      }
      this.#offset += written;
    }
    this.#out = undefined;
    out.clear();
    // A buffer that grew while the reader was behind is not kept.
    this.#spare = out.buffer.data.length > 4 * this.#flushAt ? new Chunk(this.#flushAt) : out;
    if (this.#fill.buffer.length >= this.#flushAt) this.flush();
    this.#notify();
  }

  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    (async () => {
      try {
        while (this.#out !== undefined && !this.#closed && !this.#abandoned) {
          const writable = await this.#writer.writable(WAIT_SLICE_MS);
          if (this.#abandoned) break;
          // The reader may have gone while this waited.
          if (this.#writer.readerGone()) this.#setClosed();
          else if (writable) this.#write(0);
        }
      } catch (error) {
        this.#failure = error;
        this.#setClosed();
      } finally {
        this.#pumping = false;
      }
    })();
  }

  #setClosed(): void {
    this.#closed = true;
    this.#notify();
  }

  #notify(): void {
    for (const waiter of this.#waiters.splice(0)) waiter();
  }
}

/**
 * The warning for events queued for stdout that were never written.
 *
 * @example
 * ```ts
 * import { notWritten } from "./line_output.ts";
 * import assert from "node:assert/strict";
 * assert.equal(notWritten(3), "3 events not written (the reader of stdout did not keep up)");
 * ```
 */
export function notWritten(events: number): string {
  return `${events} event${
    events === 1 ? "" : "s"
  } not written (the reader of stdout did not keep up)`;
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
