/**
 * Containers as the kernel and kubelet's files see them, without a
 * container runtime: test actors in mount namespaces of their own, placed
 * in cgroups named as kubelet and the runtimes name them (cgroupfs or
 * systemd driver; containerd, CRI-O or Docker; cgroup v1 and/or v2), with
 * kubelet's log directories and links under a temporary host root whose
 * `proc` and `sys` lead to the real ones.
 *
 * Every cgroup directory is made below `/tgtest-<pid>-<n>` of each
 * hierarchy and removed on disposal, after the processes have left.
 *
 * @module
 */

import { Actor } from "./actors.ts";
import { hasCommand } from "./privileges.ts";
import {
  CGROUP_ROOT,
  cgroupHierarchyMounts,
  removeCgroupDir,
  removeCgroupTree,
} from "./cgroups.ts";

export type CgroupDriver = "cgroupfs" | "systemd";
export type QosClass = "guaranteed" | "burstable" | "besteffort";
export type Runtime = "containerd" | "crio" | "docker";
/** v1: the pids and name=systemd hierarchies; v2: the unified one. */
export type Hierarchy = "v1" | "v2";

/** What a fake container is. */
export interface ContainerSpec {
  namespace: string;
  pod: string;
  container: string;
  /** Command name of its process. */
  comm: string;
  driver: CgroupDriver;
  qos: QosClass;
  runtime: Runtime;
  hierarchies: Hierarchy[];
  /** Default: a new random UID. Containers of one pod share it. */
  podUid?: string;
  /** Files of its own (target path -> source), e.g. /etc/resolv.conf: see Actor.start. */
  binds?: Record<string, string>;
}

/** Mount points of the hierarchies available here. */
function hierarchyMounts(): Record<Hierarchy, string[]> {
  return cgroupHierarchyMounts();
}

/** The hierarchies tests can place processes in here. */
export function availableHierarchies(): Hierarchy[] {
  const mounts = hierarchyMounts();
  return (["v1", "v2"] as const).filter((h) => mounts[h].length > 0);
}

/** Why fake containers cannot be made here, or undefined. */
export function containersSkipReason(): string | undefined {
  if (!hasCommand("unshare")) return "unshare (util-linux) not installed";
  if (availableHierarchies().length === 0) return `no cgroup hierarchy under ${CGROUP_ROOT}`;
  return undefined;
}

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** The cgroup path (below the test's prefix) of a container, as its driver and runtime name it. */
export function containerCgroupPath(
  spec: Pick<ContainerSpec, "driver" | "qos" | "runtime">,
  podUid: string,
  containerId: string,
): string {
  const guaranteed = spec.qos === "guaranteed";
  if (spec.driver === "cgroupfs") {
    const qos = guaranteed ? "" : `/${spec.qos}`;
    const id = spec.runtime === "crio" ? `crio-${containerId}` : containerId;
    return `/kubepods${qos}/pod${podUid}/${id}`;
  }
  const uid = podUid.replaceAll("-", "_");
  const qosSlice = guaranteed ? "" : `/kubepods-${spec.qos}.slice`;
  const podSlice = guaranteed ? `kubepods-pod${uid}.slice` : `kubepods-${spec.qos}-pod${uid}.slice`;
  const prefix = { containerd: "cri-containerd", crio: "crio", docker: "docker" }[spec.runtime];
  return `/kubepods.slice${qosSlice}/${podSlice}/${prefix}-${containerId}.scope`;
}

/** A fake container: its process, ids and cgroups. */
export interface FakeContainer {
  spec: ContainerSpec;
  actor: Actor;
  podUid: string;
  containerId: string;
  /** Mount namespace id of its process. */
  mntns: number;
  /** Its cgroup, below each hierarchy's mount point. */
  cgroupPath: string;
  /** cgroup v2 id of its cgroup (1, the root, if only in v1 hierarchies). */
  cgroupId: number;
  /** What the resolver should say about it. */
  expected: {
    namespace: string;
    pod: string;
    container: string;
    containerId: string;
    podUid: string;
  };
}

let counter = 0;

/**
 * A temporary host root with kubelet's directories, and the containers
 * started in it. Dispose of it (`await using`) to stop the containers and
 * remove their cgroups and files.
 */
export class FakeNode implements AsyncDisposable {
  /** The host root to give the resolver. */
  readonly root: string;
  /** Below this in every hierarchy (e.g. `/tgtest-4242-1`). */
  readonly prefix: string;
  readonly #mounts = hierarchyMounts();
  readonly #containers: FakeContainer[] = [];
  /** Directories made, in every hierarchy, in creation order. */
  readonly #cgroupDirs: string[] = [];

  private constructor(root: string, prefix: string) {
    this.root = root;
    this.prefix = prefix;
  }

  /** A new host root: `proc` and `sys` link to the real ones, `var/log` is real. */
  static create(): FakeNode {
    const root = Deno.makeTempDirSync({ prefix: "tgnode-" });
    Deno.symlinkSync("/proc", `${root}/proc`);
    Deno.symlinkSync("/sys", `${root}/sys`);
    Deno.mkdirSync(`${root}/var/log/containers`, { recursive: true });
    Deno.mkdirSync(`${root}/var/log/pods`, { recursive: true });
    counter++;
    const node = new FakeNode(root, `/tgtest-${Deno.pid}-${counter}`);
    node.#removeStale();
    return node;
  }

  /** The containers started so far. */
  get containers(): readonly FakeContainer[] {
    return this.#containers;
  }

  /** Starts a container: cgroups, kubelet's files, and its process. */
  async start(spec: ContainerSpec): Promise<FakeContainer> {
    const podUid = spec.podUid ?? crypto.randomUUID();
    const containerId = randomHex(32);
    const path = this.prefix + containerCgroupPath(spec, podUid, containerId);
    const dirs: string[] = [];
    for (const hierarchy of spec.hierarchies) {
      const mounts = this.#mounts[hierarchy];
      if (mounts.length === 0) throw new Error(`no cgroup ${hierarchy} hierarchy here`);
      for (const mount of mounts) dirs.push(this.#mkdirCgroup(mount, path));
    }
    this.#kubeletFiles(spec, podUid, containerId);
    const actor = await Actor.start(spec.comm, { unshareMount: true, binds: spec.binds });
    const container: FakeContainer = {
      spec,
      actor,
      podUid,
      containerId,
      mntns: Deno.statSync(`/proc/${actor.pid}/ns/mnt`).ino!,
      cgroupPath: path,
      cgroupId: 1,
      expected: {
        namespace: spec.namespace,
        pod: spec.pod,
        container: spec.container,
        containerId,
        podUid,
      },
    };
    this.#containers.push(container);
    for (const dir of dirs) Deno.writeTextFileSync(`${dir}/cgroup.procs`, `${actor.pid}\n`);
    if (spec.hierarchies.includes("v2")) {
      container.cgroupId = Deno.statSync(`${this.#mounts.v2[0]}${path}`).ino!;
    }
    return container;
  }

  /**
   * Makes cgroup `path` below the container's own (in each of its
   * hierarchies), and the container's process moves itself into it, as a
   * container allowed to create cgroups (privileged, or with cgroup
   * delegation) can. Returns the new cgroup's v2 id (1 if only in v1).
   */
  async nest(container: FakeContainer, path: string): Promise<number> {
    const dirs: string[] = [];
    for (const hierarchy of container.spec.hierarchies) {
      for (const mount of this.#mounts[hierarchy]) {
        dirs.push(this.#mkdirCgroup(mount, container.cgroupPath + path));
      }
    }
    await container.actor.do(`join_cgroup ${dirs.join(" ")}`);
    if (!container.spec.hierarchies.includes("v2")) return 1;
    return Deno.statSync(`${this.#mounts.v2[0]}${container.cgroupPath}${path}`).ino!;
  }

  /**
   * Starts a container whose mount namespace gets inode number `mntns`,
   * which a namespace that ended had: the kernel hands out the lowest free
   * number, so lower free ones are first taken by placeholder namespaces
   * (ended once the container started). Throws if another process took it.
   */
  async startReusing(mntns: number, spec: ContainerSpec): Promise<FakeContainer> {
    const placeholders: Deno.ChildProcess[] = [];
    try {
      for (let tries = 0; tries < 200; tries++) {
        const placeholder = new Deno.Command("unshare", {
          args: ["--mount", "--propagation", "private", "sleep", "60"],
          stdout: "null",
          stderr: "null",
        }).spawn();
        const inode = await namespaceOf(placeholder.pid);
        if (inode < mntns) {
          placeholders.push(placeholder);
          continue;
        }
        placeholder.kill();
        await placeholder.status;
        // Above it: the old namespace is not freed yet (or was taken).
        if (inode > mntns) {
          await new Promise((resolve) => setTimeout(resolve, 20));
          continue;
        }
        const container = await this.start(spec);
        if (container.mntns === mntns) return container;
        throw new Error(`mount namespace ${mntns} was taken by another process meanwhile`);
      }
      throw new Error(`mount namespace ${mntns} was not freed`);
    } finally {
      for (const placeholder of placeholders) {
        placeholder.kill();
        await placeholder.status;
      }
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.#containers.map((c) => c.actor.stop()));
    const failures: string[] = [];
    // Deepest first.
    for (const dir of [...this.#cgroupDirs].reverse()) {
      const error = removeCgroupDir(dir);
      if (error) failures.push(error);
    }
    for (const mounts of Object.values(this.#mounts)) {
      for (const mount of mounts) {
        const error = removeCgroupDir(`${mount}${this.prefix}`);
        if (error) failures.push(error);
      }
    }
    Deno.removeSync(this.root, { recursive: true });
    if (failures.length > 0) throw new Error(`cgroups left behind: ${failures.join("; ")}`);
  }

  /** mkdir -p of a cgroup, recording each directory made. */
  #mkdirCgroup(mount: string, path: string): string {
    let dir = mount;
    for (const segment of path.split("/").filter(Boolean)) {
      dir += `/${segment}`;
      try {
        Deno.mkdirSync(dir);
        if (dir !== `${mount}${this.prefix}`) this.#cgroupDirs.push(dir);
      } catch (error) {
        if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
      }
    }
    return dir;
  }

  #kubeletFiles(spec: ContainerSpec, podUid: string, containerId: string): void {
    const logDir =
      `${this.root}/var/log/pods/${spec.namespace}_${spec.pod}_${podUid}/${spec.container}`;
    Deno.mkdirSync(logDir, { recursive: true });
    Deno.writeTextFileSync(`${logDir}/0.log`, "");
    Deno.symlinkSync(
      `${logDir}/0.log`,
      `${this.root}/var/log/containers/${spec.pod}_${spec.namespace}_${spec.container}-${containerId}.log`,
    );
  }

  /** Cgroups of earlier test runs that died before cleaning up. */
  #removeStale(): void {
    for (const mounts of Object.values(this.#mounts)) {
      for (const mount of mounts) {
        for (const entry of Deno.readDirSync(mount)) {
          const match = /^tgtest-(\d+)-\d+$/.exec(entry.name);
          if (!match || !entry.isDirectory) continue;
          try {
            Deno.statSync(`/proc/${match[1]}`);
            continue; // its test process still runs
          } catch {
            removeCgroupTree(`${mount}/${entry.name}`);
          }
        }
      }
    }
  }
}

/** The mount namespace of a process once it left ours (unshare runs before exec). */
async function namespaceOf(pid: number): Promise<number> {
  const ours = Deno.statSync("/proc/self/ns/mnt").ino!;
  for (let i = 0; i < 200; i++) {
    const inode = Deno.statSync(`/proc/${pid}/ns/mnt`).ino!;
    if (inode !== ours) return inode;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`process ${pid} did not enter a mount namespace of its own`);
}

/** Moves any process left in a cgroup to the hierarchy's root, then removes it. */
