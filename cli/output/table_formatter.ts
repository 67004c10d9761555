/**
 * The table output: default or custom columns, Inspektor Gadget's widths,
 * widened (never cut) by longer values, each line written as bytes from
 * cached pieces.
 *
 * @module
 */

import { printable } from "../../core/printable.ts";
import type { TraceEvent } from "../../core/trace_event.ts";
import { type Column, DEFAULT_COLUMNS } from "./columns.ts";
import type { Formatter } from "./formatter.ts";
import { LineBuffer, lineIn, utf8 } from "./line_buffer.ts";
import { SourceMemo } from "./source_memo.ts";

// Padded texts kept per column before it starts over: bounds memory.
const KNOWN_VALUES_LIMIT = 1024;

/** A table with fixed minimum column widths. */
export class TableFormatter implements Formatter {
  readonly #columns: readonly Column[];
  readonly #widths: number[];
  // Per column, the value on the last line.
  readonly #lastValue: (string | number | undefined)[];
  // Per column, padded bytes of recent text values (T alternates: C, A, X).
  readonly #known: Map<string | number, Uint8Array>[];
  // The last line, which the next one starts as a copy of: every column but
  // the last is padded to its width, so all but the last keep their place
  // and only those whose values changed are written over. Its start in
  // #out (while #out has not been cleared since), and where each column
  // starts in it.
  #out: LineBuffer | undefined;
  #clears = -1;
  #lineStart = -1;
  readonly #offsets: number[];
  // Per column, whether it is Column.perSource; the last line's source.
  readonly #perSource: boolean[];
  readonly #source = new SourceMemo();
  readonly #scratch = new LineBuffer(1024);

  constructor(columns: readonly Column[] = DEFAULT_COLUMNS) {
    this.#columns = columns;
    this.#widths = columns.map((c) => Math.max(c.width, c.header.length));
    this.#lastValue = columns.map(() => undefined);
    this.#known = columns.map(() => new Map());
    this.#offsets = new Array(columns.length).fill(0);
    this.#perSource = columns.map((c) => c.perSource === true);
  }

  header(): string {
    const last = this.#columns.length - 1;
    return this.#columns.map((c, i) =>
      i === last ? c.header : c.header.padEnd(this.#widths[i] + 1, " ")
    ).join("");
  }

  write(event: TraceEvent, out: LineBuffer): void {
    const start = out.length;
    if (out !== this.#out || out.clears !== this.#clears || !this.#writeOver(event, out, start)) {
      out.length = start;
      this.#writeAll(event, out, start);
    }
    out.newline();
    this.#out = out;
    this.#clears = out.clears;
    this.#lineStart = start;
  }

  format(event: TraceEvent): string {
    this.#scratch.clear();
    this.write(event, this.#scratch);
    return lineIn(this.#scratch);
  }

  // The line as a copy of the last one with changed columns written over;
  // false if a value took other than its column's bytes on the last line
  // (it widened the column, or its UTF-8 is longer): the line must be
  // written anew.
  #writeOver(event: TraceEvent, out: LineBuffer, start: number): boolean {
    const columns = this.#columns;
    const lastValue = this.#lastValue;
    const offsets = this.#offsets;
    const last = columns.length - 1;
    out.repeat(this.#lineStart, offsets[last]);
    const sameSource = this.#source.same(event);
    const perSource = this.#perSource;
    for (let i = 0; i < last; i++) {
      if (sameSource && perSource[i]) continue;
      const value = columns[i].value(event);
      if (value === lastValue[i]) continue;
      out.length = start + offsets[i];
      if (this.#put(i, value, out, false) !== offsets[i + 1] - offsets[i]) return false;
      lastValue[i] = value;
    }
    out.length = start + offsets[last];
    const value = columns[last].value(event);
    this.#put(last, value, out, true);
    lastValue[last] = value;
    return true;
  }

  #writeAll(event: TraceEvent, out: LineBuffer, start: number): void {
    this.#source.same(event);
    const columns = this.#columns;
    const last = columns.length - 1;
    for (let i = 0; i <= last; i++) {
      const value = columns[i].value(event);
      this.#offsets[i] = out.length - start;
      this.#put(i, value, out, i === last);
      this.#lastValue[i] = value;
    }
  }

  // Appends a column's value, padded unless it is the last column, and
  // returns the bytes written. A value longer than the column widens it.
  #put(column: number, value: string | number, out: LineBuffer, last: boolean): number {
    if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) {
      // Numbers change from line to line (ports): written, not cached.
      const digits = out.uint(value);
      if (digits > this.#widths[column]) this.#widen(column, digits);
      if (last) return digits;
      out.spaces(this.#widths[column] + 1 - digits);
      return this.#widths[column] + 1;
    }
    const bytes = this.#padded(column, value, last);
    out.bytes(bytes);
    return bytes.length;
  }

  #padded(column: number, value: string | number, last: boolean): Uint8Array {
    const known = this.#known[column];
    let bytes = known.get(value);
    if (bytes === undefined) {
      // Names come from the traced system: escaped here, once per value.
      const text = printable(String(value));
      if (text.length > this.#widths[column]) this.#widen(column, text.length);
      bytes = utf8(last ? text : text.padEnd(this.#widths[column] + 1, " "));
      if (known.size >= KNOWN_VALUES_LIMIT) known.clear();
      known.set(value, bytes);
    }
    return bytes;
  }

  // A value longer than its column widens the column for this and every
  // later line: nothing (an IPv6 address, a pod name) is ever cut.
  #widen(column: number, width: number): void {
    this.#widths[column] = width;
    this.#known[column].clear();
  }
}
