/**
 * The output of a cluster-mode run while its nodes start: nothing is
 * printed until every node traces or has failed (the header, or the
 * "tracing" line, comes first); events that come before are held, up to a
 * limit, then written. Events past the limit are counted and reported.
 *
 * @module
 */

import type { TraceEvent } from "../core/trace_event.ts";
import type { Formatter } from "./output/formatter.ts";
import type { LineOutput } from "./output/line_output.ts";
import { writeTo } from "./pipeline.ts";

/** Events held while the other nodes start, by default: about 20 MB of lines. */
export const EARLY_EVENTS_LIMIT = 100_000;

/**
 * Holds events until {@link release}, then writes them.
 *
 * @example
 * ```ts
 * import { HeldOutput } from "./held_output.ts";
 * import { LineOutput } from "./output/line_output.ts";
 * import { formatterFor } from "./output/formatter.ts";
 * import type { TraceEvent } from "../core/trace_event.ts";
 * import assert from "node:assert/strict";
 * let written = "";
 * const output = new LineOutput({
 *   writeSync: (data) => (written += new TextDecoder().decode(data), data.length),
 * });
 * const warnings: string[] = [];
 * const held = new HeldOutput(output, formatterFor("custom-columns=pid"), (m) => warnings.push(m), 1);
 * held.write({ pid: 7 } as TraceEvent);
 * held.write({ pid: 8 } as TraceEvent);
 * held.release(2);
 * assert.equal(written, "PID\n7\n");
 * assert.deepEqual(warnings, ["lost 1 event (only the first 1 before every node traces are kept)"]);
 * ```
 */
export class HeldOutput {
  readonly #output: LineOutput;
  readonly #formatter: Formatter;
  readonly #warn: (message: string) => void;
  readonly #limit: number;
  #held: string[] | undefined = [];
  #dropped = 0;
  #written = (_event: TraceEvent): void => {};

  constructor(
    output: LineOutput,
    formatter: Formatter,
    warn: (message: string) => void,
    limit = EARLY_EVENTS_LIMIT,
  ) {
    this.#output = output;
    this.#formatter = formatter;
    this.#warn = warn;
    this.#limit = limit;
  }

  get released(): boolean {
    return this.#held === undefined;
  }

  /** Events held, not yet written. */
  get holding(): number {
    return this.#held?.length ?? 0;
  }

  /** The sink of the pipeline. */
  readonly write = (event: TraceEvent): void => {
    if (this.#held === undefined) return this.#written(event);
    if (this.#held.length < this.#limit) this.#held.push(this.#formatter.format(event));
    else this.#dropped++;
  };

  /** Prints the header (or says how many nodes trace) and what was held. */
  release(nodes: number): void {
    const header = this.#formatter.header();
    if (header !== undefined) this.#output.line(header);
    else this.#warn(`tracing TCP connections on ${nodes} node${nodes === 1 ? "" : "s"}`);
    for (const line of this.#held ?? []) this.#output.eventLine(line);
    this.#held = undefined;
    this.#written = writeTo(this.#formatter, this.#output);
    this.#output.flush();
    if (this.#dropped > 0) {
      const events = `${this.#dropped} event${this.#dropped === 1 ? "" : "s"}`;
      this.#warn(
        `lost ${events} (only the first ${this.#limit} before every node traces are kept)`,
      );
    }
  }
}
