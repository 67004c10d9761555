/**
 * The output columns: their names (as in `-o custom-columns=`), headers,
 * widths and values. The default set and widths are those of Inspektor
 * Gadget's `trace tcp`; the others are hidden unless asked for.
 *
 * @module
 */

import type { Endpoint, TraceEvent } from "../../core/trace_event.ts";
import { UsageError } from "../../core/errors.ts";

/** One column of the table output. */
export interface Column {
  /** Name in `custom-columns`, lower case. */
  name: string;
  header: string;
  /** Minimum width; a longer value widens the column, never truncated. */
  width: number;
  /** The raw value; numbers are turned into text only when they change. */
  value: (event: TraceEvent) => string | number;
  /**
   * True if the value depends only on the event's process, container and
   * addresses (what `SourceMemo` in format.ts compares): then it is the
   * last line's whenever those are.
   */
  perSource?: boolean;
}

/** Shown for Kubernetes fields of a process outside any container. */
export const NONE = "<>";

const orNone = (value: string | undefined) => value || NONE;

/** Every column, default ones first, in default order. */
export const COLUMNS: readonly Column[] = [
  { name: "node", header: "NODE", width: 16, value: (e) => orNone(e.node), perSource: true },
  {
    name: "namespace",
    header: "NAMESPACE",
    width: 16,
    value: (e) => orNone(e.namespace),
    perSource: true,
  },
  { name: "pod", header: "POD", width: 16, value: (e) => orNone(e.pod), perSource: true },
  {
    name: "container",
    header: "CONTAINER",
    width: 16,
    value: (e) => orNone(e.container),
    perSource: true,
  },
  { name: "t", header: "T", width: 1, value: (e) => e.type },
  { name: "pid", header: "PID", width: 6, value: (e) => e.pid, perSource: true },
  { name: "comm", header: "COMM", width: 16, value: (e) => e.comm, perSource: true },
  { name: "ip", header: "IP", width: 3, value: (e) => e.ipversion, perSource: true },
  { name: "saddr", header: "SADDR", width: 16, value: (e) => e.saddr, perSource: true },
  { name: "daddr", header: "DADDR", width: 16, value: (e) => e.daddr, perSource: true },
  { name: "sport", header: "SPORT", width: 7, value: (e) => e.sport },
  { name: "dport", header: "DPORT", width: 7, value: (e) => e.dport },
  // Hidden by default.
  { name: "error", header: "ERROR", width: 12, value: (e) => e.error ?? "" },
  { name: "tid", header: "TID", width: 7, value: (e) => e.tid },
  { name: "uid", header: "UID", width: 6, value: (e) => e.uid, perSource: true },
  { name: "gid", header: "GID", width: 6, value: (e) => e.gid, perSource: true },
  { name: "mntns", header: "MNTNS", width: 11, value: (e) => e.mntns, perSource: true },
  { name: "netns", header: "NETNS", width: 11, value: (e) => e.netns, perSource: true },
  {
    name: "containerid",
    header: "CONTAINERID",
    width: 13,
    value: (e) => e.containerId ?? "",
    perSource: true,
  },
  { name: "poduid", header: "PODUID", width: 36, value: (e) => e.podUid ?? "", perSource: true },
  {
    name: "src",
    header: "SRC",
    width: 24,
    value: (e) => endpointText(e.srcEndpoint, e.saddr, e.sport),
  },
  {
    name: "dst",
    header: "DST",
    width: 24,
    value: (e) => endpointText(e.dstEndpoint, e.daddr, e.dport),
  },
  {
    name: "dstname",
    header: "DSTNAME",
    width: 24,
    value: (e) => e.dstName?.name ?? "",
  },
  {
    name: "timestamp",
    header: "TIMESTAMP",
    width: 30,
    value: (e) => formatTimestamp(e.timeSec, e.timeNsec),
  },
];

/**
 * An endpoint as Inspektor Gadget writes it: `p/<namespace>/<pod>:<port>`
 * for a pod, `s/<namespace>/<service>:<port>` for a service, else
 * `r/<address>:<port>`.
 */
export function endpointText(endpoint: Endpoint | undefined, ip: string, port: number): string {
  if (!endpoint) return `r/${ip.includes(":") ? `[${ip}]` : ip}:${port}`;
  return `${endpoint.kind === "pod" ? "p" : "s"}/${endpoint.namespace}/${endpoint.name}:${port}`;
}

/** The default columns, as Inspektor Gadget prints them. */
export const DEFAULT_COLUMNS: readonly Column[] = COLUMNS.slice(0, 12);

/**
 * Parses the list of `-o custom-columns=a,b,c`: names case-insensitive,
 * order kept.
 *
 * @example
 * ```ts
 * import { parseCustomColumns } from "./columns.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseCustomColumns("PID,comm").map((c) => c.header), ["PID", "COMM"]);
 * ```
 */
export function parseCustomColumns(list: string): Column[] {
  const names = list.split(",").map((name) => name.trim().toLowerCase());
  if (names.some((name) => name === "")) {
    throw new UsageError(`empty column name in custom-columns=${list}`);
  }
  return names.map((name) => {
    const column = COLUMNS.find((c) => c.name === name);
    if (!column) {
      throw new UsageError(
        `unknown column "${name}"; valid columns: ${COLUMNS.map((c) => c.name).join(", ")}`,
      );
    }
    return column;
  });
}

/**
 * RFC 3339 UTC time with nanoseconds.
 *
 * @example
 * ```ts
 * import { formatTimestamp } from "./columns.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatTimestamp(1_700_000_000, 123_456_789), "2023-11-14T22:13:20.123456789Z");
 * ```
 */
export function formatTimestamp(seconds: number, nanoseconds: number): string {
  return `${timestampSecond(seconds)}${String(1_000_000_000 + nanoseconds).slice(1)}Z`;
}

/** The part of {@link formatTimestamp} before the nanoseconds: "2023-11-14T22:13:20.". */
export function timestampSecond(seconds: number): string {
  // Date formatting is slow, and events come in bursts within one second.
  if (seconds !== lastSecond) {
    lastSecond = seconds;
    lastSecondText = `${new Date(seconds * 1000).toISOString().slice(0, 19)}.`;
  }
  return lastSecondText;
}

let lastSecond = -1;
let lastSecondText = "";
