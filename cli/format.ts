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
    const columns = this.#columns;
    const widths = this.#widths;
    const last = columns.length - 1;
    let line = "";
    for (let i = 0; i < last; i++) {
      const value = columns[i].value(event);
      if (value.length > widths[i]) widths[i] = value.length;
      line += value.padEnd(widths[i] + 1);
    }
    const value = columns[last].value(event);
    if (value.length > widths[last]) widths[last] = value.length;
    return line + value;
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
 *
 * Written with a template rather than JSON.stringify: this runs for every
 * event, at hundreds of thousands per second.
 */
export class JsonFormatter implements Formatter {
  readonly #pretty: boolean;
  readonly #strings = new Map<string, string>();

  constructor(options: { pretty?: boolean } = {}) {
    this.#pretty = options.pretty ?? false;
  }

  header(): undefined {
    return undefined;
  }

  /** A JSON string literal, cached: the same names recur. */
  #string(value: string): string {
    let literal = this.#strings.get(value);
    if (literal === undefined) {
      literal = jsonString(value);
      if (this.#strings.size >= 65536) this.#strings.clear();
      this.#strings.set(value, literal);
    }
    return literal;
  }

  format(event: TraceEvent): string {
    // Addresses, numbers and the operation never need escaping.
    const line = `{"type":"normal","node":${this.#string(event.node)},"namespace":${
      this.#string(event.namespace || NONE)
    },"pod":${this.#string(event.pod || NONE)},"container":${
      this.#string(event.container || NONE)
    },"pid":${event.pid},"comm":${
      this.#string(event.comm)
    },"ipversion":${event.ipversion},"saddr":"${event.saddr}","daddr":"${event.daddr}","sport":${event.sport},"dport":${event.dport},"operation":"${
      OPERATIONS[event.type]
    }","tid":${event.tid},"uid":${event.uid},"gid":${event.gid},"mntns":${event.mntns},"netns":${event.netns},"timestamp":"${
      formatTimestamp(event.timestamp)
    }"${event.error ? `,"error":"${event.error}"` : ""}}`;
    return this.#pretty ? JSON.stringify(JSON.parse(line), null, 2).replace(/[<>&]/g, escapeChar) : line;
  }
}

/** JSON string literal with Go's HTML-safe escaping of <, > and &. */
export function jsonString(value: string): string {
  const literal = JSON.stringify(value);
  return /[<>&]/.test(literal) ? literal.replace(/[<>&]/g, escapeChar) : literal;
}

function escapeChar(c: string): string {
  return `\\u00${c.charCodeAt(0).toString(16)}`;
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
