/**
 * The load generator, tg-churn (churn.c beside this file): compiled with
 * the system's C compiler into a temporary directory, run once per
 * measurement.
 *
 * @module
 */

import type { Child, Children } from "./children.ts";
import { compileC } from "./compile.ts";

/** The JSON line tg-churn prints when it is done. */
export interface ChurnResult {
  pid: number;
  comm: string;
  /** Its listening ports, one per worker thread. */
  ports: number[];
  /** Connections completed (client side). */
  connections: number;
  /** Connections accepted and closed (server side). */
  accepted: number;
  seconds: number;
  /** Connections per second. */
  rate: number;
  errors: number;
  threads: number;
  inflight: number;
}

/** How tg-churn runs. */
export interface ChurnOptions {
  connections: number;
  /** Worker threads, each both client and server. */
  threads: number;
  /** Connections each worker keeps in flight. */
  inflight: number;
}

/** Compiles churn.c into `dir` and returns the binary's path. */
export function buildChurn(dir: string): Promise<string> {
  return compileC("churn.c", `${dir}/tg-churn`, ["-pthread"]);
}

/** A running tg-churn. */
export interface ChurnRun {
  /** Its pid, known at once: events are matched on it. */
  pid: number;
  child: Child;
  /** Its final report; rejects if it failed. */
  result: Promise<ChurnResult>;
}

/** Starts tg-churn; it begins connecting at once. */
export function startChurn(
  children: Children,
  binary: string,
  options: ChurnOptions,
  timeoutMs: number,
): ChurnRun {
  const child = children.spawn("tg-churn", binary, {
    args: [
      "--connections",
      String(options.connections),
      "--threads",
      String(options.threads),
      "--inflight",
      String(options.inflight),
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const result = (async () => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      children.stop(child, "SIGKILL");
    }, timeoutMs);
    const [status, stdout, stderr] = await Promise.all([
      child.status,
      new Response(child.process.stdout).text(),
      new Response(child.process.stderr).text(),
    ]);
    clearTimeout(timer);
    if (timedOut) throw new Error(`tg-churn did not finish within ${timeoutMs / 1000} s`);
    const last = stdout.trim().split("\n").at(-1) ?? "";
    let report: ChurnResult;
    try {
      report = JSON.parse(last);
    } catch {
      throw new Error(`tg-churn failed (exit ${status.code}): ${stderr.trim() || stdout}`);
    }
    if (report.errors > 0 || report.connections !== options.connections) {
      console.error(
        `bench: tg-churn: ${report.connections} of ${options.connections} connections, ` +
          `${report.errors} errors: ${stderr.trim()}`,
      );
    }
    return report;
  })();
  return { pid: child.process.pid, child, result };
}
