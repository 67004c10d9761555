/**
 * tcpgadget's benchmark: loopback TCP connection churn, untraced and under
 * tcpgadget (`-o json` and default columns) and, for reference, under
 * libbpf-tools' tcplife, tcpstates and tcptracer and a bpftrace script of
 * the same C/A/X events (tcp_cax.bt), those that are installed; and
 * `egress run` (egress_run.ts): tg-churn judged as its COMMAND, and the
 * start-up cost on a command making few connections. Prints figures;
 * passes or fails nothing.
 *
 *   deno run -A tests/bench/bench.ts [--quick] [--connections N] [--rounds R]
 *     [--threads T] [--inflight K] [--only json|columns|reference|egress]
 *
 * Needs root (the tracers load BPF) and a C compiler (the load generator,
 * churn.c, and the reader of the tracers' output, tap.c, are compiled into
 * a temporary directory at start).
 *
 * Runs alternate, untraced then traced, for each tracer in each round, so
 * that a drift in the machine's speed (other work, thermal, ...) touches
 * both alike; the report gives medians, and the ratio is the median of
 * each traced run over the mean of the untraced runs just before and just
 * after it (a last untraced run closes the sequence), which cancels a
 * steady drift.
 *
 * @module
 */

import { parseArgs } from "node:util";
import type { ChurnOptions, ChurnResult } from "./churn.ts";
import { buildChurn } from "./churn.ts";
import { Children } from "./children.ts";
import { CHURN_COMM } from "./counters.ts";
import {
  type EgressChurnResult,
  runEgressChurn,
  runStartup,
  type StartupResult,
} from "./egress_run.ts";
import {
  backgroundBusy,
  debianPackageVersion,
  enableBpfStats,
  machineDescription,
} from "./procfs.ts";
import { buildTap } from "./tap.ts";
import {
  AttachError,
  type Binaries,
  type Mode,
  referenceSpecs,
  type RunLimits,
  runTraced,
  runUntraced,
  tcpgadgetSpecs,
  type TracedResult,
  type TracerSpec,
} from "./tracers.ts";

const USAGE = `Usage: deno run -A tests/bench/bench.ts [options]

Loopback TCP connection churn, untraced and traced by tcpgadget (-o json, columns)
and, where installed, by libbpf-tools' tcplife/tcpstates/tcptracer and bpftrace
(tests/bench/tcp_cax.bt); and tg-churn as COMMAND of 'egress run', and egress run's
start-up cost on a command making few connections; prints figures. Needs root and a C compiler.

Options:
  --connections N   connections per run (default 1000000; 100000 with --quick);
                    suffixes k and M are accepted: 250k, 1M
  --rounds R        rounds of untraced/traced pairs per tracer (default 3; 1 with --quick)
  --threads T       load generator worker threads (default: the number of CPUs)
  --inflight K      connections in flight per worker thread (default 16)
  --only WHAT       json, columns, reference or egress; repeat or separate with commas
                    (default: all)
  --bpf-stats       also measure the kernel time of each tracer's BPF programs
                    (turns on kernel.bpf_stats_enabled while running, which
                    adds a little to every BPF program run)
  --quick           a short run to check that everything works
  -h, --help        this text
`;

/** The benchmark's settings. */
export interface BenchOptions {
  churn: ChurnOptions;
  rounds: number;
  modes: Set<Mode>;
  /** The `egress run` rows. */
  egress: boolean;
  /** Measure the BPF programs' kernel time (kernel.bpf_stats_enabled). */
  bpfStats: boolean;
}

function parseCount(flag: string, text: string, min: number): number {
  const match = text.trim().replaceAll("_", "").match(/^(\d+(?:\.\d+)?)([kKmM]?)$/);
  const value = match ? Number(match[1]) * ({ k: 1e3, m: 1e6 }[match[2].toLowerCase()] ?? 1) : NaN;
  if (!Number.isInteger(value) || value < min) {
    throw new UsageError(`${flag} wants a whole number of at least ${min}, not "${text}"`);
  }
  return value;
}

class UsageError extends Error {}

/** Parses the command line; undefined means --help. */
export function parseOptions(args: string[]): BenchOptions | undefined {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        connections: { type: "string" },
        rounds: { type: "string" },
        threads: { type: "string" },
        inflight: { type: "string" },
        only: { type: "string", multiple: true },
        quick: { type: "boolean" },
        "bpf-stats": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error));
  }
  if (parsed.help) return undefined;
  const quick = parsed.quick ?? false;
  const modes = new Set<Mode>();
  let egress = false;
  for (
    const item of (parsed.only ?? ["json,columns,reference,egress"]).flatMap((s) => s.split(","))
  ) {
    const mode = item.trim();
    if (mode === "egress") {
      egress = true;
      continue;
    }
    if (mode !== "json" && mode !== "columns" && mode !== "reference") {
      throw new UsageError(`--only wants json, columns, reference or egress, not "${mode}"`);
    }
    modes.add(mode);
  }
  return {
    churn: {
      connections: parseCount(
        "--connections",
        parsed.connections ?? (quick ? "100000" : "1000000"),
        1,
      ),
      threads: parseCount("--threads", parsed.threads ?? String(navigator.hardwareConcurrency), 1),
      inflight: parseCount("--inflight", parsed.inflight ?? "16", 1),
    },
    rounds: parseCount("--rounds", parsed.rounds ?? (quick ? "1" : "3"), 1),
    modes,
    egress,
    bpfStats: parsed["bpf-stats"] ?? false,
  };
}

// ---------------------------------------------------------------- figures

function median(values: number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

function int(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "-";
}

function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : "-";
}

function mib(bytes: number | undefined): string {
  return bytes === undefined || !Number.isFinite(bytes) ? "-" : `${(bytes / 2 ** 20).toFixed(0)}`;
}

/** A text table: first column left-aligned, the others right-aligned. */
function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]?.length ?? 0)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)];
}

/** A traced run with the untraced runs just before and just after it. */
interface Pair {
  before: ChurnResult;
  traced: TracedResult;
  after: ChurnResult;
}

/** The traced rate over the mean untraced rate around it. */
const vsUntraced = (p: Pair) => p.traced.churn.rate / ((p.before.rate + p.after.rate) / 2);

/** Tracer CPU seconds per million lines printed (events, for tcpgadget). */
const cpuPerMillion = (r: TracedResult) => r.lines > 0 ? r.cpu / r.lines * 1e6 : NaN;
/** Tracer CPU as a share of one core, while the workload ran and the tracer caught up. */
const cpuShare = (r: TracedResult) => r.cpu / (r.churn.seconds + r.lagSeconds);
/** Kernel time of the tracer's BPF programs per connection, in microseconds. */
const bpfPerConnection = (r: TracedResult) => r.bpf.runTimeNs / r.churn.connections / 1000;
/** The --bpf-stats column, if asked for. */
const bpfColumn = (runs: TracedResult[], shown: boolean) =>
  shown ? [fixed(median(runs.map(bpfPerConnection)), 2)] : [];

function tcpgadgetRows(pairsBySpec: Map<TracerSpec, Pair[]>, bpf: boolean): string[][] {
  const rows: string[][] = [];
  for (const [spec, pairs] of pairsBySpec) {
    if (spec.mode === "reference" || pairs.length === 0) continue;
    const runs = pairs.map((p) => p.traced);
    const expected = sum(runs.map((r) => 4 * r.churn.connections));
    const received = sum(runs.map((r) => r.churnEvents));
    rows.push([
      spec.label,
      int(median(runs.map((r) => r.churn.rate))),
      `${fixed(median(pairs.map(vsUntraced)), 2)}x`,
      int(expected),
      int(received),
      int(sum(runs.map((r) => r.lost))),
      int(expected - received),
      fixed(median(runs.map(cpuPerMillion)), 2),
      `${fixed(100 * median(runs.map(cpuShare)), 0)}%`,
      mib(Math.max(...runs.map((r) => r.peakRss ?? NaN))),
      int(median(runs.map((r) => r.attachMs))),
      fixed(median(runs.map((r) => r.lagSeconds)), 2),
      ...bpfColumn(runs, bpf),
    ]);
  }
  return rows;
}

function referenceRows(pairsBySpec: Map<TracerSpec, Pair[]>, bpf: boolean): string[][] {
  const rows: string[][] = [];
  for (const [spec, pairs] of pairsBySpec) {
    if (spec.mode !== "reference" || pairs.length === 0) continue;
    const runs = pairs.map((p) => p.traced);
    const lines = sum(runs.map((r) => r.lines));
    rows.push([
      spec.label,
      int(median(runs.map((r) => r.churn.rate))),
      `${fixed(median(pairs.map(vsUntraced)), 2)}x`,
      int(lines),
      fixed(lines / sum(runs.map((r) => r.churn.connections)), 2),
      int(sum(runs.map((r) => r.churnEvents))),
      int(sum(runs.map((r) => r.lost))),
      fixed(median(runs.map(cpuPerMillion)), 2),
      `${fixed(100 * median(runs.map(cpuShare)), 0)}%`,
      mib(Math.max(...runs.map((r) => r.peakRss ?? NaN))),
      int(median(runs.map((r) => r.attachMs))),
      ...bpfColumn(runs, bpf),
    ]);
  }
  return rows;
}

function report(
  options: BenchOptions,
  untraced: ChurnResult[],
  pairsBySpec: Map<TracerSpec, Pair[]>,
  unavailable: Map<string, string>,
): string[] {
  const out: string[] = [];
  const untracedRate = median(untraced.map((r) => r.rate));
  out.push("");
  out.push(
    ...table(
      [
        "tracer",
        "conn/s",
        "vs untraced",
        "events expected",
        "received",
        "lost",
        "missing",
        "CPU s/M events",
        "CPU/core",
        "peak RSS MiB",
        "attach ms",
        "catch-up s",
        ...(options.bpfStats ? ["BPF µs/conn"] : []),
      ],
      [["untraced", int(untracedRate), "1.00x"], ...tcpgadgetRows(pairsBySpec, options.bpfStats)],
    ),
  );
  const refs = referenceRows(pairsBySpec, options.bpfStats);
  if (refs.length > 0 || unavailable.size > 0) {
    const versions = [
      ["libbpf-tools", debianPackageVersion("libbpf-tools")],
      ["bpftrace", debianPackageVersion("bpftrace")],
    ].filter(([, version]) => version).map(([name, version]) => `${name} ${version}`);
    out.push("");
    out.push(
      `reference tools${versions.length > 0 ? ` (${versions.join(", ")})` : ""}: ` +
        "tcplife prints a line per closed socket, tcpstates one per state change,",
    );
    out.push(`tcp_cax.bt (tests/bench) one per C, A and X event like tcpgadget.`);
    if (refs.length > 0) {
      out.push(
        ...table(
          [
            "tool",
            "conn/s",
            "vs untraced",
            "lines",
            "per conn",
            `naming ${CHURN_COMM}`,
            "lost",
            "CPU s/M lines",
            "CPU/core",
            "peak RSS MiB",
            "attach ms",
            ...(options.bpfStats ? ["BPF µs/conn"] : []),
          ],
          refs,
        ),
      );
    }
    for (const [tool, why] of unavailable) out.push(`${tool}: not measured: ${why}`);
  }

  out.push("");
  out.push("conn/s of each run, in order:");
  out.push(`  untraced: ${untraced.map((r) => int(r.rate)).join(", ")}`);
  for (const [spec, pairs] of pairsBySpec) {
    if (pairs.length === 0) continue;
    out.push(`  ${spec.label}: ${pairs.map((p) => int(p.traced.churn.rate)).join(", ")}`);
  }
  const notes: string[] = [];
  for (const [spec, pairs] of pairsBySpec) {
    for (const [i, pair] of pairs.entries()) {
      for (const anomaly of pair.traced.anomalies) {
        notes.push(`  ${spec.label}, round ${i + 1}: ${anomaly}`);
      }
    }
  }
  const churnErrors = sum([
    ...untraced.map((r) => r.errors),
    ...[...pairsBySpec.values()].flat().map((p) => p.traced.churn.errors),
  ]);
  if (churnErrors > 0) notes.push(`  the load generator had ${churnErrors} errors (retried)`);
  if (notes.length > 0) out.push("", "notes:", ...notes);

  const traced = [...pairsBySpec.values()].flat().map((p) => p.traced)
    .filter((r) => r.spec.mode !== "reference");
  const readerPerMillion = median(
    traced.map((r) => r.lines > 0 ? r.readerCpu / r.lines * 1e6 : NaN),
  );
  out.push("");
  out.push(
    "How to read: conn/s is the load generator's rate (median); vs untraced the median of each",
    "traced run over the mean of the untraced runs just before and after it. Events expected: 4",
    `per connection (C, A, X, X) over all rounds; received: those of ${CHURN_COMM} (its pid and`,
    "comm) in the tracer's output; lost: what the tracer reported. CPU: user+system time of the",
    "tracer's process tree (/proc/<pid>/stat) from attached to its last line read, per million",
    "lines it printed, and as a share of one core. Peak RSS: VmHWM just before it was stopped.",
    "Attach: from spawn to its 'tracing' line (json) or header (columns); for reference tools, to their BPF",
    "programs showing in /proc/<pid>/fd. Catch-up: from the end of the workload to the last of",
    "its events read. Notes: what should not happen, e.g. for a reference tool recursion_misses:",
    "runs of its BPF programs that the kernel skipped because one was already running on that",
    "CPU (an event there would be missing without being counted as lost; tcpgadget rescues them).",
    "The tracer's output is read by tg-tap (tests/bench/tap.c), a native reader that counts the",
    `lines of ${CHURN_COMM} itself and passes every other line, and one in 1024 of its lines,`,
    "to this harness to check in full: reading costs about what `cat >/dev/null` would.",
  );
  if (options.bpfStats) {
    out.push(
      "BPF µs/conn: run time of the tracer's BPF programs in the kernel (kernel.bpf_stats_enabled)",
      "per connection of the load generator, which they slow down directly.",
    );
  }
  if (Number.isFinite(readerPerMillion)) {
    out.push(
      `Reading tcpgadget's output took ${fixed(readerPerMillion, 3)} CPU s/M lines ` +
        "(tg-tap and this harness).",
    );
  }
  return out;
}

/** The `egress run` measurements. */
interface EgressFigures {
  /** tg-churn alone, before, between and after the judged runs. */
  untraced: EgressChurnResult[];
  /** tg-churn as COMMAND of `egress run`. */
  judged: EgressChurnResult[];
  startUntraced: StartupResult[];
  startJudged: StartupResult[];
}

function egressReport(figures: EgressFigures): string[] {
  const { untraced, judged } = figures;
  // Each judged run over the mean of the untraced runs just before and after it.
  const ratios = judged.map((run, i) =>
    run.churn.rate / ((untraced[i].churn.rate + untraced[i + 1].churn.rate) / 2)
  );
  const cpuPerConn = (runs: EgressChurnResult[]) =>
    median(runs.map((r) => r.cpu / r.churn.connections * 1e6));
  const out = [
    "",
    "egress run: tg-churn as COMMAND (egress run --allow 127.0.0.1 -- tg-churn ...), each",
    "connection judged, against tg-churn alone",
    ...table(
      ["run", "conn/s", "vs untraced", "connections", "judged", "lost", "CPU µs/conn", "exit"],
      [
        [
          "untraced",
          int(median(untraced.map((r) => r.churn.rate))),
          "1.00x",
          int(sum(untraced.map((r) => r.churn.connections))),
          "",
          "",
          fixed(cpuPerConn(untraced), 2),
          untraced.map((r) => r.code).join(","),
        ],
        [
          "egress run",
          int(median(judged.map((r) => r.churn.rate))),
          `${fixed(median(ratios), 2)}x`,
          int(sum(judged.map((r) => r.churn.connections))),
          int(sum(judged.map((r) => r.judged ?? NaN))),
          int(sum(judged.map((r) => r.lost ?? NaN))),
          fixed(cpuPerConn(judged), 2),
          judged.map((r) => r.code).join(","),
        ],
      ],
    ),
    "",
    "egress run start-up: python3 making 3 loopback connections, alone and as COMMAND",
    ...table(
      ["run", "to COMMAND ms", "total ms"],
      [
        [
          "untraced",
          int(median(figures.startUntraced.map((r) => r.toCommandMs))),
          int(median(figures.startUntraced.map((r) => r.totalMs))),
        ],
        [
          "egress run",
          int(median(figures.startJudged.map((r) => r.toCommandMs))),
          int(median(figures.startJudged.map((r) => r.totalMs))),
        ],
      ],
    ),
    "",
    "How to read: conn/s and vs untraced as above; judged: the connect attempts the run's",
    "summary counts for tg-churn (one per connection when nothing is lost); CPU µs/conn: CPU of",
    "the whole run (tcpgadget, tg-churn and the BPF programs in tg-churn's system calls) per",
    "connection, median; exit: each run's status (egress run: COMMAND's, 3 broke the policy,",
    "4 lost events). Start-up: medians from spawn to the command's first line (the time it",
    "printed as it started) and to its exit, the report included; with egress run, the first",
    "includes deno's start, loading and attaching the BPF programs, and the gate.",
  ];
  return out;
}

async function measureEgress(
  options: BenchOptions,
  children: Children,
  repo: string,
  binary: string,
  limits: RunLimits,
): Promise<EgressFigures> {
  const figures: EgressFigures = { untraced: [], judged: [], startUntraced: [], startJudged: [] };
  // Attach and the report on top of the churn's own time.
  const timeoutMs = limits.churnTimeoutMs + limits.attachTimeoutMs;
  const untraced = async (label: string) => {
    const run = await runEgressChurn(children, repo, binary, options.churn, false, timeoutMs);
    figures.untraced.push(run);
    progress(`egress ${label}untraced: ${int(run.churn.rate)} conn/s, CPU ${fixed(run.cpu, 2)} s`);
  };
  for (let round = 1; round <= options.rounds; round++) {
    await untraced(`round ${round}/${options.rounds} `);
    const run = await runEgressChurn(children, repo, binary, options.churn, true, timeoutMs);
    figures.judged.push(run);
    progress(
      `egress round ${round}/${options.rounds} egress run: ${int(run.churn.rate)} conn/s, ` +
        `${int(run.judged ?? NaN)} judged, lost ${int(run.lost ?? NaN)}, ` +
        `CPU ${fixed(run.cpu, 2)} s, exit ${run.code}`,
    );
  }
  await untraced("last ");
  const starts = Math.max(3, 2 * options.rounds);
  for (let i = 1; i <= starts; i++) {
    const alone = await runStartup(children, repo, false, limits.attachTimeoutMs);
    const judged = await runStartup(children, repo, true, limits.attachTimeoutMs);
    figures.startUntraced.push(alone);
    figures.startJudged.push(judged);
    progress(
      `egress start-up ${i}/${starts}: untraced ${int(alone.toCommandMs)}/${
        int(alone.totalMs)
      } ms, egress run ${int(judged.toCommandMs)}/${int(judged.totalMs)} ms (to COMMAND/total)`,
    );
  }
  return figures;
}

// ---------------------------------------------------------------- running

function progress(message: string): void {
  console.error(`bench: ${message}`);
}

function describeTraced(r: TracedResult): string {
  const events = r.spec.mode === "reference"
    ? `${int(r.lines)} lines`
    : `${int(r.churnEvents)}/${int(4 * r.churn.connections)} events`;
  return `${r.spec.label}: ${int(r.churn.rate)} conn/s, ${events}, ` +
    `lost ${int(r.lost)}, CPU ${fixed(r.cpu, 2)} s, attach ${int(r.attachMs)} ms, ` +
    `catch-up ${fixed(r.lagSeconds, 2)} s, reader CPU ${fixed(r.readerCpu, 3)} s ` +
    `(tg-tap ${fixed(r.tapCpu, 3)} s in ${int(r.tapReads)} reads, ` +
    `${int(r.forwarded)} lines passed on)` +
    (r.bpf.runCount > 0 ? `, BPF ${fixed(bpfPerConnection(r), 2)} µs/conn` : "");
}

async function run(options: BenchOptions): Promise<number> {
  const repo = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");
  const children = new Children();
  const tmp = await Deno.makeTempDir({ prefix: "tcpgadget-bench-" });
  let cleaning: Promise<void> | undefined;
  let restoreBpfStats: (() => void) | undefined;
  const cleanup = () =>
    cleaning ??= (async () => {
      await children.killAll();
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      restoreBpfStats?.();
    })();
  const onSignal = async () => {
    progress("interrupted; stopping the tracer and the load generator");
    await cleanup();
    Deno.exit(130);
  };
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const signal of signals) Deno.addSignalListener(signal, onSignal);

  try {
    if (Deno.uid() !== 0) progress("not root: the tracers will probably fail to load BPF");
    const { churn } = options;
    const limits: RunLimits = {
      attachTimeoutMs: 60_000,
      // At least 2,000 conn/s: tcpstates on a busy 2-core machine is slow.
      churnTimeoutMs: 60_000 + churn.connections / 2,
      idleMs: 2_000,
      drainTimeoutMs: 60_000,
    };
    const specs: TracerSpec[] = [
      ...tcpgadgetSpecs(repo).filter((s) => options.modes.has(s.mode)),
      ...(options.modes.has("reference") ? referenceSpecs() : []),
    ];
    const header = [
      "tcpgadget benchmark: loopback TCP connection churn",
      ...machineDescription(repo),
      `workload: ${CHURN_COMM} (tests/bench/churn.c), ${churn.threads} threads x ` +
      `${churn.inflight} connections in flight, ${int(churn.connections)} connections per run; ` +
      `${options.rounds} round(s) of untraced/traced pairs per tracer`,
    ];
    console.log(header.join("\n"));

    const binaries: Binaries = { churn: await buildChurn(tmp), tap: await buildTap(tmp) };
    const binary = binaries.churn;
    if (options.bpfStats) restoreBpfStats = enableBpfStats();
    const busy = await backgroundBusy(1000);
    console.log(`load:     ${fixed(100 * busy, 0)}% of all CPUs busy with other work at start`);
    if (options.modes.has("reference") && !specs.some((s) => s.mode === "reference")) {
      console.log("reference tools: none found (Debian: apt-get install libbpf-tools)");
    }

    // Warms up caches, page tables and the TIME_WAIT table; not reported.
    progress("warm-up run");
    await runUntraced(children, binary, {
      ...churn,
      connections: Math.min(churn.connections, 100_000),
    }, limits);

    const untraced: ChurnResult[] = [];
    const pairsBySpec = new Map<TracerSpec, Pair[]>(specs.map((s) => [s, []]));
    const unavailable = new Map<string, string>();
    // The last traced run, waiting for the untraced run after it.
    let open: Omit<Pair, "after"> | undefined;
    const runUntracedBetween = async (label: string) => {
      const run = await runUntraced(children, binary, churn, limits);
      untraced.push(run);
      progress(`${label}untraced: ${int(run.rate)} conn/s`);
      if (open) {
        const pair = { ...open, after: run };
        pairsBySpec.get(pair.traced.spec)!.push(pair);
        progress(`  ${pair.traced.spec.label}: ${fixed(vsUntraced(pair), 2)}x the runs around it`);
        open = undefined;
      }
      return run;
    };
    for (let round = 1; round <= options.rounds; round++) {
      for (const spec of specs) {
        if (unavailable.has(spec.label)) continue;
        const before = await runUntracedBetween(`round ${round}/${options.rounds} `);
        let traced: TracedResult;
        try {
          traced = await runTraced(spec, children, binaries, churn, limits);
        } catch (error) {
          if (!(error instanceof AttachError) || spec.mode !== "reference") throw error;
          unavailable.set(spec.label, error.message.replace(`${spec.label} did not attach: `, ""));
          progress(error.message);
          continue;
        }
        open = { before, traced };
        progress(`round ${round}/${options.rounds} ${describeTraced(traced)}`);
        for (const anomaly of traced.anomalies) progress(`  ${anomaly}`);
      }
    }
    if (open) await runUntracedBetween("last ");
    if (specs.length > 0) {
      console.log(report(options, untraced, pairsBySpec, unavailable).join("\n"));
    }
    if (options.egress) {
      const figures = await measureEgress(options, children, repo, binary, limits);
      console.log(egressReport(figures).join("\n"));
    }
    return 0;
  } finally {
    await cleanup();
    for (const signal of signals) Deno.removeSignalListener(signal, onSignal);
  }
}

async function main(): Promise<number> {
  let options: BenchOptions | undefined;
  try {
    options = parseOptions(Deno.args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`bench: ${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (options === undefined) {
    console.log(USAGE);
    return 0;
  }
  try {
    return await run(options);
  } catch (error) {
    console.error(`bench: ${error instanceof Error ? error.message : error}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main());
