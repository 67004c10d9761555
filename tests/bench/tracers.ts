/**
 * The tracers under test (tcpgadget with `-o json` and with the default
 * columns) and the reference tools (libbpf-tools' tcplife, tcpstates,
 * tcptracer), and one measurement of the load generator under one of them.
 *
 * @module
 */

import process from "node:process";
import { type ChurnOptions, type ChurnResult, startChurn } from "./churn.ts";
import type { Children } from "./children.ts";
import {
  ColumnsCounter,
  JsonCounter,
  type KindCounts,
  type LineCounter,
  lostEvents,
  ReferenceCounter,
} from "./counters.ts";
import { tapArgs, TapReader } from "./tap.ts";
import {
  anonInodeCounts,
  type BpfRunStats,
  bpfRunStats,
  peakRssBytes,
  treeCpuSeconds,
} from "./procfs.ts";

/** What a tracer prints, and so how its output is counted. */
export type Mode = "json" | "columns" | "reference";

/** A tracer to measure. */
export interface TracerSpec {
  /** Its row in the report. */
  label: string;
  mode: Mode;
  command: string;
  args: string[];
  cwd?: string;
  /**
   * How to tell that it has attached: its "tracing" line on stderr
   * (tcpgadget -o json); its header on stdout (tcpgadget columns); a BPF
   * link and the epoll of its perf buffer in /proc/<pid>/fd (libbpf-tools,
   * whose header stays in stdio's buffer when stdout is a pipe); or, for
   * bpftrace, which says "Attaching N probes..." before it attaches, N
   * tracepoint perf events plus one perf buffer per CPU in /proc/<pid>/fd.
   */
  attach: "stderr" | "header" | "bpf" | "bpftrace";
  counter(): LineCounter;
}

/** tcpgadget with `-o json` and with its default columns, run from `repo`. */
export function tcpgadgetSpecs(repo: string): TracerSpec[] {
  const base = ["run", "-A", "mod.ts", "trace", "tcp"];
  return [
    {
      label: "tcpgadget -o json",
      mode: "json",
      command: Deno.execPath(),
      args: [...base, "-o", "json"],
      cwd: repo,
      attach: "stderr",
      counter: () => new JsonCounter(),
    },
    {
      label: "tcpgadget columns",
      mode: "columns",
      command: Deno.execPath(),
      args: base,
      cwd: repo,
      attach: "header",
      counter: () => new ColumnsCounter(),
    },
  ];
}

const REFERENCE_TOOLS = ["tcplife", "tcpstates", "tcptracer"];
const SEARCH_PATH = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"];

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/**
 * libbpf-tools' tcplife, tcpstates and tcptracer, wherever the package put
 * them (Debian: /usr/sbin/tcplife; other distributions prefix the names),
 * and bpftrace running tcp_cax.bt (beside this file), where installed.
 */
export function referenceSpecs(): TracerSpec[] {
  let files: string[] = [];
  try {
    const out = new Deno.Command("dpkg", { args: ["-L", "libbpf-tools"], stderr: "null" })
      .outputSync();
    if (out.success) files = new TextDecoder().decode(out.stdout).split("\n");
  } catch {
    // not Debian: look in the usual places
  }
  const specs: TracerSpec[] = [];
  for (const tool of REFERENCE_TOOLS) {
    const fromPackage = files.find((file) => {
      const name = file.slice(file.lastIndexOf("/") + 1);
      return (name === tool || name.endsWith(`-${tool}`) || name.endsWith(`_${tool}`)) &&
        isExecutable(file);
    });
    const path = fromPackage ??
      SEARCH_PATH
        .flatMap((dir) => [`${dir}/${tool}`, `${dir}/libbpf-tools-${tool}`])
        .find(isExecutable);
    if (path === undefined) continue;
    specs.push({
      label: tool,
      mode: "reference",
      command: path,
      args: [],
      attach: "bpf",
      counter: () => new ReferenceCounter(),
    });
  }
  const bpftrace = SEARCH_PATH.map((dir) => `${dir}/bpftrace`).find(isExecutable);
  if (bpftrace !== undefined) {
    specs.push({
      label: "bpftrace tcp_cax.bt",
      mode: "reference",
      command: bpftrace,
      args: [new URL("./tcp_cax.bt", import.meta.url).pathname],
      attach: "bpftrace",
      counter: () => new ReferenceCounter(),
    });
  }
  return specs;
}

/** Whether a reference tool has attached (see {@link TracerSpec.attach}). */
function referenceAttached(spec: TracerSpec, pid: number, header: string | undefined): boolean {
  const fds = anonInodeCounts(pid);
  if (spec.attach === "bpf") {
    return (fds.get("bpf_link") ?? 0) > 0 && (fds.get("[eventpoll]") ?? 0) > 0;
  }
  const probes = Number(header?.match(/^Attaching (\d+) probes/)?.[1]);
  return probes > 0 && (fds.get("[perf_event]") ?? 0) >= probes + navigator.hardwareConcurrency;
}

/** A tracer that could not start: the benchmark skips it (a reference) or stops. */
export class AttachError extends Error {}

/** One run of the load generator under a tracer. */
export interface TracedResult {
  spec: TracerSpec;
  churn: ChurnResult;
  /** Milliseconds from spawn to attached. */
  attachMs: number;
  /** CPU seconds of the tracer's process tree until attached. */
  startupCpu: number;
  /** CPU seconds of the tracer's process tree from attached to the last event read. */
  cpu: number;
  /** VmHWM of the tracer just before it was stopped, in bytes. */
  peakRss: number | undefined;
  /** Lines printed, header excluded. */
  lines: number;
  /** Lines about the load generator (json/columns: its events). */
  churnEvents: number;
  /** The load generator's events by kind (json/columns). */
  kinds: KindCounts;
  /**
   * The tracer's BPF programs during the run: kernel time in ns and runs
   * (both 0 unless the kernel counts them: --bpf-stats), and runs skipped
   * by the kernel's recursion check.
   */
  bpf: BpfRunStats;
  /** Events lost, as the tracer reported on stderr. */
  lost: number;
  /** Seconds from the load generator's end to its last event read. */
  lagSeconds: number;
  /**
   * CPU seconds spent reading the output during the run: tg-tap's (the
   * native reader, tap.c), and this benchmark process's from attached to
   * the last event read and while the tracer stops (not while it reads
   * /proc in between).
   */
  readerCpu: number;
  /** tg-tap's part of {@link readerCpu}. */
  tapCpu: number;
  /** tg-tap's reads of the tracer's output. */
  tapReads: number;
  /** Lines tg-tap passed on to this process (samples included). */
  forwarded: number;
  /** The tracer's exit code (128 + the signal if one killed it). */
  exitCode: number;
  /** Things that should not happen, for the report's notes. */
  anomalies: string[];
}

/** The compiled helpers (churn.c, tap.c). */
export interface Binaries {
  /** The load generator. */
  churn: string;
  /** The reader of the tracer's output. */
  tap: string;
}

/** Limits of one run. */
export interface RunLimits {
  attachTimeoutMs: number;
  churnTimeoutMs: number;
  /** Stop waiting for the load generator's events after this long without one. */
  idleMs: number;
  /** ... or after this long since the load generator ended, in any case. */
  drainTimeoutMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Starts the tracer under tg-tap, waits until it has attached, runs the
 * load generator, waits for the tracer to print the load generator's
 * events (all of them, or until it goes quiet), reads its CPU time and
 * peak memory, then stops it with SIGINT as a user would.
 */
export async function runTraced(
  spec: TracerSpec,
  children: Children,
  binaries: Binaries,
  options: ChurnOptions,
  limits: RunLimits,
): Promise<TracedResult> {
  const counter = spec.counter();
  const tap = new TapReader(counter);
  const spawnedAt = performance.now();
  // tg-tap runs the tracer with its stdout on a pipe that it reads; the
  // tracer's stderr is tg-tap's.
  const child = children.spawn(spec.label, binaries.tap, {
    args: tapArgs(spec.mode, spec.command, spec.args),
    cwd: spec.cwd,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  let attachedAt: number | undefined;
  let stderr = "";
  let onAttached = () => {};
  const attached = new Promise<void>((resolve) => {
    onAttached = () => {
      attachedAt ??= performance.now();
      resolve();
    };
  });
  if (spec.attach === "header") counter.onFirstLine = onAttached;
  const stderrDone = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.process.stderr) {
      stderr += decoder.decode(chunk, { stream: true });
      if (spec.attach === "stderr" && attachedAt === undefined && /tracing TCP/.test(stderr)) {
        onAttached();
      }
    }
  })();
  const stdoutDone = (async () => {
    for await (const chunk of child.process.stdout) tap.push(chunk);
    tap.finish();
  })();
  let exited = false;
  child.status.then(() => exited = true);
  // Signals go to the tracer; none once tg-tap has reaped it.
  tap.onExit = () => child.signalPid = undefined;

  try {
    const tracerPid = await tap.pidKnown;
    if (tracerPid === undefined) {
      const status = await child.status;
      await stderrDone;
      throw new Error(`tg-tap failed (exit ${status.code}): ${stderr.trim()}`);
    }
    if (tap.exit === undefined) child.signalPid = tracerPid;
    const pid = tracerPid;
    // Wait until attached, or the tracer gave up, or too long.
    const deadline = spawnedAt + limits.attachTimeoutMs;
    while (attachedAt === undefined && !exited && performance.now() < deadline) {
      const polled = spec.attach === "bpf" || spec.attach === "bpftrace";
      if (polled && referenceAttached(spec, pid, counter.header)) onAttached();
      await Promise.race([attached, child.status, sleep(polled ? 5 : 50)]);
    }
    if (attachedAt === undefined) {
      await children.stop(child, "SIGKILL");
      await Promise.all([stdoutDone, stderrDone]);
      // The last unindented line: libbpf-tools' own verdict after libbpf's
      // messages, or deno's error above its (indented) source and stack.
      const why = stderr.split("\n").filter((line) => /^\S/.test(line)).at(-1) ??
        (exited ? "exited" : "timed out");
      throw new AttachError(`${spec.label} did not attach: ${why}`);
    }
    const startupCpu = treeCpuSeconds(pid) ?? NaN;
    const bpfBefore = bpfRunStats(pid);
    const readerBefore = process.cpuUsage();
    // tg-tap reports its CPU time: at start, then whenever it read something.
    const tapCpuBefore = tap.report?.cpuUs ?? 0;

    const churn = startChurn(children, binaries.churn, options, limits.churnTimeoutMs);
    counter.churnPid = churn.pid;
    const result = await churn.result;
    const churnEndedAt = performance.now();

    // The events may still be on their way: wait for all of them (json,
    // columns), or until no more come for a while (a tracer's backlog is
    // at most its ring buffer, read in well under a second).
    const expected = spec.mode === "reference" ? Infinity : 4 * result.connections;
    let seen = counter.churnEvents;
    let changedAt = performance.now();
    while (counter.churnEvents < expected && !exited) {
      await sleep(20);
      const now = performance.now();
      if (counter.churnEvents !== seen) {
        seen = counter.churnEvents;
        changedAt = now;
      } else if (now - changedAt >= limits.idleMs) {
        break;
      }
      if (now - churnEndedAt >= limits.drainTimeoutMs) break;
    }
    // This process's CPU while reading, not while it reads /proc below.
    const readingUsage = process.cpuUsage(readerBefore);
    const cpu = (treeCpuSeconds(pid) ?? NaN) - startupCpu;
    const peakRss = peakRssBytes(pid);
    const bpfAfter = bpfRunStats(pid);
    const bpf = {
      runTimeNs: bpfAfter.runTimeNs - bpfBefore.runTimeNs,
      runCount: bpfAfter.runCount - bpfBefore.runCount,
      recursionMisses: bpfAfter.recursionMisses - bpfBefore.recursionMisses,
    };
    // Before the stop: what a reference tool keeps in stdio's buffer until
    // it exits was not late, only buffered.
    const lastEventAt = counter.lastChurnAt ?? churnEndedAt;
    const stopping = process.cpuUsage();
    const tapStatus = await children.stop(child, "SIGINT");
    await Promise.all([stdoutDone, stderrDone]);
    const stoppingUsage = process.cpuUsage(stopping);
    const harnessCpu = (readingUsage.user + readingUsage.system + stoppingUsage.user +
      stoppingUsage.system) / 1e6;
    const tapCpu = ((tap.report?.cpuUs ?? NaN) - tapCpuBefore) / 1e6;

    const anomalies: string[] = [];
    const exit = tap.exit;
    if (exit === undefined) {
      anomalies.push(`tg-tap ended (status ${tapStatus.code}) without the tracer's exit status`);
    } else if (exit.signal !== 0) {
      anomalies.push(`${spec.label} was killed by signal ${exit.signal}`);
    } else if (exit.code !== 0) {
      anomalies.push(`${spec.label} exited with status ${exit.code}`);
    }
    // An interrupt came while a program ran on that CPU, and the nested
    // run was skipped: if it had an event, nothing says it is lost. But
    // tcpgadget rescues such runs, and reports those it could not as lost.
    if (bpf.recursionMisses > 0 && spec.mode === "reference") {
      anomalies.push(
        `the kernel skipped ${bpf.recursionMisses} runs of its BPF programs (recursion_misses)`,
      );
    }
    if (counter.malformed > 0) anomalies.push(`${counter.malformed} lines could not be read`);
    if (counter.strangers > 0) {
      const pids = counter.strangerPids;
      anomalies.push(
        `${counter.strangers} events of "${result.comm}" with another pid` +
          (pids.length > 0
            ? ` (${pids.slice(0, 5).join(", ")}${pids.length > 5 ? ", ..." : ""})`
            : ""),
      );
    }
    if (counter instanceof JsonCounter) {
      const unknown = counter.unknownOn(result.ports);
      if (unknown > 0) anomalies.push(`${unknown} U events on the load generator's ports`);
    }
    if (counter.mismatches > 0) {
      anomalies.push(
        `${counter.mismatches} mismatches (${counter.checked} lines checked in full): ` +
          counter.firstMismatch,
      );
    }
    if (spec.mode !== "reference") {
      const { C, A, X, U } = counter.churn;
      const n = result.connections;
      if (C !== n || A !== n || X !== 2 * n || U !== 0) {
        anomalies.push(
          `kinds: C ${C}, A ${A}, X ${X}, U ${U}; expected C ${n}, A ${n}, X ${2 * n}`,
        );
      }
    }
    return {
      spec,
      churn: result,
      attachMs: attachedAt - spawnedAt,
      startupCpu,
      cpu,
      peakRss,
      bpf,
      lines: counter.lines,
      churnEvents: counter.churnEvents,
      kinds: { ...counter.churn },
      lost: lostEvents(stderr) + (counter instanceof ReferenceCounter ? counter.lostInOutput : 0),
      lagSeconds: Math.max(0, lastEventAt - churnEndedAt) / 1000,
      readerCpu: harnessCpu + tapCpu,
      tapCpu,
      tapReads: tap.report?.reads ?? 0,
      forwarded: (tap.report?.forwarded ?? 0) + (tap.report?.sampled ?? 0),
      exitCode: exit === undefined ? tapStatus.code : exit.signal ? 128 + exit.signal : exit.code,
      anomalies,
    };
  } finally {
    // On any error above: no tracer left behind.
    await children.stop(child, "SIGKILL", 0);
  }
}

/** One run of the load generator alone. */
export async function runUntraced(
  children: Children,
  churnBinary: string,
  options: ChurnOptions,
  limits: RunLimits,
): Promise<ChurnResult> {
  return await startChurn(children, churnBinary, options, limits.churnTimeoutMs).result;
}
