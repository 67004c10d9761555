/**
 * The benchmark's `egress run` rows: what judging a command costs it.
 *
 * - Churn: tg-churn run as COMMAND of `tcpgadget egress run --allow
 *   127.0.0.1`, so that each of its connections is judged, against
 *   tg-churn alone: its rate, and the CPU of the whole run (tcpgadget,
 *   tg-churn and the BPF programs that run in tg-churn's system calls)
 *   against tg-churn's alone. The judged connections are counted in the
 *   run's summary (`--summary`).
 * - Start-up: a command making three connections (python3), alone and
 *   under `egress run`: the time from spawn to its first line (a clock
 *   it prints as it starts: the attach, the gate and the hosts file read
 *   before it runs) and to its exit (with the report).
 *
 * CPU comes from a shell that runs the command and then prints its own
 * /proc/self/stat: cutime and cstime count every process it waited for,
 * and theirs in turn, so tcpgadget and its COMMAND together.
 *
 * @module
 */

import type { ChurnOptions, ChurnResult } from "./churn.ts";
import type { Children } from "./children.ts";

/** One churn run, untraced or under `egress run`. */
export interface EgressChurnResult {
  churn: ChurnResult;
  /** CPU seconds of the run's process tree (tcpgadget and tg-churn, or tg-churn alone). */
  cpu: number;
  /** Wall seconds from spawn to exit. */
  wall: number;
  /** Connections the summary counts (judged), for a run under `egress run`. */
  judged?: number;
  /** Events lost as the summary says. */
  lost?: number;
  /** Exit status (egress run: COMMAND's, 3 or 4). */
  code: number;
}

/** One run of the start-up command, untraced or under `egress run`. */
export interface StartupResult {
  /** Milliseconds from spawn to the command's first line. */
  toCommandMs: number;
  /** Milliseconds from spawn to exit. */
  totalMs: number;
  code: number;
}

const STAT_MARK = "tg-bench-stat:";

/** `sh -c` words that run argv, then print the shell's stat on stderr and exit with argv's status. */
function withStat(argv: string[]): string[] {
  return [
    "-c",
    `"$@"; s=$?; printf '${STAT_MARK}%s\\n' "$(cat /proc/$$/stat)" >&2; exit $s`,
    "sh",
    ...argv,
  ];
}

let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks !== undefined) return clockTicks;
  clockTicks = 100;
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).outputSync();
    const value = Number(new TextDecoder().decode(out.stdout).trim());
    if (out.success && value > 0) clockTicks = value;
  } catch {
    // keep the default
  }
  return clockTicks;
}

/** cutime + cstime of the stat line the shell printed, in seconds. */
function childCpu(stderr: string): number {
  const line = stderr.split("\n").find((l) => l.startsWith(STAT_MARK));
  if (line === undefined) return NaN;
  const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state) of proc(5): cutime and cstime are 16 and 17.
  return (Number(fields[13]) + Number(fields[14])) / ticksPerSecond();
}

function churnArgs(binary: string, options: ChurnOptions): string[] {
  return [
    binary,
    "--connections",
    String(options.connections),
    "--threads",
    String(options.threads),
    "--inflight",
    String(options.inflight),
  ];
}

/** `deno run -A mod.ts egress run --allow 127.0.0.1 --summary FILE -- argv`. */
function egressRun(repo: string, summary: string, argv: string[]): string[] {
  return [
    Deno.execPath(),
    "run",
    "-A",
    `${repo}/mod.ts`,
    "egress",
    "run",
    "--allow",
    "127.0.0.1",
    "--summary",
    summary,
    "--",
    ...argv,
  ];
}

async function runWithStat(
  children: Children,
  name: string,
  argv: string[],
  timeoutMs: number,
  onLine?: (line: string) => void,
): Promise<{ stdout: string; stderr: string; code: number; wall: number; cpu: number }> {
  const started = performance.now();
  const child = children.spawn(name, "sh", {
    args: withStat(argv),
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const timer = setTimeout(() => children.stop(child, "SIGKILL"), timeoutMs);
  let stdout = "";
  let firstLine = true;
  const stdoutDone = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.process.stdout) {
      stdout += decoder.decode(chunk, { stream: true });
      if (firstLine && stdout.includes("\n")) {
        firstLine = false;
        onLine?.(stdout.slice(0, stdout.indexOf("\n")));
      }
    }
  })();
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.process.stderr).text(),
    stdoutDone,
  ]);
  clearTimeout(timer);
  const wall = (performance.now() - started) / 1000;
  return { stdout, stderr, code: status.code, wall, cpu: childCpu(stderr) };
}

/** tg-churn alone (traced: false) or as COMMAND of `egress run` (traced: true). */
export async function runEgressChurn(
  children: Children,
  repo: string,
  binary: string,
  options: ChurnOptions,
  traced: boolean,
  timeoutMs: number,
): Promise<EgressChurnResult> {
  const summary = await Deno.makeTempFile({ prefix: "tcpgadget-bench-egress-", suffix: ".json" });
  try {
    const argv = churnArgs(binary, options);
    const out = await runWithStat(
      children,
      traced ? "egress run tg-churn" : "tg-churn",
      traced ? egressRun(repo, summary, argv) : argv,
      timeoutMs,
    );
    const last = out.stdout.trim().split("\n").at(-1) ?? "";
    let churn: ChurnResult;
    try {
      churn = JSON.parse(last);
    } catch {
      throw new Error(
        `tg-churn${traced ? " under egress run" : ""} failed (exit ${out.code}): ${
          out.stderr.trim().split("\n").slice(-5).join(" | ")
        }`,
      );
    }
    const result: EgressChurnResult = { churn, cpu: out.cpu, wall: out.wall, code: out.code };
    if (traced) {
      const report = JSON.parse(await Deno.readTextFile(summary)) as {
        destinations: { count: number; who: { command: string } }[];
        lostEvents: number;
      };
      result.judged = report.destinations.filter((d) => d.who.command === churn.comm)
        .reduce((n, d) => n + d.count, 0);
      result.lost = report.lostEvents;
    }
    return result;
  } finally {
    await Deno.remove(summary).catch(() => {});
  }
}

/** A python3 command that prints the clock as it starts, then makes three connections to `port`. */
function fewConnections(port: number): string[] {
  return [
    "python3",
    "-c",
    [
      "import socket, time",
      "print(time.time_ns(), flush=True)",
      "for _ in range(3):",
      `    socket.create_connection(("127.0.0.1", ${port})).close()`,
    ].join("\n"),
  ];
}

/** The start-up command alone (traced: false) or under `egress run` (traced: true). */
export async function runStartup(
  children: Children,
  repo: string,
  traced: boolean,
  timeoutMs: number,
): Promise<StartupResult> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) conn.close();
  })();
  const summary = await Deno.makeTempFile({ prefix: "tcpgadget-bench-egress-", suffix: ".json" });
  try {
    const argv = fewConnections((listener.addr as Deno.NetAddr).port);
    const spawnedAtNs = (performance.timeOrigin + performance.now()) * 1e6;
    let commandAtNs = NaN;
    const out = await runWithStat(
      children,
      traced ? "egress run python3" : "python3",
      traced ? egressRun(repo, summary, argv) : argv,
      timeoutMs,
      (line) => commandAtNs = Number(line),
    );
    if (out.code !== 0) {
      throw new Error(`the start-up command failed (exit ${out.code}): ${out.stderr.trim()}`);
    }
    return {
      toCommandMs: (commandAtNs - spawnedAtNs) / 1e6,
      totalMs: out.wall * 1000,
      code: out.code,
    };
  } finally {
    listener.close();
    await accepting.catch(() => {});
    await Deno.remove(summary).catch(() => {});
  }
}
