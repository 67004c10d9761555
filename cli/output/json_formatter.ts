/**
 * The JSON output: one object per line, Inspektor Gadget's keys in its
 * order, then tcpgadget's, written as bytes from cached pieces.
 *
 * @module
 */

import { OPERATIONS } from "../../core/event.ts";
import { ACTIVE_CHARACTERS } from "../../core/printable.ts";
import type { DestinationName } from "../../core/destination_name.ts";
import type { Endpoint, TraceEvent } from "../../core/trace_event.ts";
import { NONE, timestampSecond } from "./columns.ts";
import type { Formatter } from "./formatter.ts";
import { LineBuffer, lineIn, utf8 } from "./line_buffer.ts";
import { SourceMemo } from "./source_memo.ts";

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
 * poduid, timestamp, the remote address's name (dstname, with `--names`) and, for a failed
 * connect, error. Like Go's encoder (and so like the seed
 * document), `<`, `>` and `&` in strings are written as \u escapes, and so are the control
 * characters JSON.stringify leaves (DEL, C1, U+2028, U+2029, bidirectional and invisible ones).
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
    return escapeJson(JSON.stringify(JSON.parse(line), null, 2));
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
    if (event.srcEndpoint || event.dstEndpoint || event.dstName || event.error) {
      out.bytes(TIMESTAMP_END);
      out.text(
        `${event.srcEndpoint ? `,"srcendpoint":${endpointJson(event.srcEndpoint)}` : ""}${
          event.dstEndpoint ? `,"dstendpoint":${endpointJson(event.dstEndpoint)}` : ""
        }${event.dstName ? `,"dstname":${nameJson(event.dstName)}` : ""}${
          event.error ? `,"error":"${event.error}"` : ""
        }`,
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

function nameJson(name: DestinationName): string {
  return `{"name":${jsonString(name.name)},"source":"${name.source}"${
    name.chain ? `,"chain":[${name.chain.map(jsonString).join(",")}]` : ""
  }}`;
}

function endpointJson(endpoint: Endpoint): string {
  return `{"kind":"${endpoint.kind}","namespace":${jsonString(endpoint.namespace)},"name":${
    jsonString(endpoint.name)
  }}`;
}

// What JSON.stringify leaves as is but is escaped as \uXXXX: Go's HTML-safe
// <, > and &, and, so that a line viewed on a terminal cannot move the
// cursor, start a line or hide text (JSON.stringify escapes C0 already),
// the characters printable() escapes (core/printable.ts).
const ESCAPED = new RegExp(`[<>&${ACTIVE_CHARACTERS}]`);
const ESCAPED_ALL = new RegExp(ESCAPED.source, "g");

/**
 * JSON string literal, escaped as {@link JsonFormatter} writes strings.
 *
 * @example
 * ```ts
 * import { jsonString } from "./json_formatter.ts";
 * import assert from "node:assert/strict";
 * assert.equal(jsonString("<>"), '"\\u003c\\u003e"');
 * assert.equal(jsonString("a\x1b\n\x7f\x9b\u2028\u202e"), '"a\\u001b\\n\\u007f\\u009b\\u2028\\u202e"');
 * ```
 */
export function jsonString(value: string): string {
  return escapeJson(JSON.stringify(value));
}

/** JSON text with the characters above escaped (only strings can hold them). */
function escapeJson(text: string): string {
  return ESCAPED.test(text) ? text.replace(ESCAPED_ALL, escapeChar) : text;
}

function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;
}
