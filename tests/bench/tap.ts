/**
 * tg-tap (tap.c beside this file), the native reader of a tracer's output:
 * compiled at bench time like tg-churn, it runs the tracer with its stdout
 * on a pipe, counts the plain lines of the load generator itself, and
 * passes the rest on to a {@link LineCounter} through {@link TapReader}.
 * It costs the machine about what `cat >/dev/null` would, where a reader
 * in JavaScript took a good share of a core at full speed.
 *
 * @module
 */

import { compileC } from "./compile.ts";
import type { LineCounter, TapCounts } from "./counters.ts";

/** Compiles tap.c into `dir` and returns the binary's path. */
export function buildTap(dir: string): Promise<string> {
  return compileC("tap.c", `${dir}/tg-tap`);
}

/** How the traced command ended: its exit code, or the signal that killed it. */
export interface TapExit {
  code: number;
  /** 0 if it exited. */
  signal: number;
}

/** One report of tg-tap (see tap.c). */
export interface TapReport extends TapCounts {
  /** read() calls that returned data. */
  reads: number;
  /** Lines read, all of them. */
  lines: number;
  /** Lines forwarded as they are (the first, and those it did not count). */
  forwarded: number;
  /** Counted lines forwarded as samples. */
  sampled: number;
  /** Microseconds since its last read that held a counted line, or -1. */
  churnAgeUs: number;
  /** Its own CPU time (user + system) so far, in microseconds. */
  cpuUs: number;
  /** In the last report: how the traced command ended. */
  exit?: TapExit;
}

/** The arguments of tg-tap for a command. */
export function tapArgs(
  mode: "json" | "columns" | "reference",
  command: string,
  args: readonly string[],
  sampleEvery?: number,
): string[] {
  return [
    "--mode",
    mode,
    ...(sampleEvery === undefined ? [] : ["--sample", String(sampleEvery)]),
    "--",
    command,
    ...args,
  ];
}

/**
 * Reads tg-tap's stdout: the traced command's pid, the lines it forwards
 * (to {@link counter}), and its reports (their counts, too).
 */
export class TapReader {
  readonly #decoder = new TextDecoder();
  #rest = "";
  #resolvePid: (pid: number | undefined) => void = () => {};
  /** The traced command's pid, once tg-tap has said it. */
  pid: number | undefined;
  /** Resolves with {@link pid}, or undefined if tg-tap ended without saying it. */
  readonly pidKnown: Promise<number | undefined>;
  /** The last report. */
  report: TapReport | undefined;
  /** Called with the last report, once the traced command has exited. */
  onExit: ((exit: TapExit) => void) | undefined;

  constructor(readonly counter: LineCounter) {
    counter.fedByTap = true;
    this.pidKnown = new Promise((resolve) => this.#resolvePid = resolve);
  }

  /** How the traced command ended, once tg-tap has said it. */
  get exit(): TapExit | undefined {
    return this.report?.exit;
  }

  /** Feeds a chunk of tg-tap's stdout. */
  push(chunk: Uint8Array): void {
    const text = this.#rest + this.#decoder.decode(chunk, { stream: true });
    let start = 0;
    let end: number;
    while ((end = text.indexOf("\n", start)) >= 0) {
      this.#message(text.slice(start, end));
      start = end + 1;
    }
    this.#rest = text.slice(start);
  }

  /** Ends the stream. */
  finish(): void {
    const rest = this.#rest + this.#decoder.decode();
    this.#rest = "";
    // tg-tap ends every line: a piece of one means it was cut off.
    if (rest !== "") this.#protocolError(`tg-tap's output ends in a piece of a line: ${rest}`);
    this.#resolvePid(this.pid);
  }

  #message(message: string): void {
    switch (message[0]) {
      case ">":
        return this.counter.line(message.slice(1));
      case "=": {
        // =<pid> <kind> <line>
        const space = message.indexOf(" ");
        const kindEnd = message.indexOf(" ", space + 1);
        if (space < 0 || kindEnd < 0) return this.#protocolError(`sample: ${message}`);
        const pid = Number(message.slice(1, space));
        return this.counter.sample(
          pid,
          message.slice(space + 1, kindEnd),
          message.slice(kindEnd + 1),
        );
      }
      case "R":
        return this.#report(message.slice(1));
      case "P":
        this.pid = Number(message.slice(1));
        return this.#resolvePid(this.pid);
      default:
        return this.#protocolError(`unexpected line from tg-tap: ${message}`);
    }
  }

  #report(json: string): void {
    const arrivedAt = performance.now();
    let report: TapReport;
    try {
      report = JSON.parse(json);
    } catch {
      return this.#protocolError(`report: ${json}`);
    }
    this.report = report;
    const lastChurnAt = report.churnAgeUs >= 0 ? arrivedAt - report.churnAgeUs / 1000 : undefined;
    this.counter.tapReport(report, lastChurnAt);
    if (report.exit !== undefined) {
      this.counter.tapFinished(report.forwarded, report.sampled);
      this.onExit?.(report.exit);
    }
  }

  #protocolError(description: string): void {
    this.counter.mismatch(description);
  }
}
