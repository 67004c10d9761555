/**
 * Pod sandboxes on this machine. In `mount-namespace` mode (needs root) a
 * pod gets a long-lived "pause" process in a private mount namespace with
 * its own tmpfs on /tmp, and every process of the pod (container commands,
 * execs) enters that namespace with `nsenter --mount`; processes stay in
 * the host PID and network namespaces, like a hostPID/hostNetwork pod. In
 * `none` mode processes run directly on the host (no /tmp isolation).
 *
 * Each process runs in its own session (`setsid`), so a process and its
 * children can be killed as a group; on teardown every process left in the
 * pod's mount namespace is killed too.
 *
 * @module
 */

/** How pods are isolated. */
export type SandboxMode = "mount-namespace" | "none";

/** What to run in a sandbox. */
export interface SpawnOptions {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
  stdin: "piped" | "null";
  stdout: "piped" | "null";
  stderr: "piped" | "null";
  /** `cgroup.procs` files the process joins before it runs (kubelet files). */
  cgroupProcs?: string[];
}

/** Whether this process can create mount namespaces (root + unshare + nsenter). */
export function canUseMountNamespaces(): boolean {
  if (Deno.build.os !== "linux") return false;
  try {
    if (Deno.uid() !== 0) return false;
    for (const tool of ["unshare", "nsenter", "setsid", "setpriv", "mount"]) {
      const out = new Deno.Command(tool, { args: ["--version"], stdout: "null", stderr: "null" })
        .outputSync();
      if (!out.success) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * `setpriv --pdeathsig KILL` when available: processes spawned here die
 * with this process even if it is killed before close() (Deno spawns from
 * the main thread, which lives as long as the process).
 */
const DEATH_SIGNAL: string[] = (() => {
  try {
    const ok = new Deno.Command("setpriv", { args: ["--help"], stdout: "null", stderr: "null" })
      .outputSync().success;
    return ok ? ["setpriv", "--pdeathsig", "KILL", "--"] : [];
  } catch {
    return [];
  }
})();

/** A volume mount of the pod, set up in its mount namespace. */
export interface MountSpec {
  /** bind: a host path (hostPath volumes); tmpfs: an empty dir (emptyDir and others). */
  kind: "bind" | "tmpfs";
  /** Host path to bind (kind bind). */
  source?: string;
  /** Where the containers see it. */
  target: string;
  readOnly?: boolean;
  /** Create the host path if missing (hostPath type DirectoryOrCreate). */
  createSource?: boolean;
}

function shellQuote(text: string): string {
  return `'${text.replaceAll("'", `'\\''`)}'`;
}

function underTmp(path: string): boolean {
  return path === "/tmp" || path.startsWith("/tmp/");
}

/**
 * Mount points this process created on the host for volume mounts outside
 * /tmp (a mount needs an existing directory), with how many sandboxes use
 * them; removed when the last one stops.
 */
const createdMountPoints = new Map<string, number>();

function ensureMountPoint(path: string): void {
  const count = createdMountPoints.get(path);
  if (count !== undefined) {
    createdMountPoints.set(path, count + 1);
    return;
  }
  try {
    Deno.statSync(path);
    return;
  } catch {
    // missing: create it
  }
  Deno.mkdirSync(path, { recursive: true });
  createdMountPoints.set(path, 1);
}

function releaseMountPoint(path: string): void {
  const count = createdMountPoints.get(path);
  if (count === undefined) return;
  if (count > 1) {
    createdMountPoints.set(path, count - 1);
    return;
  }
  createdMountPoints.delete(path);
  try {
    Deno.removeSync(path); // only if still empty
  } catch {
    // in use or not empty: leave it
  }
}

/**
 * The pause process's script: host binds first (so they see the host's
 * own /tmp), then the private /tmp, then mounts inside /tmp; then it
 * reports readiness and sleeps as the namespace's anchor.
 */
function pauseScript(mounts: MountSpec[]): string {
  const lines = ["set -e"];
  const mountOne = (m: MountSpec) => {
    const target = shellQuote(m.target);
    if (underTmp(m.target)) lines.push(`mkdir -p ${target}`);
    if (m.kind === "bind") {
      lines.push(`mount --rbind ${shellQuote(m.source!)} ${target}`);
      if (m.readOnly) lines.push(`mount -o remount,bind,ro ${target}`);
    } else {
      lines.push(`mount -t tmpfs -o mode=0777 tmpfs ${target}`);
      if (m.readOnly) lines.push(`mount -o remount,ro ${target}`);
    }
  };
  mounts.filter((m) => !underTmp(m.target)).forEach(mountOne);
  lines.push("mount -t tmpfs -o mode=1777 tmpfs /tmp");
  mounts.filter((m) => underTmp(m.target)).forEach(mountOne);
  lines.push("echo ready", "exec sleep infinity");
  return lines.join("\n");
}

/** The sandbox of one pod. */
export class PodSandbox {
  readonly mode: SandboxMode;
  /** PID of the pause process (mount-namespace mode). */
  readonly pausePid: number | undefined;
  /** `mnt:[inode]` of the pod's mount namespace. */
  readonly mountNamespace: string | undefined;
  readonly #pause: Deno.ChildProcess | undefined;
  readonly #pauseStatus: Promise<Deno.CommandStatus> | undefined;
  readonly #processes = new Map<number, Promise<Deno.CommandStatus>>();
  #stopped = false;
  #stopping: Promise<void> | undefined;
  #mountPoints: string[] = [];
  readonly #onStop: (() => void)[] = [];

  private constructor(mode: SandboxMode, pause?: Deno.ChildProcess, mountNamespace?: string) {
    this.mode = mode;
    this.#pause = pause;
    this.pausePid = pause?.pid;
    this.#pauseStatus = pause?.status;
    this.mountNamespace = mountNamespace;
  }

  /** Starts a sandbox; in mount-namespace mode waits until /tmp is mounted. */
  static async start(mode: SandboxMode, mounts: MountSpec[] = []): Promise<PodSandbox> {
    if (mode === "none") return new PodSandbox(mode);
    const mountPoints: string[] = [];
    try {
      for (const m of mounts) {
        if (m.kind === "bind" && m.createSource) Deno.mkdirSync(m.source!, { recursive: true });
        if (!underTmp(m.target)) {
          ensureMountPoint(m.target);
          mountPoints.push(m.target);
        }
      }
      const sandbox = await PodSandbox.#startPause(mounts);
      sandbox.#mountPoints = mountPoints;
      return sandbox;
    } catch (error) {
      for (const p of mountPoints) releaseMountPoint(p);
      throw error;
    }
  }

  static async #startPause(mounts: MountSpec[]): Promise<PodSandbox> {
    const mode: SandboxMode = "mount-namespace";
    const pause = new Deno.Command("unshare", {
      args: [
        "--mount",
        "--propagation",
        "private",
        "--",
        ...DEATH_SIGNAL,
        "sh",
        "-c",
        pauseScript(mounts),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      clearEnv: true,
      env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
    }).spawn();
    const reader = pause.stdout.getReader();
    let text = "";
    try {
      while (!text.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    } finally {
      reader.releaseLock();
      await pause.stdout.cancel().catch(() => {});
    }
    if (!text.startsWith("ready")) {
      const status = await pause.status;
      const stderr = await new Response(pause.stderr).text();
      throw new Error(`pod sandbox failed to start (${status.code}): ${stderr.trim()}`);
    }
    // stderr stays open on sleep; drain it so the pipe never fills.
    pause.stderr.pipeTo(new WritableStream()).catch(() => {});
    const mountNamespace = Deno.readLinkSync(`/proc/${pause.pid}/ns/mnt`);
    return new PodSandbox(mode, pause, mountNamespace);
  }

  /** Whether the sandbox was torn down. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /**
   * Looks `command` up as the pod would see it (PATH search within the
   * pod's mount namespace). Returns an error text when it cannot run.
   */
  checkExecutable(command: string, path: string): string | undefined {
    const root = this.pausePid !== undefined ? `/proc/${this.pausePid}/root` : "";
    const candidates = command.includes("/")
      ? [command]
      : path.split(":").filter((d) => d).map((d) => `${d}/${command}`);
    for (const candidate of candidates) {
      try {
        const info = Deno.statSync(`${root}${candidate.startsWith("/") ? "" : "/"}${candidate}`);
        if (info.isFile && ((info.mode ?? 0o755) & 0o111) !== 0) return undefined;
        if (command.includes("/")) {
          return info.isDirectory
            ? `exec: "${command}": is a directory`
            : `exec: "${command}": permission denied`;
        }
      } catch {
        // keep looking
      }
    }
    return command.includes("/")
      ? `exec: "${command}": stat ${command}: no such file or directory`
      : `exec: "${command}": executable file not found in $PATH`;
  }

  /** Spawns a process inside the sandbox, in a new session. */
  spawn(options: SpawnOptions): Deno.ChildProcess {
    if (this.#stopped) throw new Error("sandbox stopped");
    const cwd = options.cwd ?? "/";
    // Joins its container's cgroups, then becomes the command (same pid).
    const join = options.cgroupProcs?.length
      ? [
        "sh",
        "-c",
        'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1"; shift; n=$((n-1)); done; exec "$@"',
        "sh",
        String(options.cgroupProcs.length),
        ...options.cgroupProcs,
      ]
      : [];
    const args = this.pausePid !== undefined
      ? [
        ...DEATH_SIGNAL,
        ...join,
        "nsenter",
        `--target=${this.pausePid}`,
        "--mount",
        `--wd=${cwd}`,
        "--",
        ...options.argv,
      ]
      : [...DEATH_SIGNAL, ...join, ...options.argv];
    const child = new Deno.Command("setsid", {
      args,
      cwd: this.pausePid !== undefined ? "/" : cwd,
      clearEnv: true,
      env: options.env,
      stdin: options.stdin,
      stdout: options.stdout,
      stderr: options.stderr,
    }).spawn();
    const status = child.status;
    this.#processes.set(child.pid, status);
    status.finally(() => this.#processes.delete(child.pid)).catch(() => {});
    return child;
  }

  /** Moves a running process (the pause process) into cgroups. */
  joinCgroups(pid: number, cgroupProcs: string[]): void {
    for (const file of cgroupProcs) Deno.writeTextFileSync(file, `${pid}\n`);
  }

  /** Calls `callback` once every process of the sandbox is gone. */
  onStop(callback: () => void): void {
    this.#onStop.push(callback);
  }

  /** Sends a signal to a spawned process and its process group. */
  signalGroup(pid: number, signal: Deno.Signal): void {
    try {
      Deno.kill(-pid, signal);
    } catch {
      try {
        Deno.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  }

  /** PIDs of every live process of the pod (pause included). */
  pids(): number[] {
    const pids = new Set<number>(this.#processes.keys());
    if (this.mountNamespace) {
      for (const pid of processesInMountNamespace(this.mountNamespace)) pids.add(pid);
    }
    return [...pids].filter(isAlive).sort((a, b) => a - b);
  }

  /**
   * Kills everything: SIGKILL to every spawned process group and every
   * process in the mount namespace, then the pause process; waits for the
   * processes this sandbox spawned.
   */
  stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    for (let round = 0; round < 20; round++) {
      for (const pid of this.#processes.keys()) this.signalGroup(pid, "SIGKILL");
      const stragglers = this.mountNamespace
        ? processesInMountNamespace(this.mountNamespace).filter((p) => p !== this.pausePid)
        : [];
      for (const pid of stragglers) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone
        }
      }
      if (this.#processes.size === 0 && stragglers.length === 0) break;
      await Promise.race([
        Promise.allSettled([...this.#processes.values()]),
        new Promise((r) => setTimeout(r, 50)),
      ]);
    }
    if (this.#pause) {
      try {
        this.#pause.kill("SIGKILL");
      } catch {
        // gone
      }
      await this.#pauseStatus;
    }
    for (const p of this.#mountPoints) releaseMountPoint(p);
    this.#mountPoints = [];
    for (const callback of this.#onStop.splice(0)) callback();
  }
}

/** True while a process exists and has not exited (a zombie has). */
export function isAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** PIDs of the processes whose mount namespace is `namespace`. */
export function processesInMountNamespace(namespace: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      if (Deno.readLinkSync(`/proc/${entry.name}/ns/mnt`) === namespace) {
        pids.push(Number(entry.name));
      }
    } catch {
      // exited, or a kernel thread
    }
  }
  return pids;
}
