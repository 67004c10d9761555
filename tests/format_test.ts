/** Output formats against the seed document's examples, without privileges. */

import { type Formatter, formatterFor } from "../cli/output/formatter.ts";
import { JsonFormatter } from "../cli/output/json_formatter.ts";
import { TableFormatter } from "../cli/output/table_formatter.ts";
import { COLUMNS, DEFAULT_COLUMNS, parseCustomColumns } from "../cli/output/columns.ts";
import { LineBuffer } from "../cli/output/line_buffer.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import { UsageError } from "../core/errors.ts";
import { printable } from "../core/printable.ts";
import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";

// The wget connect of the seed document.
const WGET: TraceEvent = {
  type: "C",
  timeSec: 1_764_030_000,
  timeNsec: 123_456_789,
  pid: 16266,
  tid: 16266,
  uid: 0,
  gid: 0,
  comm: "wget",
  mntns: 4026532470,
  netns: 4026532473,
  cgroupId: 1,
  ipversion: 4,
  saddr: "172.17.0.3",
  sport: 34878,
  daddr: "188.114.97.3",
  dport: 443,
  node: "minikube",
  namespace: "",
  pod: "",
  container: "",
};

// Lines copied from the seed document (seed-trace-tcp.md).
const SEED_HEADER =
  "NODE             NAMESPACE        POD              CONTAINER        T PID    COMM             IP  SADDR            DADDR            SPORT   DPORT";
const SEED_LINE =
  "minikube         <>               <>               <>               C 16266  wget             4   172.17.0.3       188.114.97.3     34878   443";

Deno.test("columns: header and line exactly as in the seed document", () => {
  const table = new TableFormatter();
  assertEquals(table.header(), SEED_HEADER);
  assertEquals(table.format(WGET), SEED_LINE);
});

Deno.test("custom-columns: pid,comm as in the seed document", () => {
  const formatter = formatterFor("custom-columns=pid,comm");
  assertEquals(formatter.header(), "PID    COMM");
  assertEquals(formatter.format({ ...WGET, pid: 28489 }), "28489  wget");
});

Deno.test("custom-columns: the seed's full list, names case-insensitive, order kept", () => {
  const formatter = formatterFor(
    "custom-columns=NODE,namespace,Container,pod,t,pid,comm,ip,saddr,daddr,sport,dport",
  );
  assertEquals(
    formatter.header(),
    "NODE             NAMESPACE        CONTAINER        POD              T PID    COMM             IP  SADDR            DADDR            SPORT   DPORT",
  );
  assertEquals(formatter.format(WGET), SEED_LINE);
});

Deno.test("custom-columns: hidden columns error, uid, mntns, timestamp", () => {
  const formatter = formatterFor("custom-columns=pid,error,uid,mntns,netns,timestamp");
  assertEquals(
    formatter.header(),
    "PID    ERROR        UID    MNTNS       NETNS       TIMESTAMP",
  );
  assertEquals(
    formatter.format({ ...WGET, error: "ECONNREFUSED" }),
    "16266  ECONNREFUSED 0      4026532470  4026532473  2025-11-25T00:20:00.123456789Z",
  );
});

Deno.test("custom-columns: unknown and empty names are clear errors", () => {
  assertThrows(
    () => parseCustomColumns("pid,bogus"),
    UsageError,
    'unknown column "bogus"; valid columns: node, namespace, pod, container, t, pid, comm, ip, saddr, daddr, sport, dport, error, tid, uid, gid, mntns, netns, containerid, poduid, src, dst, dstname, timestamp',
  );
  assertThrows(() => parseCustomColumns("pid,,comm"), UsageError, /empty column name/);
  assertThrows(() => formatterFor("yaml"), UsageError, /unknown output format "yaml"/);
});

Deno.test("columns: an IPv6 address is never truncated; the column widens", () => {
  const table = new TableFormatter(parseCustomColumns("saddr,daddr,dport"));
  const wide = "2001:db8:1234:5678:9abc:def0:1234:5678";
  assertEquals(table.header(), "SADDR            DADDR            DPORT");
  assertEquals(
    table.format({ ...WGET, saddr: wide, daddr: "::1" }),
    `${wide} ::1              443`,
  );
  // Later lines stay aligned with the widened column.
  assertEquals(
    table.format({ ...WGET, saddr: "::1", daddr: "::1" }),
    `::1${" ".repeat(wide.length - 3)} ::1              443`,
  );
});

Deno.test("json: the seed's keys in its order, Go-style escaping, then extras", () => {
  assertEquals(
    new JsonFormatter().format(WGET),
    '{"type":"normal","node":"minikube","namespace":"\\u003c\\u003e","pod":"\\u003c\\u003e","container":"\\u003c\\u003e","pid":16266,"comm":"wget","ipversion":4,"saddr":"172.17.0.3","daddr":"188.114.97.3","sport":34878,"dport":443,"operation":"connect","tid":16266,"uid":0,"gid":0,"mntns":4026532470,"netns":4026532473,"containerid":"","poduid":"","timestamp":"2025-11-25T00:20:00.123456789Z"}',
  );
});

Deno.test("json: a failed connect has error; operations of every kind", () => {
  const failed = JSON.parse(new JsonFormatter().format({ ...WGET, error: "ETIMEDOUT" }));
  assertEquals([failed.operation, failed.error], ["connect", "ETIMEDOUT"]);
  const operations = (["C", "A", "X", "U"] as const).map((type) =>
    JSON.parse(new JsonFormatter().format({ ...WGET, type })).operation
  );
  assertEquals(operations, ["connect", "accept", "close", "unknown"]);
});

Deno.test("jsonpretty: indented, same content", () => {
  const pretty = formatterFor("jsonpretty").format(WGET);
  assertEquals(pretty.split("\n")[1], '  "type": "normal",');
  assertEquals(JSON.parse(pretty), JSON.parse(new JsonFormatter().format(WGET)));
});

Deno.test("custom-columns: src and dst as Inspektor Gadget writes endpoints", () => {
  const formatter = formatterFor("custom-columns=src,dst");
  assertEquals(formatter.header(), "SRC                      DST");
  assertEquals(
    formatter.format({
      ...WGET,
      srcEndpoint: { kind: "pod", namespace: "shop", name: "web-0" },
      dstEndpoint: { kind: "svc", namespace: "kube-system", name: "kube-dns" },
    }),
    "p/shop/web-0:34878       s/kube-system/kube-dns:443",
  );
  assertEquals(
    formatter.format({ ...WGET, saddr: "fd00::1", sport: 1, daddr: "10.0.0.1", dport: 2 }),
    "r/[fd00::1]:1            r/10.0.0.1:2",
  );
});

Deno.test("json: endpoints as objects, then error", () => {
  const line = new JsonFormatter().format({
    ...WGET,
    dstEndpoint: { kind: "svc", namespace: "default", name: "web" },
    error: "ECONNREFUSED",
  });
  assertEquals(
    line.slice(line.indexOf(',"dstendpoint"')),
    ',"dstendpoint":{"kind":"svc","namespace":"default","name":"web"},"error":"ECONNREFUSED"}',
  );
});

// A stream of events whose fields change in every combination the
// formatters cache: same process or another, long values that widen a
// column, escapes, multi-byte text, seconds that roll over.
function eventStream(count: number): TraceEvent[] {
  let seed = 12345;
  const random = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  const comms = ["tg-churn", "wget", "<script>&", "nöde-ü€", 'a"b\\c'];
  const addresses = ["127.0.0.1", "10.0.0.2", "fd00:1234:5678:9abc:def0:1234:5678:9abc", "::1"];
  const pods = [["", "", ""], ["default", "web-7d9f", "nginx"], [
    "kube-system",
    "coredns-abc",
    "coredns",
  ]];
  const events: TraceEvent[] = [];
  for (let i = 0; i < count; i++) {
    const sameAsLast = i > 0 && random(3) > 0;
    const last = events[i - 1];
    const [namespace, pod, container] = pods[random(pods.length)];
    const event: TraceEvent = sameAsLast ? { ...last } : {
      ...WGET,
      pid: [1, 4242, 65535, 4_194_304][random(4)],
      comm: comms[random(comms.length)],
      mntns: [4026531840, 4026532470, 7][random(3)],
      uid: random(2) * 1000,
      namespace,
      pod,
      container,
      containerId: pod ? "c".repeat(64) : "",
      podUid: pod ? "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0" : "",
    };
    event.type = (["C", "A", "X", "U"] as const)[random(4)];
    event.tid = event.pid + random(3);
    event.saddr = addresses[random(addresses.length)];
    event.daddr = addresses[random(addresses.length)];
    event.ipversion = event.saddr.includes(":") ? 6 : 4;
    event.sport = random(65536);
    event.dport = [80, 443, 40000][random(3)];
    event.timeSec = 1_764_030_000 + Math.floor(i / 7);
    event.timeNsec = random(1_000_000_000);
    event.error = event.type === "C" && random(5) === 0 ? "ECONNREFUSED" : undefined;
    event.srcEndpoint = random(6) === 0
      ? { kind: "pod", namespace: "default", name: "web-<1>" }
      : undefined;
    event.dstEndpoint = random(6) === 0
      ? { kind: "svc", namespace: "default", name: "db" }
      : undefined;
    if (event.error === undefined) delete event.error;
    events.push(event);
  }
  return events;
}

/** Lines written into one buffer, cleared (as a flush does) at random points. */
function writeStream(formatter: Formatter, events: TraceEvent[]): string[] {
  const out = new LineBuffer(64);
  const lines: string[] = [];
  for (const [i, event] of events.entries()) {
    formatter.write(event, out);
    if (i % 5 === 3 || i % 11 === 0) {
      lines.push(...new TextDecoder().decode(out.view()).split("\n").slice(0, -1));
      out.clear();
    }
  }
  lines.push(...new TextDecoder().decode(out.view()).split("\n").slice(0, -1));
  return lines;
}

Deno.test("columns written as bytes: every line as plain padding would make it", () => {
  const events = eventStream(600);
  for (const columns of [DEFAULT_COLUMNS, COLUMNS, parseCustomColumns("sport,comm,t,pid")]) {
    const widths = columns.map((c) => Math.max(c.width, c.header.length));
    const expected = events.map((event) =>
      columns.map((column, i) => {
        // Text as the table escapes it (a backslash is doubled).
        const value = printable(String(column.value(event)));
        widths[i] = Math.max(widths[i], value.length);
        return i === columns.length - 1 ? value : value.padEnd(widths[i] + 1, " ");
      }).join("")
    );
    assertEquals(writeStream(new TableFormatter(columns), events), expected);
  }
});

Deno.test("json written as bytes: every line is JSON.stringify's, key order and escapes", () => {
  const events = eventStream(600);
  const expected = events.map((e) => {
    const none = (value: string) => value || "<>";
    const object: Record<string, unknown> = {
      type: "normal",
      node: e.node,
      namespace: none(e.namespace),
      pod: none(e.pod),
      container: none(e.container),
      pid: e.pid,
      comm: e.comm,
      ipversion: e.ipversion,
      saddr: e.saddr,
      daddr: e.daddr,
      sport: e.sport,
      dport: e.dport,
      operation: { C: "connect", A: "accept", X: "close", U: "unknown" }[e.type],
      tid: e.tid,
      uid: e.uid,
      gid: e.gid,
      mntns: e.mntns,
      netns: e.netns,
      containerid: e.containerId ?? "",
      poduid: e.podUid ?? "",
      timestamp: new Date(e.timeSec * 1000).toISOString().slice(0, 19) + "." +
        String(e.timeNsec).padStart(9, "0") + "Z",
    };
    if (e.srcEndpoint) object.srcendpoint = e.srcEndpoint;
    if (e.dstEndpoint) object.dstendpoint = e.dstEndpoint;
    if (e.error) object.error = e.error;
    return JSON.stringify(object).replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`);
  });
  const formatter = new JsonFormatter();
  assertEquals(writeStream(formatter, events), expected);
  // format() goes through the same bytes.
  assertEquals(events.slice(0, 50).map((event) => formatter.format(event)), expected.slice(0, 50));
});

// What must never reach the output raw.
// deno-lint-ignore no-control-regex
const CONTROLS = /[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]/g;

Deno.test("escapes: control characters of every kind, in columns, JSON and jsonpretty", () => {
  // C0 (ESC, newline, CR, tab, NUL), DEL, C1 (CSI, NEL), U+2028, U+2029,
  // the bidi controls (marks, embeddings, overrides, isolates), a backslash;
  // and what stays as is: other scripts, quotes, U+FFFD.
  const evil =
    "a\x1b[2J\n\r\t\0\x7f\x9b\x85\u2028\u2029\u200e\u200f\u061c\u202a\u202e\u2066\u2069\\é\"'\ufffd";
  const shown =
    "a\\x1b[2J\\n\\r\\t\\x00\\x7f\\u009b\\u0085\\u2028\\u2029\\u200e\\u200f\\u061c\\u202a\\u202e\\u2066\\u2069\\\\é\"'\ufffd";
  assertEquals(printable(evil), shown);
  const event = { ...WGET, comm: evil, pod: "web\n0", namespace: "n\x1bs", container: "c\u202e" };
  assertEquals(
    formatterFor("custom-columns=namespace,pod,container,comm,pid").format(event),
    `${"n\\x1bs".padEnd(17)}${"web\\n0".padEnd(17)}${"c\\u202e".padEnd(17)}${shown} 16266`,
  );
  // Endpoint names (src, dst columns) too.
  const named = { ...WGET, dstEndpoint: { kind: "svc" as const, namespace: "x", name: "a\nb" } };
  assertEquals(formatterFor("custom-columns=dst").format(named), "s/x/a\\nb:443");

  const line = new JsonFormatter().format(event);
  assertEquals(JSON.parse(line).comm, evil);
  // JSON.stringify's escapes of C0, then \u escapes of the rest (and of Go's <, >, &).
  assert(
    line.includes(
      String
        .raw`"comm":"a\u001b[2J\n\r\t\u0000\u007f\u009b\u0085\u2028\u2029\u200e\u200f\u061c\u202a\u202e\u2066\u2069\\é\"'` +
        '\ufffd"',
    ),
    line,
  );
  assertEquals(line.match(CONTROLS), null);
  const pretty = formatterFor("jsonpretty").format(event);
  assertEquals(JSON.parse(pretty).comm, evil);
  assertEquals(pretty.replaceAll("\n", "").match(CONTROLS), null);
});
