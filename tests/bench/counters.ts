/**
 * Counting a tracer's output as it streams in, cheaply: at a million
 * connections a second there are millions of lines, and every microsecond
 * spent per line is taken from the workload and the tracer on a 2-core
 * machine.
 *
 * In the benchmark, tg-tap (tap.c, see tap.ts) reads the tracer's output
 * and counts the plain lines of the load generator itself; the counters
 * here get what it forwards: the first line, every other line, and a
 * sample of the plain ones to check in full (the C reading against the
 * real one), plus tg-tap's counts. They can also read a stream on their
 * own ({@link LineCounter.push}), with the same quick reading in
 * JavaScript: the JSON of the load generator's events is not given to
 * JSON.parse line by line, the pid, comm and operation are picked out with
 * indexOf (the key order is fixed), and a sample of lines (plus every line
 * of any other process) is parsed in full.
 *
 * @module
 */

import { SEED_JSON_KEYS } from "../../cli/output/json_formatter.ts";

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

const KINDS: readonly Kind[] = ["C", "A", "X", "U"];

function isKind(value: string): value is Kind {
  return (KINDS as readonly string[]).includes(value);
}

/** What tg-tap counted itself: the plain lines of the load generator. */
export interface TapCounts {
  /** Bytes it read. */
  bytes: number;
  /** Plain lines of the load generator it counted (not forwarded). */
  named: number;
  /** Those lines by pid (json, columns): [pid, C, A, X, U]. */
  pids: number[][];
  /** [C, A, X, U] of pids past its table. */
  overflow: number[];
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

/** A quick reading of a line: the pid and kind of a plain line of the load generator. */
interface Reading {
  pid: number;
  kind: Kind;
}

/**
 * Splits a byte stream into lines (or takes the lines tg-tap forwards)
 * and hands each to {@link handle}; adds what tg-tap counted itself.
 */
export abstract class LineCounter {
  readonly #decoder = new TextDecoder();
  #rest: Uint8Array = new Uint8Array(0);
  #first = true;
  #handlingFirst = false;
  #ownBytes = 0;
  #ownChurnAt: number | undefined;
  #tap: TapCounts | undefined;
  #tapChurnAt: number | undefined;
  #forwardedSeen = 0;
  #sampledSeen = 0;
  /** Lines read here (not by tg-tap), not counting a header. */
  protected ownLines = 0;
  /** Events of the load generator read here. */
  protected readonly ownChurn: KindCounts = { C: 0, A: 0, X: 0, U: 0 };
  /** Lines read here with the load generator's comm but another pid. */
  protected ownStrangers = 0;
  /**
   * Whether tg-tap feeds this counter: it counts the plain lines of the
   * load generator itself, so a forwarded line (but the first) that is
   * one means that it misread.
   */
  fedByTap = false;
  /** performance.now() when the first line (a header, if any) arrived. */
  firstLineAt: number | undefined;
  /** The first line, if {@link hasHeader}. */
  header: string | undefined;
  /** pid of the load generator; its events are told apart by pid and comm. */
  churnPid = -1;
  /** Lines that could not be read. */
  malformed = 0;
  /** Lines checked in full against a quick reading. */
  checked = 0;
  /** Checked lines where the quick reading (or the JSON key order) was wrong. */
  mismatches = 0;
  /** The first mismatch, for the report. */
  firstMismatch: string | undefined;
  /** Called once with the first line. */
  onFirstLine: ((line: string) => void) | undefined;

  /** @param hasHeader whether the first line is a header, not an event */
  constructor(readonly hasHeader: boolean) {}

  /** Lines of the tracer, not counting a header. */
  get lines(): number {
    return this.ownLines + (this.#tap?.named ?? 0);
  }

  /** Bytes of the tracer's output. */
  get bytes(): number {
    return this.#ownBytes + (this.#tap?.bytes ?? 0);
  }

  /** Events of the load generator (its pid and comm). */
  get churn(): KindCounts {
    const counts = { ...this.ownChurn };
    const row = this.#tap?.pids.find(([pid]) => pid === this.churnPid);
    if (row !== undefined) KINDS.forEach((kind, i) => counts[kind] += row[i + 1]);
    return counts;
  }

  /** Events with the load generator's comm but another pid (an earlier run's). */
  get strangers(): number {
    let total = this.ownStrangers;
    for (const [pid, ...kinds] of this.#tap?.pids ?? []) {
      if (pid !== this.churnPid) total += kinds.reduce((a, b) => a + b, 0);
    }
    return total + (this.#tap?.overflow ?? []).reduce((a, b) => a + b, 0);
  }

  /** The other pids tg-tap saw with the load generator's comm (an earlier run's, another's). */
  get strangerPids(): number[] {
    return (this.#tap?.pids ?? []).map(([pid]) => pid).filter((pid) => pid !== this.churnPid);
  }

  /** Events of the load generator counted so far. */
  get churnEvents(): number {
    const { C, A, X, U } = this.churn;
    return C + A + X + U;
  }

  /** performance.now() of the last chunk that held an event of the load generator. */
  get lastChurnAt(): number | undefined {
    if (this.#ownChurnAt === undefined) return this.#tapChurnAt;
    if (this.#tapChurnAt === undefined) return this.#ownChurnAt;
    return Math.max(this.#ownChurnAt, this.#tapChurnAt);
  }

  /**
   * Feeds a chunk of output. The bytes are only read during the call (the
   * caller may reuse its buffer).
   */
  push(chunk: Uint8Array): void {
    this.#ownBytes += chunk.length;
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

  /** A line that tg-tap forwarded (without its newline). */
  line(text: string): void {
    this.#forwardedSeen++;
    const before = this.churnEvents;
    this.#line(text, 0, text.length);
    if (this.churnEvents !== before) this.#ownChurnAt = performance.now();
  }

  /** A plain line of the load generator that tg-tap counted, as it read it. */
  sample(pid: number, kind: string, text: string): void {
    this.#sampledSeen++;
    this.checked++;
    this.checkSample(pid, kind, text);
  }

  /**
   * tg-tap's counts so far (they replace the last ones), and
   * performance.now() of its last read that held a plain line.
   */
  tapReport(counts: TapCounts, lastChurnAt: number | undefined): void {
    this.#tap = counts;
    this.#tapChurnAt = lastChurnAt;
  }

  /** tg-tap's last report: whether every line it forwarded or sampled arrived here. */
  tapFinished(forwarded: number, sampled: number): void {
    if (forwarded !== this.#forwardedSeen || sampled !== this.#sampledSeen) {
      this.mismatch(
        `tg-tap forwarded ${forwarded} lines and ${sampled} samples, ` +
          `${this.#forwardedSeen} and ${this.#sampledSeen} arrived`,
      );
    }
  }

  #lines(text: string): void {
    const before = this.churnEvents;
    let start = 0;
    let end: number;
    while ((end = text.indexOf("\n", start)) >= 0) {
      this.#line(text, start, end);
      start = end + 1;
    }
    if (this.churnEvents !== before) this.#ownChurnAt = performance.now();
  }

  #line(text: string, start: number, end: number): void {
    this.#handlingFirst = this.#first;
    if (this.#first) {
      this.#first = false;
      this.firstLineAt = performance.now();
      this.onFirstLine?.(text.slice(start, end));
      if (this.hasHeader) {
        this.header = text.slice(start, end);
        return;
      }
    }
    this.ownLines++;
    this.handle(text, start, end);
  }

  /** One line: `text.slice(start, end)`, without its newline. */
  protected abstract handle(text: string, start: number, end: number): void;

  /** Checks a line that tg-tap read as `pid` and `kind` (see {@link sample}). */
  protected abstract checkSample(pid: number, kind: string, line: string): void;

  /**
   * Counts a plain line of the load generator read here; one that tg-tap
   * forwarded (but the first) should have been counted by it.
   */
  protected countOwn(reading: Reading, line: () => string): void {
    if (this.fedByTap && !this.#handlingFirst) this.mismatch(`tg-tap did not read: ${line()}`);
    if (reading.pid !== this.churnPid) this.ownStrangers++;
    else this.ownChurn[reading.kind]++;
  }

  /** Notes a line whose readings disagree, or output that is not as it should be. */
  mismatch(description: string): void {
    this.mismatches++;
    this.firstMismatch ??= description;
  }
}

/** Counts `-o json` output. */
export class JsonCounter extends LineCounter {
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
    const reading = this.#quick(text, start, end);
    if (reading === undefined) return this.#slow(text.slice(start, end));
    this.countOwn(reading, () => text.slice(start, end));
    if ((this.#churnLines++ & CHECK_MASK) === 0) {
      this.checked++;
      this.#check(text.slice(start, end), reading.pid, reading.kind);
    }
  }

  protected checkSample(pid: number, kind: string, line: string): void {
    if (!isKind(kind)) return this.mismatch(`tg-tap's kind ${kind}: ${line}`);
    this.#check(line, pid, kind);
  }

  /**
   * The pid, comm and operation, by position; undefined if the line is not
   * a plain event of the load generator (tap.c's read_json reads alike).
   */
  #quick(text: string, start: number, end: number): Reading | undefined {
    // Patterns that start with a rare character: V8 finds the first one
    // with memchr, and '"' would stop it at every key and value.
    const at = text.indexOf('pid":', start);
    if (at <= start || at >= end || text.charCodeAt(at - 1) !== 0x22) return undefined;
    let i = at + 5;
    let pid = 0;
    let digits = 0;
    for (let c = text.charCodeAt(i); c >= 48 && c <= 57 && digits < 10; c = text.charCodeAt(++i)) {
      pid = pid * 10 + c - 48;
      digits++;
    }
    if (digits === 0 || digits === 10) return undefined;
    const comm = i + 9; // past ,"comm":"
    if (!text.startsWith(',"comm":"', i) || !text.startsWith(`${CHURN_COMM}"`, comm)) {
      return undefined;
    }
    const op = text.indexOf('"operation":"', comm);
    if (op < 0 || op >= end) return undefined;
    const close = text.indexOf('"', op + 13);
    const kind = close >= 0 && close < end ? kindOf(text.slice(op + 13, close)) : undefined;
    return kind === undefined ? undefined : { pid, kind };
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
      this.mismatch(`not read quickly: ${line}`);
      const kind = kindOf(event.operation);
      if (event.pid !== this.churnPid) this.ownStrangers++;
      else if (kind !== undefined) this.ownChurn[kind]++;
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
    let event: Record<string, unknown>;
    try {
      event = JSON.parse(line);
    } catch (error) {
      return this.mismatch(`${error}: ${line}`);
    }
    // The documented keys, in their order; others may be added between them.
    const known = new Set<string>([...JSON_KEYS, "error"]);
    const keys = Object.keys(event).filter((key) => known.has(key));
    const expectedKeys = event.error === undefined ? JSON_KEYS : [...JSON_KEYS, "error"];
    if (keys.join() !== expectedKeys.join()) return this.mismatch(`keys: ${line}`);
    if (
      event.pid !== pid || event.comm !== CHURN_COMM ||
      kindOf(event.operation) !== kind
    ) {
      return this.mismatch(`quick reading differs: ${line}`);
    }
    if (event.saddr !== "127.0.0.1" || event.daddr !== "127.0.0.1" || event.ipversion !== 4) {
      return this.mismatch(`addresses: ${line}`);
    }
  }
}

const KIND_BY_OPERATION: Readonly<Record<string, Kind>> = {
  connect: "C",
  accept: "A",
  close: "X",
  unknown: "U",
};

/** The kind of an event's operation, if it is one of the four. */
function kindOf(operation: unknown): Kind | undefined {
  return typeof operation === "string" && Object.hasOwn(KIND_BY_OPERATION, operation)
    ? KIND_BY_OPERATION[operation]
    : undefined;
}

/** The load generator's comm as a whole word, followed by a space (as in a table row). */
const COLUMNS_NEEDLE = `${CHURN_COMM} `;

/**
 * Counts default-columns output: lines with the load generator's comm,
 * and from the T and PID columns before it, kind and pid.
 */
export class ColumnsCounter extends LineCounter {
  constructor() {
    super(true);
  }

  protected handle(text: string, start: number, end: number): void {
    const line = text.slice(start, end);
    const reading = readColumns(line);
    if (reading === "malformed") this.malformed++;
    else if (reading !== undefined) this.countOwn(reading, () => line);
  }

  protected checkSample(pid: number, kind: string, line: string): void {
    const reading = readColumns(line);
    if (typeof reading !== "object" || reading.pid !== pid || reading.kind !== kind) {
      this.mismatch(`tg-tap read ${kind} ${pid}: ${line}`);
    }
  }
}

/**
 * A row of the default columns: `... T <spaces> PID <spaces> tg-churn ...`,
 * read backwards from the comm (tap.c's read_columns reads alike).
 * Undefined if the line does not name the load generator.
 */
export function readColumns(line: string): Reading | "malformed" | undefined {
  let at = line.indexOf(COLUMNS_NEEDLE);
  // The comm, whole: not the end of a longer name.
  while (at === 0 || (at > 0 && line.charCodeAt(at - 1) !== 32)) {
    at = line.indexOf(COLUMNS_NEEDLE, at + 1);
  }
  if (at < 0) return undefined;
  let i = at - 1;
  while (i > 0 && line.charCodeAt(i) === 32) i--;
  let pid = 0;
  let scale = 1;
  let digits = 0;
  for (let c = line.charCodeAt(i); i > 0 && c >= 48 && c <= 57; c = line.charCodeAt(--i)) {
    pid += (c - 48) * scale;
    scale *= 10;
    digits++;
  }
  while (i > 0 && line.charCodeAt(i) === 32) i--;
  const kind = line[i];
  if (digits === 0 || digits > 9 || i === 0 || line.charCodeAt(i - 1) !== 32 || !isKind(kind)) {
    return "malformed";
  }
  return { pid, kind };
}

/**
 * Counts the output of a reference tool (tcplife, tcpstates, bpftrace,
 * ...): lines, and lines that name the load generator.
 */
export class ReferenceCounter extends LineCounter {
  /** Events bpftrace says it lost ("Lost N events" in its output). */
  lostInOutput = 0;
  #ownNamed = 0;
  #tapNamed = 0;

  constructor() {
    super(true);
  }

  /** Lines that name the load generator. */
  get named(): number {
    return this.#ownNamed + this.#tapNamed;
  }

  // These tools report lifetimes or states, not C/A/X: what counts is lines.
  override get churnEvents(): number {
    return this.named;
  }

  override tapReport(counts: TapCounts, lastChurnAt: number | undefined): void {
    super.tapReport(counts, lastChurnAt);
    this.#tapNamed = counts.named;
  }

  protected handle(text: string, start: number, end: number): void {
    const line = text.slice(start, end);
    if (line.startsWith("Lost ")) {
      const lost = line.match(/^Lost (\d+) events/);
      if (lost) {
        this.ownLines--;
        this.lostInOutput += Number(lost[1]);
        return;
      }
    }
    if (!line.includes(CHURN_COMM)) return;
    this.#ownNamed++;
    // The first line, a header, is not handled here: tg-tap should have counted this one.
    if (this.fedByTap) this.mismatch(`tg-tap did not read: ${line}`);
  }

  protected checkSample(_pid: number, _kind: string, line: string): void {
    if (!line.includes(CHURN_COMM)) this.mismatch(`tg-tap read as naming ${CHURN_COMM}: ${line}`);
  }
}

/** Sum of the "lost N events" (and "lost up to N events") a tracer reported on stderr. */
export function lostEvents(stderr: string): number {
  let total = 0;
  for (const match of stderr.matchAll(/lost (?:up to )?(\d+) events/gi)) total += Number(match[1]);
  return total;
}
