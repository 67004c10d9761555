/**
 * Output formats: a table (default or custom columns) and JSON (one object
 * per line, Inspektor Gadget's keys in its order, then tcpgadget's extras).
 *
 * @module
 */

import {
  type Column,
  DEFAULT_COLUMNS,
  formatTimestamp,
  NONE,
  parseCustomColumns,
} from "./columns.ts";
import { OPERATIONS } from "../core/event.ts";
import type { TraceEvent } from "../k8s/enrich.ts";
import { UsageError } from "../core/errors.ts";

/** Turns events into lines of output. */
export interface Formatter {
  /** The header line, if the format has one. */
  header(): string | undefined;
  /** One line (without newline) for an event. */
  format(event: TraceEvent): string;
}

/** A table with fixed minimum column widths. */
export class TableFormatter implements Formatter {
  readonly #columns: readonly Column[];
  readonly #widths: number[];

  constructor(columns: readonly Column[] = DEFAULT_COLUMNS) {
    this.#columns = columns;
    this.#widths = columns.map((c) => Math.max(c.width, c.header.length));
  }

  header(): string {
    return this.#line(this.#columns.map((c) => c.header));
  }

  format(event: TraceEvent): string {
    return this.#line(this.#columns.map((c) => c.value(event)));
  }

  // A value longer than its column widens the column for this and every
  // later line: nothing (an IPv6 address, a pod name) is ever cut.
  #line(values: string[]): string {
    let line = "";
    const last = values.length - 1;
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      if (value.length > this.#widths[i]) this.#widths[i] = value.length;
      line += i === last ? value : value.padEnd(this.#widths[i] + 1);
    }
    return line;
  }
}

/**
 * One JSON object per line. Keys and order of Inspektor Gadget's `trace
 * tcp` first, then tcpgadget's: tid, uid, gid, mntns, netns, timestamp and,
 * for a failed connect, error. Like Go's encoder (and so like the seed
 * document), `<`, `>` and `&` in strings are written as \u escapes.
 */
export class JsonFormatter implements Formatter {
  readonly #indent: number;

  constructor(options: { pretty?: boolean } = {}) {
    this.#indent = options.pretty ? 2 : 0;
  }

  header(): undefined {
    return undefined;
  }

  format(event: TraceEvent): string {
    const object: Record<string, string | number> = {
      type: "normal",
      node: event.node,
      namespace: event.namespace || NONE,
      pod: event.pod || NONE,
      container: event.container || NONE,
      pid: event.pid,
      comm: event.comm,
      ipversion: event.ipversion,
      saddr: event.saddr,
      daddr: event.daddr,
      sport: event.sport,
      dport: event.dport,
      operation: OPERATIONS[event.type],
      tid: event.tid,
      uid: event.uid,
      gid: event.gid,
      mntns: event.mntns,
      netns: event.netns,
      timestamp: formatTimestamp(event.timestamp),
    };
    if (event.error) object.error = event.error;
    return escapeHtml(JSON.stringify(object, null, this.#indent));
  }
}

function escapeHtml(json: string): string {
  if (!/[<>&]/.test(json)) return json;
  return json.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
}

/** The output formats `-o` accepts. */
export const OUTPUT_MODES = ["columns", "custom-columns=<list>", "json", "jsonpretty"];

/**
 * The formatter for a `-o` value.
 *
 * @example
 * ```ts
 * import { formatterFor } from "./format.ts";
 * formatterFor("custom-columns=pid,comm").header(); // "PID    COMM"
 * ```
 */
export function formatterFor(output: string): Formatter {
  if (output === "columns") return new TableFormatter();
  if (output === "json") return new JsonFormatter();
  if (output === "jsonpretty") return new JsonFormatter({ pretty: true });
  if (output.startsWith("custom-columns=")) {
    return new TableFormatter(parseCustomColumns(output.slice("custom-columns=".length)));
  }
  throw new UsageError(`unknown output format "${output}"; valid: ${OUTPUT_MODES.join(", ")}`);
}
