/**
 * What the benchmark reads from /proc: CPU time of a process tree, peak
 * memory, whether a reference tool has attached its BPF programs, how busy
 * the machine already is, and a short description of the machine.
 *
 * @module
 */

/** Clock ticks per second of /proc/<pid>/stat times (sysconf(_SC_CLK_TCK)). */
let clockTicks: number | undefined;

function ticksPerSecond(): number {
  if (clockTicks !== undefined) return clockTicks;
  clockTicks = 100; // the value on every Linux architecture that matters
  try {
    const out = new Deno.Command("getconf", { args: ["CLK_TCK"], stderr: "null" }).outputSync();
    const value = Number(new TextDecoder().decode(out.stdout).trim());
    if (out.success && value > 0) clockTicks = value;
  } catch {
    // keep the default
  }
  return clockTicks;
}

/** Fields of /proc/<pid>/stat that the benchmark uses. */
interface StatFields {
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
}

function readStat(pid: number): StatFields | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  // comm, in parentheses, may itself contain spaces and parentheses.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state) of proc(5): ppid is 4, utime..cstime 14..17.
  const ppid = Number(fields[1]);
  const ticks = Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14]);
  return { ppid, ticks };
}

/**
 * CPU seconds (user + system) used so far by a process and all its
 * descendants, living or reaped. Undefined if the process is gone.
 */
export function treeCpuSeconds(root: number): number | undefined {
  const rootStat = readStat(root);
  if (rootStat === undefined) return undefined;
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === root) continue;
    const stat = readStat(pid);
    if (stat === undefined) continue;
    const list = children.get(stat.ppid) ?? [];
    list.push(pid);
    children.set(stat.ppid, list);
  }
  let ticks = rootStat.ticks;
  const pending = [...(children.get(root) ?? [])];
  while (pending.length > 0) {
    const pid = pending.pop()!;
    ticks += readStat(pid)?.ticks ?? 0;
    pending.push(...(children.get(pid) ?? []));
  }
  return ticks / ticksPerSecond();
}

/** Peak resident set size (VmHWM) of a process in bytes, if it is still there. */
export function peakRssBytes(pid: number): number | undefined {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const match = status.match(/^VmHWM:\s+(\d+) kB$/m);
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/**
 * How many of a process's file descriptors are of each kind of anonymous
 * inode ("bpf_link", "[perf_event]", "[eventpoll]", ...): how the
 * benchmark sees that a reference tool has attached its BPF programs.
 */
export function anonInodeCounts(pid: number): Map<string, number> {
  const counts = new Map<string, number>();
  try {
    for (const entry of Deno.readDirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`);
      } catch {
        continue;
      }
      if (!target.startsWith("anon_inode:")) continue;
      const kind = target.slice("anon_inode:".length);
      counts.set(kind, (counts.get(kind) ?? 0) + 1);
    }
  } catch {
    // gone
  }
  return counts;
}

/** Run time and count of BPF programs, from their fdinfo. */
export interface BpfRunStats {
  runTimeNs: number;
  runCount: number;
  /**
   * Runs the kernel skipped because the program was already running on
   * that CPU (an interrupt came in the middle of it): events that a tracer
   * misses without knowing. Counted whether or not stats are enabled.
   */
  recursionMisses: number;
}

/**
 * Total run time, runs and recursion misses of the BPF programs a process
 * holds open, each program once. Run time and runs are counted by the
 * kernel only while /proc/sys/kernel/bpf_stats_enabled is 1 (see
 * {@link enableBpfStats}).
 */
export function bpfRunStats(pid: number): BpfRunStats {
  const seen = new Set<string>();
  const total = { runTimeNs: 0, runCount: 0, recursionMisses: 0 };
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(`/proc/${pid}/fd`)];
  } catch {
    return total;
  }
  for (const entry of entries) {
    try {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${entry.name}`) !== "anon_inode:bpf-prog") continue;
      const info = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${entry.name}`);
      const id = info.match(/^prog_id:\s+(\d+)/m)?.[1];
      if (id === undefined || seen.has(id)) continue;
      seen.add(id);
      total.runTimeNs += Number(info.match(/^run_time_ns:\s+(\d+)/m)?.[1] ?? 0);
      total.runCount += Number(info.match(/^run_cnt:\s+(\d+)/m)?.[1] ?? 0);
      total.recursionMisses += Number(info.match(/^recursion_misses:\s+(\d+)/m)?.[1] ?? 0);
    } catch {
      // closed meanwhile
    }
  }
  return total;
}

const BPF_STATS = "/proc/sys/kernel/bpf_stats_enabled";

/**
 * Turns on the kernel's BPF run time accounting (a system-wide setting
 * that costs a little on every program run) and returns a function that
 * restores the previous setting.
 */
export function enableBpfStats(): () => void {
  const before = Deno.readTextFileSync(BPF_STATS).trim();
  Deno.writeTextFileSync(BPF_STATS, "1");
  return () => Deno.writeTextFileSync(BPF_STATS, before);
}

function cpuJiffies(): { busy: number; total: number } {
  const line = Deno.readTextFileSync("/proc/stat").split("\n")[0];
  // cpu user nice system idle iowait irq softirq steal guest guest_nice
  const values = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = values.reduce((a, b) => a + b, 0);
  const idle = values[3] + values[4];
  return { busy: total - idle, total };
}

/** Share of all CPUs (0..1) busy with other work during `ms` milliseconds. */
export async function backgroundBusy(ms: number): Promise<number> {
  const before = cpuJiffies();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = cpuJiffies();
  const total = after.total - before.total;
  return total > 0 ? (after.busy - before.busy) / total : 0;
}

function commandOutput(command: string, args: string[], cwd?: string): string | undefined {
  try {
    const out = new Deno.Command(command, { args, cwd, stdout: "piped", stderr: "null" })
      .outputSync();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : undefined;
  } catch {
    return undefined;
  }
}

/** A few lines saying what the figures were measured on. */
export function machineDescription(repo: string): string[] {
  const cpuinfo = Deno.readTextFileSync("/proc/cpuinfo");
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1] ?? Deno.build.arch;
  const cores = (cpuinfo.match(/^processor\s*:/gm) ?? []).length || navigator.hardwareConcurrency;
  const memKb = Number(Deno.readTextFileSync("/proc/meminfo").match(/^MemTotal:\s+(\d+)/m)?.[1]);
  const commit = commandOutput("git", ["describe", "--always", "--dirty"], repo) ?? "unknown";
  const cc = commandOutput("cc", ["--version"])?.split("\n")[0] ?? "unknown";
  return [
    `machine:  ${model}, ${cores} cores, ${(memKb / 1024 / 1024).toFixed(1)} GiB RAM`,
    `kernel:   Linux ${Deno.osRelease()}`,
    `software: deno ${Deno.version.deno}, tcpgadget ${commit}, ${cc}`,
  ];
}

/** The installed version of a Debian package, if it is installed. */
export function debianPackageVersion(name: string): string | undefined {
  return commandOutput("dpkg-query", ["-W", "-f=${Version}", name]) || undefined;
}
