/**
 * tg-tap (tap.c), compiled here: its counts agree with the counters'
 * own reading of the same output, in any chunking, every line it counts
 * reads the same as JSON.parse (--sample 1), what it does not count is
 * forwarded intact, and it neither outlives nor orphans the command it
 * runs.
 *
 * @module
 */

import { assert, assertEquals } from "../helpers/assert.ts";
import { Children } from "./children.ts";
import { hasCompiler } from "./compile.ts";
import { ColumnsCounter, JsonCounter, type LineCounter, ReferenceCounter } from "./counters.ts";
import { buildTap, tapArgs, TapReader } from "./tap.ts";
import { COLUMNS_HEADER, columnsRow, jsonLine, PID } from "./test_lines.ts";

const noCompiler = !hasCompiler();
const dir = await Deno.makeTempDir({ prefix: "tg-tap-test-" });
globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
let binary: Promise<string> | undefined;
const tapBinary = () => binary ??= buildTap(dir);

type Mode = "json" | "columns" | "reference";

interface Tapped {
  reader: TapReader;
  status: Deno.CommandStatus;
  /** All of tg-tap's stdout. */
  output: Uint8Array;
}

/** Runs `command` under tg-tap, its output read by `counter`. */
async function tap(
  mode: Mode,
  counter: LineCounter,
  command: string[],
  options: { sample?: number; onPid?: (pid: number) => void } = {},
): Promise<Tapped> {
  counter.churnPid = PID;
  const { child, reader, output } = await startTap(mode, counter, command, options.sample);
  reader.pidKnown.then((pid) => pid !== undefined && options.onPid?.(pid));
  return { reader, status: await child.status, output: await output };
}

/** Starts tg-tap running `command`; `output` is all it printed, once it ends. */
async function startTap(mode: Mode, counter: LineCounter, command: string[], sample?: number) {
  const reader = new TapReader(counter);
  const child = new Deno.Command(await tapBinary(), {
    args: tapArgs(mode, command[0], command.slice(1), sample),
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const output = (async () => {
    const chunks: Uint8Array[] = [];
    for await (const chunk of child.stdout) {
      chunks.push(chunk.slice());
      reader.push(chunk);
    }
    reader.finish();
    const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    chunks.reduce((at, chunk) => (bytes.set(chunk, at), at + chunk.length), 0);
    return bytes;
  })();
  return { child, reader, output };
}

/** Writes `text` to a file and returns a command that prints it in `size`-byte writes. */
async function printer(text: string, size: number): Promise<string[]> {
  const file = await Deno.makeTempFile({ dir });
  await Deno.writeTextFile(file, text);
  return ["dd", `if=${file}`, `bs=${size}`, "status=none"];
}

function churnJson(n: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    for (const operation of ["connect", "accept", "close", "close"]) {
      lines.push(jsonLine({ pid: PID, comm: "tg-churn", operation }));
    }
  }
  return lines;
}

Deno.test({
  name: "tg-tap json: counts as the JSON counter does, in any chunking",
  ignore: noCompiler,
  async fn() {
    const lines = [
      jsonLine({ pid: 1, comm: "sshd", operation: "accept" }), // first: forwarded
      ...churnJson(1500),
      jsonLine({ pid: PID + 1, comm: "tg-churn", operation: "close" }),
      jsonLine({ pid: 0, comm: "", operation: "unknown", sport: 5000 }),
    ];
    const text = lines.join("\n"); // no final newline: still counted
    const bytes = new TextEncoder().encode(text).length;
    for (const [size, sample] of [[7, 1], [1000, undefined], [1 << 20, 1]] as const) {
      const counter = new JsonCounter();
      const { reader, status } = await tap("json", counter, await printer(text, size), {
        sample,
      });
      assertEquals(status.code, 0);
      assertEquals(reader.exit, { code: 0, signal: 0 });
      assert(reader.pid !== undefined && reader.pid > 0);
      assertEquals(counter.lines, 6003);
      assertEquals(counter.bytes, bytes);
      assertEquals(counter.churn, { C: 1500, A: 1500, X: 3000, U: 0 });
      assertEquals(counter.strangers, 1);
      assertEquals(counter.unknownOn([5000]), 1);
      assertEquals(counter.malformed, 0);
      assertEquals([counter.mismatches, counter.firstMismatch], [0, undefined]);
      // Forwarded: the first line, the unknown one; the others counted by tg-tap.
      assertEquals(reader.report?.forwarded, 2);
      assertEquals(reader.report?.named, 6001);
      assertEquals(counter.checked, sample === 1 ? 6001 : 6); // 1 in 1024 by default
      assert(counter.lastChurnAt !== undefined && counter.lastChurnAt <= performance.now());
    }
  },
});

Deno.test({
  name: "tg-tap json: a line it reads otherwise than JSON.parse is a mismatch",
  ignore: noCompiler,
  async fn() {
    const plain = jsonLine({ pid: PID, comm: "tg-churn", operation: "close" });
    // A second "pid" key: tg-tap reads the first, JSON.parse keeps the last.
    const twoPids = plain.replace(/}$/, ',"pid":1}');
    // Keys out of their documented order.
    const reordered = plain.replace('"type":"normal",', "").replace(/}$/, ',"type":"normal"}');
    const counter = new JsonCounter();
    await tap("json", counter, await printer([plain, twoPids, reordered].join("\n"), 4096), {
      sample: 1,
    });
    assertEquals(counter.churn.X, 3);
    assertEquals(counter.checked, 3); // the first line, read here; then tg-tap's two
    assertEquals(counter.mismatches, 2);
    assert(counter.firstMismatch?.startsWith("quick reading differs"), counter.firstMismatch);
  },
});

Deno.test({
  name: "tg-tap columns: counts rows as the columns counter does",
  ignore: noCompiler,
  async fn() {
    const lines = [COLUMNS_HEADER];
    for (let i = 0; i < 600; i++) {
      lines.push(columnsRow("C", PID, "tg-churn"), columnsRow("A", PID, "tg-churn"));
      lines.push(columnsRow("X", PID, "tg-churn"), columnsRow("X", PID, "tg-churn"));
      lines.push(columnsRow("A", 77, "xtg-churn"), columnsRow("C", 1234567, "tg-churn"));
    }
    lines.push(columnsRow("?", PID, "tg-churn")); // no kind: malformed
    lines.push(columnsRow("?", PID, "tg-churn").replace("<>               ?", "<>X")); // nor here
    lines.push(columnsRow("U", PID, "tg-churn"));
    const text = lines.join("\n") + "\n";
    for (const [size, sample] of [[5, 1], [1 << 20, undefined]] as const) {
      const counter = new ColumnsCounter();
      let first: string | undefined;
      counter.onFirstLine = (line) => first = line;
      const { reader } = await tap("columns", counter, await printer(text, size), { sample });
      assertEquals(first, COLUMNS_HEADER);
      assertEquals(counter.header, COLUMNS_HEADER);
      assertEquals(counter.lines, 3603);
      assertEquals(counter.churn, { C: 600, A: 600, X: 1200, U: 1 });
      assertEquals(counter.strangers, 600);
      assertEquals(counter.malformed, 2);
      assertEquals(counter.mismatches, 0);
      // The header, the xtg-churn rows and the malformed ones.
      assertEquals(reader.report?.forwarded, 603);
      assertEquals(counter.checked, sample === 1 ? 3001 : 3);
    }
  },
});

Deno.test({
  name: "tg-tap reference: counts lines naming the load generator, forwards the rest",
  ignore: noCompiler,
  async fn() {
    const long = "x".repeat(3 << 20); // longer than its read buffer
    const text = [
      "PID COMM",
      "1 tg-churn a",
      "2 other b",
      "Lost 5 events",
      `3 ${long}`,
      `4 ${long} tg-churn`,
    ].join("\n") + "\n";
    const counter = new ReferenceCounter();
    const { reader } = await tap("reference", counter, await printer(text, 65536));
    assertEquals(counter.header, "PID COMM");
    assertEquals([counter.lines, counter.named, counter.lostInOutput], [4, 2, 5]);
    assertEquals(counter.bytes, text.length);
    assertEquals(counter.mismatches, 0);
    assertEquals(reader.report?.forwarded, 4);
  },
});

Deno.test({
  name: "tg-tap: its output reads the same in any chunking",
  ignore: noCompiler,
  async fn() {
    const text = [jsonLine({ pid: 1, comm: "sshd", operation: "accept" }), ...churnJson(300)]
      .join("\n") + "\n";
    const { output } = await tap("json", new JsonCounter(), await printer(text, 1 << 20), {
      sample: 7,
    });
    for (const size of [1, 3, 100]) {
      const counter = new JsonCounter();
      counter.churnPid = PID;
      const reader = new TapReader(counter);
      for (let i = 0; i < output.length; i += size) reader.push(output.slice(i, i + size));
      reader.finish();
      assertEquals(counter.churn, { C: 300, A: 300, X: 600, U: 0 });
      assertEquals([counter.lines, counter.checked, counter.mismatches], [1201, 172, 0]);
      assertEquals(reader.exit, { code: 0, signal: 0 });
    }
  },
});

Deno.test({
  name: "tg-tap: reports soon after a line, even if the command then goes quiet",
  ignore: noCompiler,
  async fn() {
    const counter = new JsonCounter();
    // The first line is forwarded: the next two are only in tg-tap's reports.
    const first = jsonLine({ pid: 1, comm: "sshd", operation: "accept" });
    const line = jsonLine({ pid: PID, comm: "tg-churn", operation: "connect" });
    const script = `printf '%s\\n' '${first}' '${line}' '${line}'; exec sleep 30`;
    let pid: number | undefined;
    const started = performance.now();
    const run = tap("json", counter, ["sh", "-c", script], { onPid: (p) => pid = p });
    while (counter.churn.C < 2 && performance.now() - started < 5000) {
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const seenAfter = performance.now() - started;
    assert(pid !== undefined);
    Deno.kill(pid, "SIGTERM"); // the command, not tg-tap: it sees the pipe's end
    const { reader, status } = await run;
    assert(seenAfter < 2000, `counted after ${seenAfter} ms`);
    assertEquals(counter.churn.C, 2);
    assertEquals(reader.exit, { code: 0, signal: 15 });
    assertEquals([status.code, status.signal], [128 + 15, null]);
  },
});

Deno.test({
  name: "tg-tap: passes its exit status on, and SIGINT to the command",
  ignore: noCompiler,
  async fn() {
    const exited = await tap("json", new JsonCounter(), ["sh", "-c", "echo '{}'; exit 3"]);
    assertEquals([exited.status.code, exited.reader.exit], [3, { code: 3, signal: 0 }]);
    const missing = await tap("json", new JsonCounter(), ["/nonexistent/tracer"]);
    assertEquals(missing.reader.exit, { code: 127, signal: 0 });

    const { child, reader, output } = await startTap("json", new JsonCounter(), ["sleep", "30"]);
    await reader.pidKnown;
    child.kill("SIGINT");
    await output;
    assertEquals((await child.status).code, 128 + 2);
    assertEquals(reader.exit, { code: 0, signal: 2 });
  },
});

/** Waits until `condition` holds, 2 s at most. */
async function until(condition: () => boolean): Promise<void> {
  const deadline = performance.now() + 2000;
  while (!condition() && performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function comm(pid: number): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/comm`).trim();
  } catch {
    return undefined;
  }
}

/** Whether a process is gone (or a zombie waiting for a parent that is not us). */
function gone(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2)[0] === "Z";
  } catch {
    return true;
  }
}

Deno.test({
  name: "tg-tap: if it dies, so does the command it runs",
  ignore: noCompiler,
  async fn() {
    const { child, reader, output } = await startTap("columns", new ColumnsCounter(), [
      "sleep",
      "30",
    ]);
    const pid = await reader.pidKnown;
    assert(pid !== undefined);
    // Once it runs sleep: before, it would exit itself on finding tg-tap gone.
    await until(() => comm(pid) === "sleep");
    assertEquals(comm(pid), "sleep");
    child.kill("SIGKILL");
    await child.status;
    await output;
    await until(() => gone(pid));
    assert(gone(pid), `sleep (${pid}) outlived tg-tap`);
    assertEquals(reader.exit, undefined);
  },
});

Deno.test({
  name: "tg-tap under Children: signals go to the command, and a kill leaves no zombie",
  ignore: noCompiler,
  async fn() {
    const children = new Children();
    for (const signal of ["SIGINT", "SIGKILL"] as const) {
      const child = children.spawn("tap", await tapBinary(), {
        args: tapArgs("reference", "sleep", ["30"]),
        stdout: "piped",
      });
      const reader = new TapReader(new ReferenceCounter());
      reader.onExit = () => child.signalPid = undefined;
      const reading = (async () => {
        for await (const chunk of child.process.stdout) reader.push(chunk);
        reader.finish();
      })();
      const pid = await reader.pidKnown;
      assert(pid !== undefined);
      await until(() => comm(pid) === "sleep");
      child.signalPid = pid;
      const status = await children.stop(child, signal, 5000);
      await reading;
      const number = signal === "SIGINT" ? 2 : 9;
      assertEquals(reader.exit, { code: 0, signal: number }, signal);
      assertEquals(status.code, 128 + number);
      // Reaped by tg-tap, not left to init.
      assertEquals(comm(pid), undefined);
    }
  },
});
