/**
 * The benchmark's output counters: quick reading agrees with a full parse,
 * lines split across chunks anywhere (even inside a multi-byte character)
 * are counted once, and other processes' events are told apart.
 *
 * @module
 */

import { assertEquals } from "../helpers/assert.ts";
import {
  ColumnsCounter,
  JsonCounter,
  type LineCounter,
  lostEvents,
  ReferenceCounter,
} from "./counters.ts";

const PID = 4242;

function jsonLine(fields: { pid: number; comm: string; operation: string; sport?: number }) {
  return JSON.stringify({
    type: "normal",
    node: "nöde", // multi-byte, to split inside a character
    namespace: "\\u003c\\u003e",
    pod: "<>",
    container: "<>",
    pid: fields.pid,
    comm: fields.comm,
    ipversion: 4,
    saddr: "127.0.0.1",
    daddr: "127.0.0.1",
    sport: fields.sport ?? 40000,
    dport: 5000,
    operation: fields.operation,
    tid: fields.pid + 1,
    uid: 0,
    gid: 0,
    mntns: 4026531832,
    netns: 4026531833,
    containerid: "", // not documented: other keys may come and go
    timestamp: "2026-01-01T00:00:00.000000000Z",
  });
}

/** Feeds `text` in chunks of `size` bytes. */
function feed(counter: LineCounter, text: string, size: number): void {
  const bytes = new TextEncoder().encode(text);
  for (let i = 0; i < bytes.length; i += size) counter.push(bytes.slice(i, i + size));
  counter.finish();
}

Deno.test("json: counts the load generator's events by kind, in any chunking", () => {
  const lines: string[] = [];
  for (let i = 0; i < 50; i++) {
    lines.push(jsonLine({ pid: PID, comm: "tg-churn", operation: "connect" }));
    lines.push(jsonLine({ pid: PID, comm: "tg-churn", operation: "accept" }));
    lines.push(jsonLine({ pid: PID, comm: "tg-churn", operation: "close" }));
    lines.push(jsonLine({ pid: PID, comm: "tg-churn", operation: "close" }));
  }
  lines.push(jsonLine({ pid: 1, comm: "sshd", operation: "accept" }));
  lines.push(jsonLine({ pid: PID + 1, comm: "tg-churn", operation: "close" }));
  lines.push(jsonLine({ pid: 0, comm: "", operation: "unknown", sport: 5000 }));
  const text = lines.join("\n"); // no final newline: still counted
  for (const size of [1, 2, 3, 7, 64, 1000, 1 << 20]) {
    const counter = new JsonCounter();
    counter.churnPid = PID;
    feed(counter, text, size);
    assertEquals(counter.lines, 203);
    assertEquals(counter.churn, { C: 50, A: 50, X: 100, U: 0 });
    assertEquals(counter.strangers, 1);
    assertEquals(counter.unknownOn([5000]), 1);
    assertEquals(counter.malformed, 0);
    assertEquals(counter.mismatches, 0);
    assertEquals(counter.checked > 0, true);
  }
});

Deno.test("json: a line it cannot read is counted as malformed", () => {
  const counter = new JsonCounter();
  counter.churnPid = PID;
  feed(counter, "not json\n" + jsonLine({ pid: PID, comm: "tg-churn", operation: "close" }), 5);
  assertEquals(counter.malformed, 1);
  assertEquals(counter.churn.X, 1);
});

Deno.test("columns: reads T and PID before the comm, skips the header", () => {
  const header = "NODE             NAMESPACE        POD              CONTAINER        T PID    " +
    "COMM             IP  SADDR            DADDR            SPORT   DPORT";
  const row = (t: string, pid: number, comm: string) =>
    `vm               <>               <>               <>               ${t} ${
      String(pid).padEnd(6)
    } ${comm.padEnd(16)} 4   127.0.0.1        127.0.0.1        40000   5000`;
  const lines = [header];
  for (let i = 0; i < 20; i++) {
    lines.push(row("C", PID, "tg-churn"), row("A", PID, "tg-churn"));
    lines.push(row("X", PID, "tg-churn"), row("X", PID, "tg-churn"));
    lines.push(row("A", 77, "xtg-churn"), row("C", 1234567, "tg-churn"));
  }
  for (const size of [1, 5, 100, 1 << 20]) {
    const counter = new ColumnsCounter();
    counter.churnPid = PID;
    let first: string | undefined;
    counter.onFirstLine = (line) => first = line;
    feed(counter, lines.join("\n") + "\n", size);
    assertEquals(first, header);
    assertEquals(counter.lines, 120);
    assertEquals(counter.churn, { C: 20, A: 20, X: 40, U: 0 });
    assertEquals(counter.strangers, 20);
    assertEquals(counter.malformed, 0);
  }
});

Deno.test("reference: counts lines and those that name the load generator", () => {
  const counter = new ReferenceCounter();
  feed(counter, "PID COMM\n1 tg-churn a\n2 other b\n3 tg-churn c\n", 3);
  assertEquals([counter.lines, counter.churnEvents], [3, 2]);
});

Deno.test("lostEvents sums every report", () => {
  assertEquals(
    lostEvents(
      "tcpgadget: lost 10 events (ring buffer full)\nlost 5 events on CPU #1\nother\n",
    ),
    15,
  );
});
