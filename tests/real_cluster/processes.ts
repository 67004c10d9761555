/**
 * The cluster's processes: started detached (their own session, stdin from
 * /dev/null, output appended to a log file), so that they outlive the
 * `deno task` that started them; found again by pid files that also hold
 * the program and its start time, so that a recycled pid is never taken for
 * one of ours.
 *
 * @module
 */

import { type Component, state } from "./layout.ts";
import type { ComponentSpec } from "./components.ts";
import { ClusterError, readText, sleep, waitFor } from "./util.ts";

interface PidRecord {
  pid: number;
  exe: string;
  /** Field 22 of /proc/<pid>/stat: clock ticks since boot when it started. */
  startTime: string;
}

export function logFile(component: Component | string): string {
  return `${state.logs}/${component}.log`;
}

function pidFile(component: Component): string {
  return `${state.run}/${component}.pid`;
}

function startTimeOf(pid: number): string | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  // The command name (field 2) may hold spaces and parentheses: count from the last ")".
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
}

/** The executable of a process ("(deleted)" dropped: a rebuilt binary is still the same program). */
export function exeOf(pid: number): string | undefined {
  try {
    return Deno.readLinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, "");
  } catch {
    return undefined;
  }
}

/** Whether the recorded process still runs (same pid, program and start time). */
function isAlive(record: PidRecord): boolean {
  return exeOf(record.pid) === record.exe && startTimeOf(record.pid) === record.startTime;
}

function readRecord(component: Component): PidRecord | undefined {
  const text = readText(pidFile(component));
  if (!text) return undefined;
  try {
    return JSON.parse(text) as PidRecord;
  } catch {
    return undefined;
  }
}

/** The pid of a running component of ours, or undefined. */
export function runningPid(component: Component): number | undefined {
  const record = readRecord(component);
  return record && isAlive(record) ? record.pid : undefined;
}

/**
 * Starts a component detached: `setsid -f` forks it into a session of its
 * own, the shell writes its pid and execs the program (same pid) with its
 * output appended to the log.
 */
export async function startDetached(component: Component, spec: ComponentSpec): Promise<number> {
  Deno.mkdirSync(state.logs, { recursive: true });
  Deno.mkdirSync(state.run, { recursive: true });
  const shellPid = `${state.run}/${component}.shell-pid`;
  try {
    Deno.removeSync(shellPid);
  } catch {
    // none
  }
  const script = 'echo $$ > "$1"; shift; log="$1"; shift; exec "$@" >>"$log" 2>&1 </dev/null';
  const child = new Deno.Command("setsid", {
    args: ["-f", "sh", "-c", script, "sh", shellPid, logFile(component), spec.binary, ...spec.args],
    env: spec.env,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  await child.status;
  const binary = Deno.realPathSync(spec.binary);
  const pid = await waitFor(`starting ${component}`, 10, () => {
    const text = readText(shellPid);
    return text && /^\d+\n$/.test(text) ? Number(text) : undefined;
  });
  // Wait for the exec: until then the pid is the shell's.
  const record = await waitFor(`starting ${component} (exec of ${binary})`, 10, () => {
    const exe = exeOf(pid);
    if (exe === undefined) {
      throw new ClusterError(`${component} exited at once; see ${logFile(component)}`);
    }
    if (exe !== binary) return undefined;
    const startTime = startTimeOf(pid);
    return startTime ? { pid, exe, startTime } : undefined;
  });
  Deno.writeTextFileSync(pidFile(component), JSON.stringify(record) + "\n");
  Deno.removeSync(shellPid);
  return pid;
}

/** Throws a ClusterError if the component is no longer running (with its log's last line). */
export function checkRunning(component: Component): void {
  if (runningPid(component) !== undefined) return;
  const log = readText(logFile(component)) ?? "";
  const last = log.trim().split("\n").slice(-1)[0] ?? "";
  throw new ClusterError(
    `${component} exited; see ${logFile(component)}${
      last ? ` (last line: ${last.slice(0, 300)})` : ""
    }`,
  );
}

/** Stops a process: SIGTERM, then SIGKILL after `graceSeconds`. Returns once it is gone. */
export async function stopPid(
  pid: number,
  isStill: () => boolean,
  graceSeconds: number,
): Promise<void> {
  const signal = (sig: Deno.Signal) => {
    try {
      Deno.kill(pid, sig);
    } catch {
      // already gone
    }
  };
  if (!isStill()) return;
  signal("SIGTERM");
  const deadline = Date.now() + graceSeconds * 1000;
  while (isStill() && Date.now() < deadline) await sleep(100);
  if (!isStill()) return;
  signal("SIGKILL");
  const killDeadline = Date.now() + 10_000;
  while (isStill() && Date.now() < killDeadline) await sleep(100);
}

/** Stops a component of ours, if it runs, and removes its pid file. */
export async function stopComponent(component: Component, graceSeconds = 10): Promise<boolean> {
  const record = readRecord(component);
  let stopped = false;
  if (record && isAlive(record)) {
    await stopPid(record.pid, () => isAlive(record), graceSeconds);
    stopped = true;
  }
  try {
    Deno.removeSync(pidFile(component));
  } catch {
    // none
  }
  return stopped;
}

/** Every process whose command line contains all of `needles` (our shims, by our socket's path). */
export function processesWith(needles: string[]): { pid: number; exe: string }[] {
  const found: { pid: number; exe: string }[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    const cmdline = readText(`/proc/${pid}/cmdline`);
    if (!cmdline) continue;
    const args = cmdline.split("\0");
    if (needles.every((needle) => args.includes(needle))) {
      const exe = exeOf(pid);
      if (exe) found.push({ pid, exe });
    }
  }
  return found;
}

/**
 * Processes that are ours whatever the pid files say (a component restarted
 * by hand, an `up` killed between start and pid file): those running a
 * binary of the build cache, or naming the state directory on their
 * command line (containerd, its shims).
 */
export function strayProcesses(stateDir: string, cacheDir: string): { pid: number; exe: string }[] {
  const found: { pid: number; exe: string }[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    const pid = Number(entry.name);
    if (pid === Deno.pid) continue;
    const exe = exeOf(pid);
    const cmdline = readText(`/proc/${pid}/cmdline`);
    if (!exe || !cmdline) continue;
    const args = cmdline.split("\0");
    if (exe.startsWith(`${cacheDir}/`) || args.some((arg) => arg.includes(`${stateDir}/`))) {
      found.push({ pid, exe });
    }
  }
  return found;
}
