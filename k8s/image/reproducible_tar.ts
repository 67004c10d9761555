/**
 * A tar written so that the same files give the same bytes: every entry
 * owned by 0:0 (root), dated 1970-01-01 (SOURCE_DATE_EPOCH=0), in the
 * order given (callers sort), with modes given rather than read from this
 * machine. Files are streamed from disk in 1 MiB chunks, never held whole
 * (the Deno executable is 96 MB). The tar format is tar-stream's (ustar).
 *
 * @module
 */

import fs from "node:fs";
import { Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import tarStream from "tar-stream";
import { errorLine, TcpgadgetError } from "../../core/errors.ts";

/** The time of every entry: the epoch, as SOURCE_DATE_EPOCH=0 gives. */
export const TAR_EPOCH: Date = new Date(0);

/** What tar-stream takes an entry's bytes through (a streamx Writable). */
type EntrySink = ReturnType<ReturnType<typeof tarStream.pack>["entry"]>;

/** Entry names tar-stream writes in a plain ustar header (longer ones need PAX). */
const MAX_NAME = 100;

/**
 * A tar being written through `streams` (transforms, then the
 * destination). Entries are added one at a time, in order; `close` ends
 * the tar and waits until the destination has it all.
 *
 * @example
 * ```ts
 * import { ReproducibleTar } from "./reproducible_tar.ts";
 * import { Writable } from "node:stream";
 * import assert from "node:assert/strict";
 * const chunks: Uint8Array[] = [];
 * const sink = new Writable({ write: (chunk, _e, done) => (chunks.push(chunk), done()) });
 * const tar = new ReproducibleTar([sink], { what: "a test tar" });
 * await tar.directory("etc/");
 * await tar.bytes("etc/hostname", new TextEncoder().encode("agent\n"), 0o644);
 * await tar.close();
 * const bytes = new Uint8Array(chunks.flatMap((chunk) => [...chunk]));
 * // Two headers, one block of data, two blocks of end.
 * assert.equal(bytes.length, 5 * 512);
 * assert.equal(new TextDecoder().decode(bytes.subarray(512, 524)), "etc/hostname");
 * assert.equal(new TextDecoder().decode(bytes.subarray(512 + 136, 512 + 147)), "00000000000"); // mtime
 * ```
 */
export class ReproducibleTar {
  readonly #pack = tarStream.pack();
  readonly #written: Promise<void>;
  readonly #what: string;
  #failure: unknown;

  /**
   * Starts writing through `streams`; aborting `signal` stops it (entries
   * and close reject). A failure of the system (a full disk, an unreadable
   * file) is reported as a TcpgadgetError saying it happened writing `what`.
   */
  constructor(streams: Writable[], options: { what: string; signal?: AbortSignal }) {
    const { what, signal } = options;
    this.#what = what;
    // Its failures reach us through the pipeline; an 'error' event nobody
    // listens to would be thrown instead (an abort did).
    this.#pack.on("error", () => {});
    this.#written = pipeline([Readable.from(this.#pack), ...streams], { signal })
      .catch((error) => {
        throw this.#described(error);
      });
    this.#written.catch((error) => {
      this.#failure = error;
      this.#pack.destroy(error);
    });
  }

  /** Adds a directory (`name` ends with "/"). */
  async directory(name: string, mode = 0o755): Promise<void> {
    if (!name.endsWith("/")) throw new Error(`directory entry "${name}" must end with /`);
    await this.#entry({ name, mode, type: "directory" }, async () => {});
  }

  /** Adds a file of these bytes. */
  async bytes(name: string, data: Uint8Array, mode = 0o644): Promise<void> {
    await this.#entry({ name, mode, type: "file", size: data.byteLength }, async (sink) => {
      await write(sink, data);
    });
  }

  /** Adds a file with the content of `source` here, streamed. */
  async file(name: string, source: string, mode = 0o644): Promise<void> {
    const { size } = await Deno.stat(source).catch((error) => {
      throw this.#described(error);
    });
    await this.#entry({ name, mode, type: "file", size }, async (sink) => {
      let read = 0;
      const stream = fs.createReadStream(source, { highWaterMark: 1 << 20 });
      try {
        for await (const chunk of stream as AsyncIterable<Uint8Array>) {
          read += chunk.byteLength;
          if (read > size) break;
          await write(sink, chunk);
        }
      } finally {
        stream.destroy();
      }
      if (read !== size) throw new TcpgadgetError(`${source} changed while it was read`);
    });
  }

  /** Ends the tar and waits until all of it is written. */
  async close(): Promise<void> {
    this.#check();
    this.#pack.finalize();
    await this.#written;
  }

  async #entry(
    header: { name: string; mode: number; type: "file" | "directory"; size?: number },
    body: (sink: EntrySink) => Promise<void>,
  ): Promise<void> {
    this.#check();
    if (new TextEncoder().encode(header.name).length > MAX_NAME || header.name.startsWith("/")) {
      throw new Error(`tar entry name "${header.name}" is not a short relative path`);
    }
    let sink!: EntrySink;
    const done = new Promise<void>((resolve, reject) => {
      sink = this.#pack.entry(
        { ...header, uid: 0, gid: 0, uname: "root", gname: "root", mtime: TAR_EPOCH },
        (error) => error ? reject(error) : resolve(),
      );
    });
    // The tar's own failure says more than the entry's "destroyed" (the
    // callback has it too).
    done.catch(() => {});
    sink.on("error", () => {});
    try {
      if (header.type === "file") {
        await body(sink);
        sink.end(undefined);
      }
      await done;
    } catch (error) {
      // A tar with a failed entry is no tar: it ends here, and what ended
      // it first (an abort, a full disk) is what is reported.
      this.#pack.destroy(error as Error);
      await this.#written.catch(() => {});
      this.#check();
      throw this.#described(error);
    }
  }

  /** A system error as one line for the user; anything else as it is. */
  #described(error: unknown): unknown {
    const code = (error as { code?: unknown }).code;
    if (error instanceof TcpgadgetError || error instanceof Error && error.name === "AbortError") {
      return error;
    }
    if (typeof code !== "string" || !/^E[A-Z]+$/.test(code)) return error;
    return new TcpgadgetError(`writing ${this.#what}: ${errorLine(error)}`, { cause: error });
  }

  #check(): void {
    if (this.#failure !== undefined) throw this.#failure;
  }
}

/** Writes `chunk` to `sink`, waiting while it is full; rejects if it is destroyed. */
function write(sink: EntrySink, chunk: Uint8Array): Promise<void> {
  if (sink.destroyed) return Promise.reject(new Error("tar entry destroyed"));
  if (sink.write(chunk)) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onDrain = () => {
      sink.off("close", onClose);
      resolve();
    };
    const onClose = () => {
      sink.off("drain", onDrain);
      reject(new Error("tar entry destroyed"));
    };
    sink.once("drain", onDrain);
    sink.once("close", onClose);
  });
}
