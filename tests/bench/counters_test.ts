/**
 * The benchmark's output counters: quick reading agrees with a full parse,
 * lines split across chunks anywhere (even inside a multi-byte character)
 * are counted once, and other processes' events are told apart; fed by
 * tg-tap (its output made up here; tap_test.ts runs the real one), its
 * counts are added, its samples checked, and its misreadings noticed.
 *
 * @module
 */

import { assertEquals } from "../helpers/assert.ts";
import {
  ColumnsCounter,
  JsonCounter,
  type LineCounter,
  lostEvents,
  readColumns,
  ReferenceCounter,
} from "./counters.ts";
import { TapReader } from "./tap.ts";
import { COLUMNS_HEADER, columnsRow, jsonLine, PID } from "./test_lines.ts";

/** Feeds `text` in chunks of `size` bytes. */
function feed(counter: LineCounter | TapReader, text: string, size: number): void {
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
  const header = COLUMNS_HEADER;
  const row = columnsRow;
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
      "tcpgadget: lost 10 events (ring buffer full)\nlost 5 events on CPU #1\nother\n" +
        "tcpgadget: lost up to 2 events (the kernel skipped 2 runs of tcpgadget's programs)\n",
    ),
    17,
  );
});

Deno.test("columns: a row is read backwards from the whole comm", () => {
  assertEquals(readColumns(columnsRow("X", PID, "tg-churn")), { pid: PID, kind: "X" });
  assertEquals(readColumns(`a xtg-churn b C 5 tg-churn  c`), { pid: 5, kind: "C" });
  assertEquals(readColumns(columnsRow("A", PID, "xtg-churn")), undefined);
  assertEquals(readColumns(columnsRow("?", PID, "tg-churn")), "malformed");
  assertEquals(readColumns(`C tg-churn x`), "malformed");
  assertEquals(readColumns(`vm <>X 4242  tg-churn x`), "malformed");
  assertEquals(readColumns(`tg-churn x`), undefined);
});

/** tg-tap's output (see tap.c), made up. */
function tapOutput(
  messages: string[],
  report: { forwarded: number; sampled: number; named: number; pids: number[][] },
  exit = true,
): string {
  const counts = {
    bytes: 1000,
    lines: report.forwarded + report.named,
    overflow: [0, 0, 0, 0],
    churnAgeUs: 1500,
    cpuUs: 42,
    ...report,
  };
  const end = exit ? `R${JSON.stringify({ ...counts, exit: { code: 0, signal: 0 } })}\n` : "";
  return `P123\nR${JSON.stringify({ ...counts, named: 0, pids: [] })}\n` +
    messages.map((m) => `${m}\n`).join("") + end;
}

Deno.test("fed by tg-tap: adds its counts to the lines it forwards", () => {
  const sshd = jsonLine({ pid: 1, comm: "sshd", operation: "accept" });
  const close = jsonLine({ pid: PID, comm: "tg-churn", operation: "close" });
  const unknown = jsonLine({ pid: 0, comm: "", operation: "unknown", sport: 5000 });
  const text = tapOutput([`>${sshd}`, `=${PID} X ${close}`, `>${unknown}`], {
    forwarded: 2,
    sampled: 1,
    named: 12,
    pids: [[PID, 3, 3, 5, 0], [PID + 1, 0, 0, 1, 0]],
  });
  for (const size of [1, 7, 1 << 20]) {
    const counter = new JsonCounter();
    counter.churnPid = PID;
    const reader = new TapReader(counter);
    const before = performance.now();
    feed(reader, text, size);
    assertEquals(reader.pid, 123);
    assertEquals(counter.lines, 14);
    assertEquals(counter.bytes, 1000);
    assertEquals(counter.churn, { C: 3, A: 3, X: 5, U: 0 });
    assertEquals(counter.strangers, 1);
    assertEquals(counter.unknownOn([5000]), 1);
    assertEquals([counter.checked, counter.mismatches, counter.malformed], [1, 0, 0]);
    // Its last read with an event was 1.5 ms before the report arrived.
    const at = counter.lastChurnAt ?? NaN;
    assertEquals(at >= before - 1.5 && at <= performance.now() - 1.5, true);
    assertEquals(reader.exit, { code: 0, signal: 0 });
  }
});

Deno.test("fed by tg-tap: what it misread or lost is a mismatch", () => {
  const close = jsonLine({ pid: PID, comm: "tg-churn", operation: "close" });
  const cases: [string, string, LineCounter, string[], number][] = [
    // A plain line forwarded (but the first): tg-tap should have counted it.
    ["not read", "tg-tap did not read", new JsonCounter(), [`>${close}`, `>${close}`], 2],
    ["sample", "quick reading differs", new JsonCounter(), [`>${close}`, `=${PID} C ${close}`], 1],
    ["kind", "tg-tap's kind", new JsonCounter(), [`>${close}`, `=${PID} Q ${close}`], 1],
    [
      "columns sample",
      "tg-tap read",
      new ColumnsCounter(),
      [`>${COLUMNS_HEADER}`, `=${PID} C ${columnsRow("X", PID, "tg-churn")}`],
      1,
    ],
    ["reference", "tg-tap did not read", new ReferenceCounter(), [">H", ">1 tg-churn"], 1],
    ["reference sample", "tg-tap read as", new ReferenceCounter(), [">H", "=0 - 1 x"], 1],
    // Fewer forwarded lines than it says: lost on the way.
    ["lost", "tg-tap forwarded 3 lines", new JsonCounter(), [`>${close}`], 0],
    ["protocol", "unexpected line", new JsonCounter(), [`>${close}`, "?what"], 1],
  ];
  for (const [name, mismatch, counter, messages, sampled] of cases) {
    counter.churnPid = PID;
    const reader = new TapReader(counter);
    const forwarded = name === "lost" ? 3 : messages.filter((m) => m[0] === ">").length;
    feed(reader, tapOutput(messages, { forwarded, sampled, named: 0, pids: [] }), 5);
    assertEquals(counter.mismatches > 0, true, name);
    assertEquals(
      counter.firstMismatch?.startsWith(mismatch),
      true,
      `${name}: ${counter.firstMismatch}`,
    );
  }
});

Deno.test("fed by tg-tap: a cut-off output is noticed, and the pid is undefined", async () => {
  const counter = new JsonCounter();
  const reader = new TapReader(counter);
  feed(reader, "R{", 100);
  assertEquals(await reader.pidKnown, undefined);
  assertEquals(reader.exit, undefined);
  assertEquals(counter.mismatches, 1);
});
