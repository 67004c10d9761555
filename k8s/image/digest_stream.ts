/**
 * A pass-through stream that computes the SHA-256 and size of what goes
 * through it: an image's blobs are named by their digest, which is known
 * once they are written, without reading them again.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";

/**
 * Passes bytes on unchanged, hashing and counting them.
 *
 * @example
 * ```ts
 * import { DigestStream } from "./digest_stream.ts";
 * import { Readable, Writable } from "node:stream";
 * import { pipeline } from "node:stream/promises";
 * import assert from "node:assert/strict";
 * const digest = new DigestStream();
 * await pipeline(Readable.from([Buffer.from("ab"), Buffer.from("c")]), digest, new Writable({
 *   write: (_chunk, _encoding, done) => done(),
 * }));
 * assert.equal(digest.size, 3);
 * assert.equal(
 *   digest.digest,
 *   "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
 * );
 * ```
 */
export class DigestStream extends Transform {
  readonly #hash: Hash = createHash("sha256");
  #size = 0;
  #digest: string | undefined;

  override _transform(chunk: Uint8Array, _encoding: string, done: TransformCallback): void {
    this.#hash.update(chunk);
    this.#size += chunk.byteLength;
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    this.#digest = `sha256:${this.#hash.digest("hex")}`;
    done();
  }

  /** Bytes passed on so far. */
  get size(): number {
    return this.#size;
  }

  /** `sha256:<hex>` of every byte, once the stream has ended. */
  get digest(): string {
    if (this.#digest === undefined) throw new Error("digest read before the stream ended");
    return this.#digest;
  }
}
