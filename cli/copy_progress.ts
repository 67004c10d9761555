/**
 * What the user sees while tcpgadget gets into the agent pods: per node,
 * the bytes copied so far and the rate. On a terminal, one line per node
 * under way, rewritten in place (and each node's last word, "uploaded ..."
 * or "copied ...", left in its place); elsewhere (a log, a pipe), a plain
 * line now and then for a copy that takes long. Other warnings go through
 * it too, so that they never land inside the rewritten lines. Every line
 * is escaped (node names come from the cluster).
 *
 * @module
 */

import { printable } from "../core/printable.ts";

/** How often the lines of a terminal are redrawn. */
const REDRAW_MS = 200;
/** How often a copy under way is reported where stderr is not a terminal. */
const PLAIN_EVERY_MS = 10_000;

/** Where progress goes. */
export interface ProgressOutput {
  /** One line (printed as `tcpgadget: <message>`, escaped) where stderr is not a terminal. */
  warn(message: string): void;
  /** Stderr when it is a terminal: lines are rewritten in place there. */
  terminal?: {
    /** Writes text as is (control sequences included). */
    write(text: string): void;
    /** Its width in columns (lines are cut to fit, so that none wraps). */
    columns(): number;
  };
}

interface Copy {
  from: string;
  done: number;
  total: number;
  started: number;
  /** When a plain line was last printed for it. */
  shown: number;
}

function megabytes(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

/**
 * Progress of the copies, node by node.
 *
 * @example
 * ```ts
 * import { CopyProgress } from "./copy_progress.ts";
 * import assert from "node:assert/strict";
 * const lines: string[] = [];
 * let now = 0;
 * const progress = new CopyProgress({ warn: (line) => lines.push(line) }, () => now);
 * progress.update("worker-1", "this machine", 0, 42e6);
 * now = 10_000;
 * progress.update("worker-1", "this machine", 21e6, 42e6);
 * progress.done("worker-1", "uploaded 42.0 MB in 12.0 s (size and SHA-256 verified)");
 * assert.deepEqual(lines, [
 *   "node worker-1: 21.0 of 42.0 MB from this machine, 2.1 MB/s",
 *   "node worker-1: uploaded 42.0 MB in 12.0 s (size and SHA-256 verified)",
 * ]);
 * ```
 */
export class CopyProgress {
  readonly #output: ProgressOutput;
  readonly #now: () => number;
  readonly #copies = new Map<string, Copy>();
  /** Lines of the block drawn at the bottom of the terminal. */
  #drawn = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(output: ProgressOutput, now: () => number = () => performance.now()) {
    this.#output = output;
    this.#now = now;
  }

  /** A copy to `node` has `done` of `total` bytes, from `from`. */
  update(node: string, from: string, done: number, total: number): void {
    const now = this.#now();
    let copy = this.#copies.get(node);
    if (!copy || copy.from !== from || done < copy.done) {
      copy = { from, done, total, started: now, shown: now };
      this.#copies.set(node, copy);
    }
    copy.done = done;
    copy.total = total;
    if (this.#output.terminal) {
      this.#timer ??= setTimeout(() => {
        this.#timer = undefined;
        this.#redraw();
      }, REDRAW_MS);
    } else if (now - copy.shown >= PLAIN_EVERY_MS) {
      copy.shown = now;
      this.#print(this.#describe(node, copy));
    }
  }

  /** `node`'s copy is over: its line becomes `message`. */
  done(node: string, message: string): void {
    this.#copies.delete(node);
    this.#print(`node ${node}: ${message}`);
  }

  /** A line of its own (`tcpgadget: ` is put before it). */
  line(message: string): void {
    this.#print(message);
  }

  /** No more copies: the lines under way are cleared. */
  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#copies.clear();
    this.#erase();
  }

  #describe(node: string, copy: Copy): string {
    const elapsed = (this.#now() - copy.started) / 1000;
    const rate = elapsed > 0 ? `, ${megabytes(copy.done / elapsed)} MB/s` : "";
    return `node ${node}: ${megabytes(copy.done)} of ${
      megabytes(copy.total)
    } MB from ${copy.from}${rate}`;
  }

  #print(message: string): void {
    const terminal = this.#output.terminal;
    if (!terminal) return this.#output.warn(message);
    this.#erase();
    terminal.write(`tcpgadget: ${printable(message)}\n`);
    this.#redraw();
  }

  /** Removes the block of lines under way (the cursor goes back to its start). */
  #erase(): void {
    if (this.#drawn === 0) return;
    this.#output.terminal?.write(`\x1b[${this.#drawn}A\r\x1b[J`);
    this.#drawn = 0;
  }

  #redraw(): void {
    const terminal = this.#output.terminal;
    if (!terminal) return;
    this.#erase();
    const width = Math.max(20, terminal.columns() - 1);
    let text = "";
    for (const [node, copy] of this.#copies) {
      const line = `tcpgadget: ${printable(this.#describe(node, copy))}`;
      text += `${line.length > width ? `${line.slice(0, width - 1)}…` : line}\n`;
    }
    this.#drawn = this.#copies.size;
    if (text) terminal.write(text);
  }
}
