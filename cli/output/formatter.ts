/**
 * The output stage: a {@link Formatter} turns enriched events into lines,
 * and {@link formatterFor} picks one for a `-o` value.
 *
 * @module
 */

import { UsageError } from "../../core/errors.ts";
import type { TraceEvent } from "../../core/trace_event.ts";
import type { LineBuffer } from "./line_buffer.ts";
import { parseCustomColumns } from "./columns.ts";
import { TableFormatter } from "./table_formatter.ts";
import { JsonFormatter } from "./json_formatter.ts";

/** Turns events into lines of output. */
export interface Formatter {
  /** The header line, if the format has one. */
  header(): string | undefined;
  /** Appends the line of an event, with its newline, to `out`. */
  write(event: TraceEvent, out: LineBuffer): void;
  /** One line (without newline) for an event. */
  format(event: TraceEvent): string;
}

/** The output formats `-o` accepts. */
export const OUTPUT_MODES = ["columns", "custom-columns=<list>", "json", "jsonpretty"];

/**
 * The formatter for a `-o` value.
 *
 * @example
 * ```ts
 * import { formatterFor } from "./formatter.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatterFor("custom-columns=pid,comm").header(), "PID    COMM");
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
