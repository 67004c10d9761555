/**
 * Decoding a line of the JSON output back into an event: what an agent pod
 * sends in cluster mode is decoded here, before the client enriches,
 * filters and formats it.
 *
 * @module
 */

import { OPERATIONS } from "../../core/event.ts";
import type { DestinationName } from "../../core/destination_name.ts";
import type { Endpoint, TraceEvent } from "../../core/trace_event.ts";
import { NONE } from "./columns.ts";

/**
 * Reads back a line of {@link JsonFormatter} output (what an agent pod
 * sends in cluster mode).
 *
 * @example
 * ```ts
 * import { parseJsonEvent } from "./json_event.ts";
 * import { JsonFormatter } from "./json_formatter.ts";
 * import type { Endpoint, TraceEvent } from "../../core/trace_event.ts";
 * import assert from "node:assert/strict";
 * const event: TraceEvent = {
 *   type: "C", timeSec: 1_700_000_000, timeNsec: 5, pid: 42, tid: 43, uid: 0, gid: 0,
 *   comm: "curl", mntns: 1, netns: 2, cgroupId: 0, ipversion: 4, saddr: "10.0.0.1",
 *   sport: 40000, daddr: "10.0.0.2", dport: 80, node: "node-a", namespace: "shop",
 *   pod: "web-0", container: "nginx", containerId: "", podUid: "",
 * };
 * assert.deepEqual(parseJsonEvent(new JsonFormatter().format(event)), event);
 * // With --names: the name of the remote address, where it came from, its CNAMEs.
 * event.dstName = { name: "www.shop.test", source: "dns", chain: ["www.shop.test", "cdn.test"] };
 * assert.deepEqual(parseJsonEvent(new JsonFormatter().format(event)), event);
 * ```
 */
export function parseJsonEvent(line: string): TraceEvent {
  // What a node sends is not trusted: every field is checked for its type,
  // and text the JSON output writes without quoting (numbers, addresses,
  // errno names) for its form, so that no line can forge another's fields.
  const o: unknown = JSON.parse(line);
  if (typeof o !== "object" || o === null || Array.isArray(o)) throw new Error("not an object");
  const field = (key: string) => (o as Record<string, unknown>)[key];
  const type = (Object.entries(OPERATIONS).find(([, operation]) => operation === field("operation"))
    ?.[0] ?? "U") as TraceEvent["type"];
  const timestamp = text(field("timestamp"), "timestamp");
  const parts = timestamp.match(/^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{9})Z$/);
  if (!parts) throw new Error("bad timestamp");
  const time = Date.parse(`${parts[1]}Z`);
  const unnamed = (value: string) => value === NONE ? "" : value;
  const ipversion = field("ipversion");
  if (ipversion !== 4 && ipversion !== 6) throw new Error("bad ipversion");
  const pid = uint(field("pid"), "pid");
  const event: TraceEvent = {
    type,
    timeSec: Math.floor(time / 1000),
    timeNsec: Number(parts[2]),
    pid,
    tid: uint(field("tid") ?? pid, "tid"),
    uid: uint(field("uid") ?? 0, "uid"),
    gid: uint(field("gid") ?? 0, "gid"),
    comm: text(field("comm"), "comm"),
    mntns: uint(field("mntns") ?? 0, "mntns"),
    netns: uint(field("netns") ?? 0, "netns"),
    cgroupId: 0,
    ipversion,
    saddr: address(field("saddr"), "saddr"),
    sport: uint(field("sport"), "sport"),
    daddr: address(field("daddr"), "daddr"),
    dport: uint(field("dport"), "dport"),
    node: text(field("node"), "node"),
    namespace: unnamed(text(field("namespace") ?? "", "namespace")),
    pod: unnamed(text(field("pod") ?? "", "pod")),
    container: unnamed(text(field("container") ?? "", "container")),
    containerId: text(field("containerid") ?? "", "containerid"),
    podUid: text(field("poduid") ?? "", "poduid"),
  };
  const src = field("srcendpoint");
  const dst = field("dstendpoint");
  const error = field("error");
  if (src) event.srcEndpoint = endpoint(src, "srcendpoint");
  if (dst) event.dstEndpoint = endpoint(dst, "dstendpoint");
  const name = field("dstname");
  if (name) event.dstName = destinationName(name);
  if (error) {
    if (typeof error !== "string" || !/^[A-Z0-9]+$/.test(error)) throw new Error("bad error");
    event.error = error;
  }
  return event;
}

function text(value: unknown, key: string): string {
  if (typeof value !== "string") throw new Error(`bad ${key}`);
  return value;
}

function uint(value: unknown, key: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new Error(`bad ${key}`);
  }
  return value;
}

function address(value: unknown, key: string): string {
  if (typeof value !== "string" || !/^[0-9a-f.:]{2,45}$/.test(value)) throw new Error(`bad ${key}`);
  return value;
}

function destinationName(value: unknown): DestinationName {
  const n = value as Record<string, unknown>;
  if (typeof n !== "object" || (n.source !== "dns" && n.source !== "hosts")) {
    throw new Error("bad dstname");
  }
  const name: DestinationName = { name: text(n.name, "dstname"), source: n.source };
  if (n.chain !== undefined) {
    if (!Array.isArray(n.chain) || n.chain.length > 64) throw new Error("bad dstname");
    name.chain = n.chain.map((link) => text(link, "dstname"));
  }
  return name;
}

function endpoint(value: unknown, key: string): Endpoint {
  const e = value as Record<string, unknown>;
  if (typeof e !== "object" || (e.kind !== "pod" && e.kind !== "svc")) {
    throw new Error(`bad ${key}`);
  }
  return { kind: e.kind, namespace: text(e.namespace, key), name: text(e.name, key) };
}
