/**
 * The output's buffers against a reader that stalls: backpressure, events
 * over the limit taken back whole and counted, what a stop cannot write
 * counted exactly, lines that stay whole. (With real pipes, sockets and
 * processes: cli_stop_test.ts.)
 */

import { LineOutput } from "../cli/output/line_output.ts";
import type { ChunkWriter } from "../cli/output/nonblocking_writer.ts";
import { formatterFor } from "../cli/output/formatter.ts";
import { writeTo } from "../cli/pipeline.ts";
import type { TraceEvent } from "../core/trace_event.ts";
import { assert, assertEquals } from "./helpers/assert.ts";

/** A reader that takes `budget` bytes, then nothing until given more. */
class Reader implements ChunkWriter {
  text = "";
  budget: number;
  #wake: (() => void) | undefined;

  constructor(budget: number) {
    this.budget = budget;
  }

  give(bytes: number): void {
    this.budget += bytes;
    this.#wake?.();
  }

  write(data: Uint8Array): number {
    const taken = Math.min(this.budget, data.length);
    this.budget -= taken;
    this.text += new TextDecoder().decode(data.subarray(0, taken));
    return taken;
  }

  waitWritable(): boolean {
    return this.budget > 0;
  }

  writable(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.budget > 0), timeoutMs);
      this.#wake = () => {
        clearTimeout(timer);
        resolve(true);
      };
    });
  }

  readerGone(): boolean {
    return false;
  }

  close(): void {}
}

const event = (pid: number): TraceEvent => ({
  type: "C",
  timeSec: 1_700_000_000,
  timeNsec: pid,
  pid,
  tid: pid,
  uid: 0,
  gid: 0,
  comm: `proc-${pid % 3}`,
  mntns: 1,
  netns: 2,
  cgroupId: 0,
  ipversion: 4,
  saddr: "10.0.0.1",
  sport: 40000 + pid,
  daddr: "10.0.0.2",
  dport: 80,
  node: "node-a",
  namespace: "",
  pod: "",
  container: "",
});

Deno.test("output: a stalled reader holds the producer back; a stop counts what was not written", async () => {
  const reader = new Reader(100);
  const output = new LineOutput(reader, { flushAt: 256 });
  const formatter = formatterFor("custom-columns=pid,comm,sport");
  const sink = writeTo(formatter, output);
  output.line(formatter.header()!);
  let pid = 1;
  while (!output.backlogged) sink(event(pid++));
  const queued = pid - 1;
  // The reader took 100 bytes of the first chunk, and waits.
  assertEquals(reader.text.length, 100);
  const stop = new AbortController();
  const ready = output.ready(stop.signal);
  setTimeout(() => stop.abort(), 20);
  await ready; // the stop, not the reader, ends the wait
  const notWritten = await output.finish(50);
  // Exactly the events whose lines did not reach the reader whole.
  const whole = reader.text.split("\n").slice(1, -1);
  assertEquals(notWritten, queued - whole.length);
  assert(notWritten > 0);
  for (let i = 0; i < whole.length; i++) {
    assertEquals(whole[i], formatter.format(event(i + 1)));
  }
});

Deno.test("output: past the limit, events are taken back whole and counted; later lines stay exact", async () => {
  const reader = new Reader(0);
  const output = new LineOutput(reader, { flushAt: 256, limit: 600 });
  // Columns: each line is written over a copy of the one before.
  const formatter = formatterFor("columns");
  const sink = writeTo(formatter, output);
  for (let pid = 1; pid <= 40; pid++) sink(event(pid));
  assert(output.backlogged);
  // The reader takes everything from now on; events flow again.
  reader.give(1 << 20);
  await output.ready(new AbortController().signal);
  for (let pid = 41; pid <= 45; pid++) sink(event(pid));
  const notWritten = await output.finish(5000);
  const lines = reader.text.split("\n").slice(0, -1);
  assertEquals(notWritten, 45 - lines.length);
  assert(notWritten > 0, "some events were over the limit");
  // Every line written is one event's, whole and exact, in order; the
  // lines after the events taken back are not written over their bytes.
  const pids = lines.map((line) => Number(line.split(/\s+/)[5]));
  assertEquals(pids, [...pids].sort((a, b) => a - b));
  assertEquals(pids.slice(-5), [41, 42, 43, 44, 45]);
  const fresh = formatterFor("columns");
  for (const [i, line] of lines.entries()) assertEquals(line, fresh.format(event(pids[i])));
});
