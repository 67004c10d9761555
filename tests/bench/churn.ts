/**
 * The load generator, tg-churn (churn.c beside this file): compiled with
 * the system's C compiler into a temporary directory, run once per
 * measurement.
 *
 * @module
 */

import type { Child, Children } from "./children.ts";

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

/**
 * Compiles churn.c into `dir` and returns the binary's path. Tries `cc`,
 * then `gcc` and `clang`.
 */
export async function buildChurn(dir: string): Promise<string> {
  const source = new URL("./churn.c", import.meta.url).pathname;
  const output = `${dir}/tg-churn`;
  const failures: string[] = [];
  for (const compiler of ["cc", "gcc", "clang"]) {
    let result: Deno.CommandOutput;
    try {
      result = await new Deno.Command(compiler, {
        args: ["-O2", "-Wall", "-Wextra", "-pthread", "-o", output, source],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    const messages = new TextDecoder().decode(result.stderr).trim();
    if (result.success) {
      if (messages) console.error(`bench: ${compiler} warnings:\n${messages}`);
      return output;
    }
    failures.push(`${compiler}: ${messages}`);
  }
  throw new Error(
    failures.length > 0
      ? `cannot compile ${source}:\n${failures.join("\n")}`
      : "no C compiler (cc, gcc or clang) found: install build-essential",
  );
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
