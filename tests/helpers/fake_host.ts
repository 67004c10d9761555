/**
 * A fake host root in a temporary directory, for the container resolver's
 * unit tests (no privileges): `proc/<pid>/ns/mnt` links to `mnt:[N]` as
 * the kernel's do, `proc/<pid>/cgroup` files, kubelet's log directories and
 * links, and a cgroup2 tree whose directory inodes stand for cgroup ids.
 *
 * @module
 */

/** A container as kubelet's files describe it. */
export interface FakeKubeletContainer {
  namespace: string;
  pod: string;
  podUid: string;
  container: string;
  containerId: string;
}

/** A temporary host root; remove it with `await using`. */
export class FakeHost implements AsyncDisposable {
  readonly root: string;

  private constructor(root: string) {
    this.root = root;
  }

  /** An empty host root with /proc, /var/log/containers, /var/log/pods. */
  static create(): FakeHost {
    const root = Deno.makeTempDirSync({ prefix: "tgfakehost-" });
    for (const dir of ["proc", "var/log/containers", "var/log/pods"]) {
      Deno.mkdirSync(`${root}/${dir}`, { recursive: true });
    }
    return new FakeHost(root);
  }

  /** A process in mount namespace `mntns` with this `/proc/<pid>/cgroup`. */
  process(pid: number, mntns: number, cgroup = "0::/\n"): void {
    Deno.mkdirSync(`${this.root}/proc/${pid}/ns`, { recursive: true });
    Deno.symlinkSync(`mnt:[${mntns}]`, `${this.root}/proc/${pid}/ns/mnt`);
    Deno.writeTextFileSync(`${this.root}/proc/${pid}/cgroup`, cgroup);
  }

  /** The process exits. */
  exit(pid: number): void {
    Deno.removeSync(`${this.root}/proc/${pid}`, { recursive: true });
  }

  /** The pod's log directory (kubelet creates it before the containers). */
  podDir(c: Pick<FakeKubeletContainer, "namespace" | "pod" | "podUid">): string {
    const dir = `${this.root}/var/log/pods/${c.namespace}_${c.pod}_${c.podUid}`;
    Deno.mkdirSync(dir, { recursive: true });
    return dir;
  }

  /** The container's log directory and its link in /var/log/containers. Returns the link. */
  logLink(c: FakeKubeletContainer, name?: string): string {
    const dir = `${this.podDir(c)}/${c.container}`;
    Deno.mkdirSync(dir, { recursive: true });
    Deno.writeTextFileSync(`${dir}/0.log`, "");
    const link = `${this.root}/var/log/containers/${
      name ?? `${c.pod}_${c.namespace}_${c.container}-${c.containerId}.log`
    }`;
    // Kubelet's targets are host paths; ours live under the root.
    Deno.symlinkSync(`${dir}/0.log`, link);
    return link;
  }

  /** A directory of the fake cgroup2 hierarchy; returns its inode (the cgroup id). */
  cgroup(path: string): number {
    const mount = `${this.root}/sys/fs/cgroup`;
    Deno.mkdirSync(mount, { recursive: true });
    Deno.writeTextFileSync(`${mount}/cgroup.controllers`, "");
    Deno.mkdirSync(`${mount}${path}`, { recursive: true });
    return Deno.statSync(`${mount}${path}`).ino!;
  }

  [Symbol.asyncDispose](): Promise<void> {
    Deno.removeSync(this.root, { recursive: true });
    return Promise.resolve();
  }
}
