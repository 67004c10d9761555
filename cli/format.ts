/**
 * Output formats: a table (default or custom columns) and JSON (one object
 * per line, Inspektor Gadget's keys in its order, then tcpgadget's extras).
 *
 * @module
 */

import {
  type Column,
  DEFAULT_COLUMNS,
  NONE,
  parseCustomColumns,
  timestampSecond,
} from "./columns.ts";
import { OPERATIONS } from "../core/event.ts";
import type { Endpoint, TraceEvent } from "../k8s/enrich.ts";
import { UsageError } from "../core/errors.ts";
import { LineBuffer, utf8 } from "./line_buffer.ts";

/** Inspektor Gadget's JSON keys of `trace tcp`, in its order: every line starts with them. */
export const SEED_JSON_KEYS: readonly string[] = [
  "type",
  "node",
  "namespace",
  "pod",
  "container",
  "pid",
  "comm",
  "ipversion",
  "saddr",
  "daddr",
  "sport",
  "dport",
  "operation",
];

/** Turns events into lines of output. */
export interface Formatter {
  /** The header line, if the format has one. */
  header(): string | undefined;
  /** Appends the line of an event, with its newline, to `out`. */
  write(event: TraceEvent, out: LineBuffer): void;
  /** One line (without newline) for an event. */
  format(event: TraceEvent): string;
}

const decoder = new TextDecoder();

/** The one line in `scratch`, without its newline. */
function lineIn(scratch: LineBuffer): string {
  return decoder.decode(scratch.data.subarray(0, scratch.length - 1));
}

// Padded texts kept per column before it starts over: bounds memory.
const KNOWN_VALUES_LIMIT = 1024;

/**
 * The process, container and addresses of the last event seen: most lines
 * repeat those of the line before, and their text is reused.
 */
class SourceMemo {
  #pid = -1;
  #comm = "";
  #saddr = "";
  #daddr = "";
  #ipversion = 0;
  #node: string | undefined;
  #namespace: string | undefined;
  #pod: string | undefined;
  #container: string | undefined;
  #uid = -1;
  #gid = -1;
  #mntns = -1;
  #netns = -1;
  #containerId: string | undefined;
  #podUid: string | undefined;

  /** True if `event` has the last event's; else remembers its. */
  same(event: TraceEvent): boolean {
    if (
      event.pid === this.#pid && event.comm === this.#comm && event.saddr === this.#saddr &&
      event.daddr === this.#daddr && event.ipversion === this.#ipversion &&
      event.node === this.#node && event.namespace === this.#namespace &&
      event.pod === this.#pod && event.container === this.#container &&
      event.uid === this.#uid && event.gid === this.#gid && event.mntns === this.#mntns &&
      event.netns === this.#netns && event.containerId === this.#containerId &&
      event.podUid === this.#podUid
    ) {
      return true;
    }
    this.#pid = event.pid;
    this.#comm = event.comm;
    this.#saddr = event.saddr;
    this.#daddr = event.daddr;
    this.#ipversion = event.ipversion;
    this.#node = event.node;
    this.#namespace = event.namespace;
    this.#pod = event.pod;
    this.#container = event.container;
    this.#uid = event.uid;
    this.#gid = event.gid;
    this.#mntns = event.mntns;
    this.#netns = event.netns;
    this.#containerId = event.containerId;
    this.#podUid = event.podUid;
    return false;
  }
}

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
      const text = String(value);
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

const operationLiteral = (type: TraceEvent["type"]) =>
  utf8(`,"operation":"${OPERATIONS[type]}","tid":`);
const CONNECT_LITERAL = operationLiteral("C");
const ACCEPT_LITERAL = operationLiteral("A");
const CLOSE_LITERAL = operationLiteral("X");
const UNKNOWN_LITERAL = operationLiteral("U");
const DPORT = utf8(`,"dport":`);
const TIMESTAMP_END = utf8(`Z"`);
const OBJECT_END = utf8("}\n");
const LINE_END = utf8(`Z"}\n`);

/**
 * One JSON object per line. Keys and order of Inspektor Gadget's `trace
 * tcp` first, then tcpgadget's: tid, uid, gid, mntns, netns, containerid,
 * poduid, timestamp and, for a failed connect, error. Like Go's encoder (and so like the seed
 * document), `<`, `>` and `&` in strings are written as \u escapes.
 *
 * Written as bytes from cached pieces rather than with JSON.stringify:
 * this runs for every event, at hundreds of thousands per second, and the
 * strings of an event (node, pod, command, addresses) mostly repeat.
 */
export class JsonFormatter implements Formatter {
  readonly #pretty: boolean;
  readonly #scratch = new LineBuffer(1024);
  // `{"type":"normal","node":…,"daddr":"…","sport":` and `,"uid":…,
  // "poduid":…,"timestamp":"`: what stays the same for the events of one
  // source (process, container and addresses).
  readonly #source = new SourceMemo();
  #head: Uint8Array = new Uint8Array(0);
  #tailKeys: Uint8Array = new Uint8Array(0);
  // `2023-11-14T22:13:20.` of the last second seen.
  #second = -1;
  #secondBytes: Uint8Array = new Uint8Array(0);
  // The keys above, then the second: one copy per line.
  #tail: Uint8Array = new Uint8Array(0);

  constructor(options: { pretty?: boolean } = {}) {
    this.#pretty = options.pretty ?? false;
  }

  header(): undefined {
    return undefined;
  }

  write(event: TraceEvent, out: LineBuffer): void {
    if (!this.#pretty) return this.#writeCompact(event, out);
    out.text(this.format(event));
    out.newline();
  }

  format(event: TraceEvent): string {
    this.#scratch.clear();
    this.#writeCompact(event, this.#scratch);
    const line = lineIn(this.#scratch);
    if (!this.#pretty) return line;
    return JSON.stringify(JSON.parse(line), null, 2).replace(/[<>&]/g, escapeChar);
  }

  #writeCompact(event: TraceEvent, out: LineBuffer): void {
    if (!this.#source.same(event)) this.#cacheSource(event);
    if (event.timeSec !== this.#second) this.#cacheSecond(event.timeSec);
    out.bytes(this.#head);
    out.uint(event.sport);
    out.bytes(DPORT);
    out.uint(event.dport);
    const type = event.type;
    out.bytes(
      type === "C"
        ? CONNECT_LITERAL
        : type === "A"
        ? ACCEPT_LITERAL
        : type === "X"
        ? CLOSE_LITERAL
        : UNKNOWN_LITERAL,
    );
    out.uint(event.tid);
    out.bytes(this.#tail);
    out.zeroPadded(event.timeNsec, 9);
    if (event.srcEndpoint || event.dstEndpoint || event.error) {
      out.bytes(TIMESTAMP_END);
      out.text(
        `${event.srcEndpoint ? `,"srcendpoint":${endpointJson(event.srcEndpoint)}` : ""}${
          event.dstEndpoint ? `,"dstendpoint":${endpointJson(event.dstEndpoint)}` : ""
        }${event.error ? `,"error":"${event.error}"` : ""}`,
      );
      out.bytes(OBJECT_END);
    } else {
      out.bytes(LINE_END);
    }
  }

  #cacheSecond(timeSec: number): void {
    this.#second = timeSec;
    this.#secondBytes = utf8(timestampSecond(timeSec));
    this.#tail = concat(this.#tailKeys, this.#secondBytes);
  }

  #cacheSource(event: TraceEvent): void {
    this.#head = utf8(
      `{"type":"normal","node":${jsonString(event.node)},"namespace":${
        jsonString(event.namespace || NONE)
      },"pod":${jsonString(event.pod || NONE)},"container":${
        jsonString(event.container || NONE)
      },"pid":${event.pid},"comm":${
        jsonString(event.comm)
      },"ipversion":${event.ipversion},"saddr":"${event.saddr}","daddr":"${event.daddr}","sport":`,
    );
    this.#tailKeys = utf8(
      `,"uid":${event.uid},"gid":${event.gid},"mntns":${event.mntns},"netns":${event.netns},"containerid":${
        jsonString(event.containerId ?? "")
      },"poduid":${jsonString(event.podUid ?? "")},"timestamp":"`,
    );
    this.#tail = concat(this.#tailKeys, this.#secondBytes);
  }
}

function concat(first: Uint8Array, second: Uint8Array): Uint8Array {
  const joined = new Uint8Array(first.length + second.length);
  joined.set(first);
  joined.set(second, first.length);
  return joined;
}

function endpointJson(endpoint: Endpoint): string {
  return `{"kind":"${endpoint.kind}","namespace":${jsonString(endpoint.namespace)},"name":${
    jsonString(endpoint.name)
  }}`;
}

/**
 * Reads back a line of {@link JsonFormatter} output (what an agent pod
 * sends in cluster mode).
 *
 * @example
 * ```ts
 * import { JsonFormatter, parseJsonEvent } from "./format.ts";
 * // parseJsonEvent(new JsonFormatter().format(event)) has event's fields.
 * ```
 */
export function parseJsonEvent(line: string): TraceEvent {
  // deno-lint-ignore no-explicit-any
  const o: Record<string, any> = JSON.parse(line);
  const type = (Object.entries(OPERATIONS).find(([, operation]) => operation === o.operation)
    ?.[0] ?? "U") as TraceEvent["type"];
  const time = Date.parse(String(o.timestamp).replace(/\.\d+Z$/, "Z"));
  const fraction = String(o.timestamp).match(/\.(\d{9})Z$/)?.[1] ?? "0";
  const unnamed = (value: unknown) => value === NONE ? "" : String(value ?? "");
  const event: TraceEvent = {
    type,
    timeSec: Math.floor(time / 1000),
    timeNsec: Number(fraction),
    pid: o.pid,
    tid: o.tid ?? o.pid,
    uid: o.uid ?? 0,
    gid: o.gid ?? 0,
    comm: o.comm,
    mntns: o.mntns ?? 0,
    netns: o.netns ?? 0,
    cgroupId: 0,
    ipversion: o.ipversion,
    saddr: o.saddr,
    sport: o.sport,
    daddr: o.daddr,
    dport: o.dport,
    node: o.node,
    namespace: unnamed(o.namespace),
    pod: unnamed(o.pod),
    container: unnamed(o.container),
    containerId: o.containerid ?? "",
    podUid: o.poduid ?? "",
  };
  if (o.srcendpoint) event.srcEndpoint = o.srcendpoint;
  if (o.dstendpoint) event.dstEndpoint = o.dstendpoint;
  if (o.error) event.error = o.error;
  return event;
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
