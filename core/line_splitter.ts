/**
 * Splits a byte stream that arrives in chunks (a pipe, an exec stream) into
 * its lines of UTF-8 text.
 *
 * @module
 */

/**
 * Calls `onLine` with each complete, non-empty line (without its newline).
 *
 * @example
 * ```ts
 * import { LineSplitter } from "./line_splitter.ts";
 * import assert from "node:assert/strict";
 * const lines: string[] = [];
 * const splitter = new LineSplitter((line) => lines.push(line));
 * splitter.push(new TextEncoder().encode("a\nb"));
 * splitter.push(new TextEncoder().encode("c\n"));
 * assert.deepEqual(lines, ["a", "bc"]);
 * ```
 */
export class LineSplitter {
  readonly #decoder = new TextDecoder();
  #rest = "";
  readonly #onLine: (line: string) => void;

  constructor(onLine: (line: string) => void) {
    this.#onLine = onLine;
  }

  /** Adds a chunk; complete lines are handed out at once. */
  push(chunk: Uint8Array): void {
    const lines = (this.#rest + this.#decoder.decode(chunk, { stream: true })).split("\n");
    this.#rest = lines.pop() ?? "";
    for (const line of lines) if (line) this.#onLine(line);
  }
}
