/**
 * What an egress run could not see, counted and said: events the kernel
 * could not queue or skipped, processes of COMMAND's tree it could not
 * follow, DNS answers lost (a lost answer may leave a name unknown), and in
 * cluster mode what each node lost, its event streams that dropped, and
 * nodes given up. Any of it fails the run (exit status 4) unless
 * `--allow-lost`: the run cannot vouch for what it did not see.
 *
 * @module
 */

import type { Losses } from "../event_sources.ts";

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * The losses of a run.
 *
 * @example
 * ```ts
 * import { LostEvents } from "./lost_events.ts";
 * import assert from "node:assert/strict";
 * const lost = new LostEvents();
 * lost.addLosses({ ringFull: 3, skippedRuns: 0, untracedProcesses: 0, dnsAnswersLost: 1, dnsAnswersCut: 0 });
 * assert.equal(lost.addNodeWarning("node-b", "lost 2 events (ring buffer full)"), true);
 * assert.equal(lost.addNodeWarning("node-b", "uploaded 101.7 MB in 1.5 s"), false);
 * assert.equal(lost.count, 6);
 * assert.deepEqual(lost.details, [
 *   "3 events (ring buffer full)",
 *   "1 DNS answer (ring buffer full: names may be unknown)",
 *   "node node-b: 2 events (ring buffer full)",
 * ]);
 * ```
 */
export class LostEvents {
  #count = 0;
  readonly #details: string[] = [];

  /** Events (or answers) lost, over all causes. */
  get count(): number {
    return this.#count;
  }

  /** Each cause, as a phrase. */
  get details(): readonly string[] {
    return this.#details;
  }

  /** `count` lost, for the reason `what` (a phrase that says the count). */
  add(count: number, what: string): void {
    if (count <= 0) return;
    this.#count += count;
    this.#details.push(what);
  }

  /** The losses of this host's kernel sources. */
  addLosses(losses: Losses): void {
    this.add(losses.ringFull, `${plural(losses.ringFull, "event")} (ring buffer full)`);
    this.add(
      losses.skippedRuns,
      `up to ${plural(losses.skippedRuns, "event")} (the kernel skipped ${
        plural(losses.skippedRuns, "run")
      } of tcpgadget's programs)`,
    );
    this.add(
      losses.untracedProcesses,
      `the events of ${
        plural(losses.untracedProcesses, "process")
      } of COMMAND's tree (more than the kernel holds at a time)`,
    );
    this.add(
      losses.dnsAnswersLost,
      `${plural(losses.dnsAnswersLost, "DNS answer")} (ring buffer full: names may be unknown)`,
    );
    this.add(
      losses.dnsAnswersCut,
      `${
        plural(losses.dnsAnswersCut, "DNS answer")
      } longer than 8 KiB (not read: names may be unknown)`,
    );
  }

  /**
   * A node's warning in cluster mode, if it tells of a loss: what its
   * tracer lost (`lost N ...`, as node mode says it), or its event stream
   * dropped (the events until it was reopened). Returns whether it did.
   */
  addNodeWarning(node: string, message: string): boolean {
    const lost = message.match(/^lost (?:up to |the events of )?(\d+) (.*)$/);
    if (lost) {
      this.add(Number(lost[1]), `node ${node}: ${message.slice("lost ".length)}`);
      return true;
    }
    if (message.startsWith("event stream dropped")) {
      this.add(1, `node ${node}: its event stream dropped (the events until it was reopened)`);
      return true;
    }
    return false;
  }

  /** A node given up during the run: its later events were not seen. */
  addNodeFailure(node: string): void {
    this.add(1, `node ${node}: given up (its events from then on)`);
  }
}
