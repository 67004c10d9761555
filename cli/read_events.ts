/**
 * The loop of a run on this host: read the kernel's events in batches,
 * hand each to the pipeline, write what it formatted, and wait; until the
 * run ends. Its last events are read after the end: they happened before.
 *
 * @module
 */

import type { TcpEvent } from "../core/event.ts";
import { sleep } from "../core/sleep.ts";
import type { EventSources } from "./event_sources.ts";
import { type LineOutput, notWritten } from "./output/line_output.ts";
import { STOP_GRACE_MS } from "./stop_control.ts";

/** Options of {@link readEvents}. */
export interface ReadOptions {
  /** Ends the loop (a stop, or the run's own end). */
  until: AbortSignal;
  /** Where the pipeline writes lines, if anywhere. */
  output?: LineOutput;
  /** The reader of the output going away ends the loop (trace tcp); else it is written no more. */
  endWithReader: boolean;
  warn(message: string): void;
}

/**
 * Reads `sources` into `handle` until `until` aborts (or, with
 * `endWithReader`, the reader of the output goes away), then reads what
 * is left and gives the reader of the output the stop's grace period.
 * Events are decoded into one reused object: `handle` copies what it keeps.
 */
export async function readEvents(
  sources: EventSources,
  handle: (event: TcpEvent) => void,
  options: ReadOptions,
): Promise<void> {
  const { tracer, names } = sources;
  const { until, endWithReader } = options;
  const output = options.output;
  // The end wakes the reader wherever it waits: for the kernel, between
  // batches, or for the reader of stdout.
  const wake = () => tracer.stop();
  until.addEventListener("abort", wake, { once: true });
  try {
    while (!until.aborted) {
      if (output?.backlogged) {
        // The reader of stdout is behind: events wait in the kernel's
        // rings meanwhile, and what does not fit there is counted as lost.
        await output.ready(until);
        continue;
      }
      // Events are formatted before the next record is decoded.
      const read = tracer.drain(handle, { reuse: true });
      if (output) {
        // A write tells that the reader is gone; with nothing to write, ask.
        // (Once it is, flush() drops what is queued.)
        const writing = output.buffer.length > 0;
        const gone = !output.flush() || (!writing && output.readerGone());
        if (gone && endWithReader) break;
      }
      // DNS answers are read while no connection asks for them, so that
      // their ring does not fill.
      names?.update();
      sources.reportLost();
      if (read > 0) {
        // Events are flowing: let a batch build up for a moment rather
        // than ask poll() (a thread hop per call) after every few events.
        await sleep(tracer.batchIntervalMs, until);
      } else {
        await tracer.wait();
      }
    }
    // Events that happened before the end still count; what the reader
    // does not take within the grace period is reported, not waited for.
    tracer.drain(handle, { reuse: true });
    if (output && !output.closed) {
      const unwritten = await output.finish(STOP_GRACE_MS);
      if (unwritten > 0 && !output.closed) options.warn(notWritten(unwritten));
    }
  } finally {
    until.removeEventListener("abort", wake);
  }
}
