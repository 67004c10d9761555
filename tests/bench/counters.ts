/**
 * Counting a tracer's output as it streams in, cheaply: at a million
 * connections a second the harness reads millions of lines, and every
 * microsecond it spends per line is taken from the workload and the tracer
 * on a 2-core machine. So the JSON of the load generator's events is not
 * given to JSON.parse line by line: the pid, comm and operation are picked
 * out with indexOf (the key order is fixed), and a sample of lines (plus
 * every line of any other process) is parsed in full to check that the
 * quick reading agrees with the real one.
 *
 * @module
 */

import { SEED_JSON_KEYS } from "../../cli/format.ts";

/** The command name of the load generator (tests/bench/churn.c). */
export const CHURN_COMM = "tg-churn";

/**
 * The documented JSON keys of an event, in the order tcpgadget writes them
 * (it may write more).
 */
export const JSON_KEYS: readonly string[] = [
  ...SEED_JSON_KEYS,
  "tid",
  "uid",
  "gid",
  "mntns",
  "netns",
  "timestamp",
];

/** Event kinds as tcpgadget's T column shows them. */
export type Kind = "C" | "A" | "X" | "U";

/** Events of the load generator, by kind. */
export interface KindCounts {
  C: number;
  A: number;
  X: number;
  U: number;
}

const NEWLINE = 0x0a;

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const joined = new Uint8Array(a.length + b.length);
  joined.set(a);
  joined.set(b, a.length);
  return joined;
}

/** Parse every this many load generator lines in full (a power of two, minus one). */
const CHECK_MASK = 1023;

/**
 * Splits a byte stream into lines and hands each to {@link handle}, with
 * a timestamp of when the last line of the load generator arrived.
 */
export abstract class LineCounter {
  readonly #decoder = new TextDecoder();
  #rest: Uint8Array = new Uint8Array(0);
  #first = true;
  /** Lines seen, not counting a header. */
  lines = 0;
  /** Bytes seen. */
  bytes = 0;
  /** performance.now() when the first line (a header, if any) arrived. */
  firstLineAt: number | undefined;
  /** The first line, if {@link hasHeader}. */
  header: string | undefined;
  /** performance.now() of the last chunk that held an event of the load generator. */
  lastChurnAt: number | undefined;
  /** pid of the load generator; its events are told apart by pid and comm. */
  churnPid = -1;
  /** Events of the load generator. */
  readonly churn: KindCounts = { C: 0, A: 0, X: 0, U: 0 };
  /** Lines with the load generator's comm but another pid (an earlier run's). */
  strangers = 0;
  /** Lines that could not be read. */
  malformed = 0;
  /** Called once with the first line. */
  onFirstLine: ((line: string) => void) | undefined;
  /** Changes with every chunk: lets a subclass keep a search position within one. */
  protected chunk = 0;

  /** @param hasHeader whether the first line is a header, not an event */
  constructor(readonly hasHeader: boolean) {}

  /** Events of the load generator counted so far. */
  get churnEvents(): number {
    return this.churn.C + this.churn.A + this.churn.X + this.churn.U;
  }

  /**
   * Feeds a chunk of output. The bytes are only read during the call (the
   * caller may reuse its buffer).
   */
  push(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    // Decode whole lines only: no multi-byte character is ever split, and
    // the decoder's faster non-streaming path does the work.
    const last = chunk.lastIndexOf(NEWLINE);
    if (last < 0) {
      this.#rest = concat(this.#rest, chunk);
      return;
    }
    let from = 0;
    if (this.#rest.length > 0) {
      // The line begun in the last chunk, on its own: no copy of this one.
      from = chunk.indexOf(NEWLINE) + 1;
      this.#lines(this.#decoder.decode(concat(this.#rest, chunk.subarray(0, from))));
    }
    if (from <= last) this.#lines(this.#decoder.decode(chunk.subarray(from, last + 1)));
    this.#rest = chunk.slice(last + 1);
  }

  /** Ends the stream: a last line without a newline still counts. */
  finish(): void {
    if (this.#rest.length === 0) return;
    const text = this.#decoder.decode(this.#rest);
    this.#rest = new Uint8Array(0);
    this.#lines(`${text}\n`);
  }

  #lines(text: string): void {
    this.chunk++;
    const before = this.churnEvents;
    let start = 0;
    let end: number;
    while ((end = text.indexOf("\n", start)) >= 0) {
      this.#line(text, start, end);
      start = end + 1;
    }
    if (this.churnEvents !== before) this.lastChurnAt = performance.now();
  }

  #line(text: string, start: number, end: number): void {
    if (this.#first) {
      this.#first = false;
      this.firstLineAt = performance.now();
      this.onFirstLine?.(text.slice(start, end));
      if (this.hasHeader) {
        this.header = text.slice(start, end);
        return;
      }
    }
    this.lines++;
    this.handle(text, start, end);
  }

  /** One line: `text.slice(start, end)`, without its newline. */
  protected abstract handle(text: string, start: number, end: number): void;
}

/** Counts `-o json` output. */
export class JsonCounter extends LineCounter {
  /** Lines parsed in full to check the quick reading. */
  checked = 0;
  /** Checked lines where the quick reading or the key order was wrong. */
  mismatches = 0;
  /** The first mismatch, for the report. */
  firstMismatch: string | undefined;
  /** U events (no process) by port, local and remote. */
  readonly unknownByPort = new Map<number, number>();
  #churnLines = 0;

  constructor() {
    super(false);
  }

  /** U events whose local or remote port is one of `ports`. */
  unknownOn(ports: readonly number[]): number {
    return ports.reduce((sum, port) => sum + (this.unknownByPort.get(port) ?? 0), 0);
  }

  protected handle(text: string, start: number, end: number): void {
    // Patterns that start with a rare character: V8 finds the first one
    // with memchr, and '"' would stop it at every key and value.
    const at = text.indexOf('pid":', start);
    if (at < 0 || at >= end) return this.#slow(text.slice(start, end));
    let i = at + 5;
    let pid = 0;
    for (let c = text.charCodeAt(i); c >= 48 && c <= 57; c = text.charCodeAt(++i)) {
      pid = pid * 10 + c - 48;
    }
    const comm = i + 9; // past ,"comm":"
    if (!text.startsWith(',"comm":"', i) || !text.startsWith(`${CHURN_COMM}"`, comm)) {
      return this.#slow(text.slice(start, end));
    }
    if (pid !== this.churnPid) {
      this.strangers++;
      return;
    }
    const op = text.indexOf('peration":"', comm);
    if (op < 0 || op >= end) return this.#slow(text.slice(start, end));
    // connect, accept, close, unknown: the second letter tells them apart.
    const kind = KIND_BY_SECOND_LETTER[text.charCodeAt(op + 12)];
    if (kind === undefined) return this.#slow(text.slice(start, end));
    this.churn[kind]++;
    if ((this.#churnLines++ & CHECK_MASK) === 0) this.#check(text.slice(start, end), pid, kind);
  }

  /** Full parse of a line that is not a plain event of the load generator. */
  #slow(line: string): void {
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line);
    } catch {
      this.malformed++;
      return;
    }
    if (typeof event !== "object" || event === null || typeof event.operation !== "string") {
      this.malformed++;
      return;
    }
    if (event.comm === CHURN_COMM) {
      // The quick reading should have taken it.
      this.#mismatch(`not read quickly: ${line}`);
      if (event.pid !== this.churnPid) this.strangers++;
      else if (event.operation in KIND_BY_OPERATION) {
        this.churn[KIND_BY_OPERATION[event.operation]]++;
      }
      return;
    }
    if (event.operation === "unknown") {
      for (const port of new Set([event.sport, event.dport])) {
        if (typeof port === "number") {
          this.unknownByPort.set(port, (this.unknownByPort.get(port) ?? 0) + 1);
        }
      }
    }
  }

  #check(line: string, pid: number, kind: Kind): void {
    this.checked++;
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line);
    } catch (error) {
      return this.#mismatch(`${error}: ${line}`);
    }
    // The documented keys, in their order; others may be added between them.
    const known = new Set<string>([...JSON_KEYS, "error"]);
    const keys = Object.keys(event).filter((key) => known.has(key));
    const expectedKeys = event.error === undefined ? JSON_KEYS : [...JSON_KEYS, "error"];
    if (keys.join() !== expectedKeys.join()) return this.#mismatch(`keys: ${line}`);
    if (
      event.pid !== pid || event.comm !== CHURN_COMM ||
      KIND_BY_OPERATION[event.operation as string] !== kind
    ) {
      return this.#mismatch(`quick reading differs: ${line}`);
    }
    if (event.saddr !== "127.0.0.1" || event.daddr !== "127.0.0.1" || event.ipversion !== 4) {
      return this.#mismatch(`addresses: ${line}`);
    }
  }

  #mismatch(description: string): void {
    this.mismatches++;
    this.firstMismatch ??= description;
  }
}

const KIND_BY_OPERATION: Record<string, Kind> = {
  connect: "C",
  accept: "A",
  close: "X",
  unknown: "U",
};

const KIND_BY_SECOND_LETTER: Record<number, Kind> = {
  [0x6f]: "C", // cOnnect
  [0x63]: "A", // aCcept
  [0x6c]: "X", // cLose
  [0x6e]: "U", // uNknown
};

/**
 * Counts default-columns output: lines with the load generator's comm,
 * and from the T and PID columns before it, kind and pid.
 */
export class ColumnsCounter extends LineCounter {
  // Not " tg-churn ": V8 searches for the first character with memchr,
  // and spaces are everywhere in a table.
  #needle = `${CHURN_COMM} `;
  #next = -1;
  #nextIn = -1;

  constructor() {
    super(true);
  }

  protected handle(text: string, start: number, end: number): void {
    // One search per chunk region, not per line: most lines are the load
    // generator's, and a line without it must not rescan the chunk.
    if (this.#nextIn !== this.chunk || (this.#next >= 0 && this.#next < start)) {
      this.#nextIn = this.chunk;
      this.#next = text.indexOf(this.#needle, start);
    }
    if (this.#next < 0 || this.#next >= end) return;
    // ... T <spaces> PID <spaces> COMM: read backwards from the comm.
    let i = this.#next - 1;
    if (text.charCodeAt(i) !== 32) {
      // Only part of a longer name.
      this.#next = text.indexOf(this.#needle, this.#next + 1);
      return;
    }
    while (i > start && text.charCodeAt(i) === 32) i--;
    let pid = 0;
    let scale = 1;
    for (let c = text.charCodeAt(i); i > start && c >= 48 && c <= 57; c = text.charCodeAt(--i)) {
      pid += (c - 48) * scale;
      scale *= 10;
    }
    while (i > start && text.charCodeAt(i) === 32) i--;
    const kind = text[i] as Kind;
    this.#next = text.indexOf(this.#needle, end);
    if (scale === 1 || !(kind in this.churn) || text.charCodeAt(i - 1) !== 32) {
      this.malformed++;
      return;
    }
    if (pid !== this.churnPid) {
      this.strangers++;
      return;
    }
    this.churn[kind]++;
  }
}

/**
 * Counts the output of a reference tool (tcplife, tcpstates, bpftrace,
 * ...): lines, and lines that name the load generator.
 */
export class ReferenceCounter extends LineCounter {
  /** Lines that name the load generator. */
  named = 0;
  /** Events bpftrace says it lost ("Lost N events" in its output). */
  lostInOutput = 0;
  #next = -1;
  #nextIn = -1;

  constructor() {
    super(true);
  }

  // These tools report lifetimes or states, not C/A/X: what counts is lines.
  override get churnEvents(): number {
    return this.named;
  }

  protected handle(text: string, start: number, end: number): void {
    if (text.startsWith("Lost ", start)) {
      const lost = text.slice(start, end).match(/^Lost (\d+) events/);
      if (lost) {
        this.lines--;
        this.lostInOutput += Number(lost[1]);
        return;
      }
    }
    if (this.#nextIn !== this.chunk || (this.#next >= 0 && this.#next < start)) {
      this.#nextIn = this.chunk;
      this.#next = text.indexOf(CHURN_COMM, start);
    }
    if (this.#next < 0 || this.#next >= end) return;
    this.#next = text.indexOf(CHURN_COMM, end);
    this.named++;
  }
}

/** Sum of the "lost N events" a tracer reported on stderr. */
export function lostEvents(stderr: string): number {
  let total = 0;
  for (const match of stderr.matchAll(/lost (\d+) events/gi)) total += Number(match[1]);
  return total;
}
