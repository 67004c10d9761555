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
import type { Endpoint, TraceEvent } from "../k8s/enrich.ts";
import { UsageError } from "../core/errors.ts";

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
  /** One line (without newline) for an event. */
  format(event: TraceEvent): string;
}

/** A table with fixed minimum column widths. */
export class TableFormatter implements Formatter {
  readonly #columns: readonly Column[];
  readonly #widths: number[];
  // Per column, the last raw value and its padded text: most values repeat
  // from one line to the next (node, pod, command, addresses).
  readonly #lastValue: (string | number | undefined)[];
  readonly #lastText: string[];

  constructor(columns: readonly Column[] = DEFAULT_COLUMNS) {
    this.#columns = columns;
    this.#widths = columns.map((c) => Math.max(c.width, c.header.length));
    this.#lastValue = columns.map(() => undefined);
    this.#lastText = columns.map(() => "");
  }

  header(): string {
    const last = this.#columns.length - 1;
    return this.#columns.map((c, i) => i === last ? c.header : this.#pad(i, c.header)).join("");
  }

  format(event: TraceEvent): string {
    const columns = this.#columns;
    const last = columns.length - 1;
    let line = "";
    for (let i = 0; i < last; i++) {
      const value = columns[i].value(event);
      if (value === this.#lastValue[i]) {
        line += this.#lastText[i];
        continue;
      }
      const text = this.#pad(i, String(value));
      this.#lastValue[i] = value;
      this.#lastText[i] = text;
      line += text;
    }
    const text = String(columns[last].value(event));
    if (text.length > this.#widths[last]) this.#widths[last] = text.length;
    return line + text;
  }

  // A value longer than its column widens the column for this and every
  // later line: nothing (an IPv6 address, a pod name) is ever cut.
  #pad(column: number, text: string): string {
    if (text.length > this.#widths[column]) {
      this.#widths[column] = text.length;
      this.#lastValue[column] = undefined;
    }
    const padding = this.#widths[column] + 1 - text.length;
    return text + (padding <= SPACES.length ? SPACES.slice(0, padding) : " ".repeat(padding));
  }
}

const SPACES = " ".repeat(64);

/**
 * One JSON object per line. Keys and order of Inspektor Gadget's `trace
 * tcp` first, then tcpgadget's: tid, uid, gid, mntns, netns, containerid,
 * poduid, timestamp and, for a failed connect, error. Like Go's encoder (and so like the seed
 * document), `<`, `>` and `&` in strings are written as \u escapes.
 *
 * Written with a template rather than JSON.stringify, with the parts that
 * repeat from one event to the next cached: this runs for every event, at
 * hundreds of thousands per second.
 */
export class JsonFormatter implements Formatter {
  readonly #pretty: boolean;
  #node: string | undefined;
  #namespace: string | undefined;
  #pod: string | undefined;
  #container: string | undefined;
  #head = "";
  #comm: string | undefined;
  #commLiteral = "";
  // null: nothing cached yet (undefined is a value events have).
  #containerId: string | undefined | null = null;
  #podUid: string | undefined | null = null;
  #idsLiteral = "";

  constructor(options: { pretty?: boolean } = {}) {
    this.#pretty = options.pretty ?? false;
  }

  header(): undefined {
    return undefined;
  }

  format(event: TraceEvent): string {
    if (
      event.node !== this.#node || event.namespace !== this.#namespace ||
      event.pod !== this.#pod || event.container !== this.#container
    ) {
      this.#node = event.node;
      this.#namespace = event.namespace;
      this.#pod = event.pod;
      this.#container = event.container;
      this.#head = `{"type":"normal","node":${jsonString(event.node)},"namespace":${
        jsonString(event.namespace || NONE)
      },"pod":${jsonString(event.pod || NONE)},"container":${
        jsonString(event.container || NONE)
      },"pid":`;
    }
    if (event.containerId !== this.#containerId || event.podUid !== this.#podUid) {
      this.#containerId = event.containerId;
      this.#podUid = event.podUid;
      this.#idsLiteral = `,"containerid":${jsonString(event.containerId ?? "")},"poduid":${
        jsonString(event.podUid ?? "")
      }`;
    }
    if (event.comm !== this.#comm) {
      this.#comm = event.comm;
      this.#commLiteral = jsonString(event.comm);
    }
    // Addresses, numbers, the operation and errno names never need escaping.
    const line =
      `${this.#head}${event.pid},"comm":${this.#commLiteral},"ipversion":${event.ipversion},"saddr":"${event.saddr}","daddr":"${event.daddr}","sport":${event.sport},"dport":${event.dport},"operation":"${
        OPERATIONS[event.type]
      }","tid":${event.tid},"uid":${event.uid},"gid":${event.gid},"mntns":${event.mntns},"netns":${event.netns}${this.#idsLiteral},"timestamp":"${
        formatTimestamp(event.timeSec, event.timeNsec)
      }"${event.srcEndpoint ? `,"srcendpoint":${endpointJson(event.srcEndpoint)}` : ""}${
        event.dstEndpoint ? `,"dstendpoint":${endpointJson(event.dstEndpoint)}` : ""
      }${event.error ? `,"error":"${event.error}"` : ""}}`;
    if (!this.#pretty) return line;
    return JSON.stringify(JSON.parse(line), null, 2).replace(/[<>&]/g, escapeChar);
  }
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
