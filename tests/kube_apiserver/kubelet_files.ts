/**
 * What a kubelet leaves on its node about each container, for tools that
 * read the node rather than the API (tcpgadget's node mode names pods from
 * these): the container's cgroup, named as kubelet's cgroupfs driver and
 * containerd name it (`kubepods/<qos>/pod<uid>/<container id>`, below a
 * prefix of this process so that tests never collide with a real kubelet)
 * in every hierarchy of this machine that can hold processes, and
 * kubelet's log files: `/var/log/pods/<ns>_<pod>_<uid>/<container>/<n>.log`
 * and the link `/var/log/containers/<pod>_<ns>_<container>-<id>.log`.
 *
 * Opt-in (`kubeletFiles: true`): it writes to the host's /var/log and
 * cgroup file systems, and removes what it made when the pod's sandbox
 * stops.
 *
 * @module
 */

import { pathExists as exists } from "../../core/system.ts";
import {
  CGROUP_ROOT,
  cgroupHierarchyMounts,
  removeCgroupDir,
  removeCgroupTree,
} from "../helpers/cgroups.ts";

/** Mount points of the cgroup hierarchies to use: v1 pids and name=systemd, and v2. */
export function cgroupHierarchies(): string[] {
  const { v1, v2 } = cgroupHierarchyMounts();
  return [...v1, ...v2];
}

/** Why kubelet files cannot be made here, or undefined. */
export function kubeletFilesSkipReason(): string | undefined {
  if (Deno.build.os !== "linux") return "not Linux";
  if (Deno.uid() !== 0) return "not root (cgroups and /var/log)";
  if (cgroupHierarchies().length === 0) return `no cgroup hierarchy under ${CGROUP_ROOT}`;
  return undefined;
}

/** The pod a container belongs to. */
export interface PodIdentity {
  namespace: string;
  name: string;
  uid: string;
  /** status.qosClass: Guaranteed pods have no QoS level in their path. */
  qosClass?: string;
}

let instances = 0;

/** Kubelet's files for the pods of one fake server. */
export class KubeletFiles {
  /** Below this in every hierarchy: `/kube-apiserver-<pid>-<n>`. */
  readonly prefix: string;
  readonly #root: string;
  readonly #hierarchies = cgroupHierarchies();
  /** Per pod UID: cgroup directories (creation order) and log paths made. */
  readonly #pods = new Map<string, { dirs: string[]; logs: Set<string> }>();
  readonly #createdLogDirs: string[] = [];

  /** `root`: where the host's / is (tests may use a temporary directory). */
  constructor(root = "/") {
    this.#root = root.replace(/\/+$/, "");
    this.prefix = `/kube-apiserver-${Deno.pid}-${++instances}`;
    this.#removeStale();
    for (const dir of ["/var/log/pods", "/var/log/containers"]) {
      if (!exists(this.#root + dir)) {
        Deno.mkdirSync(this.#root + dir, { recursive: true });
        this.#createdLogDirs.push(this.#root + dir);
      }
    }
  }

  /**
   * Creates a container's cgroups and log files; returns the
   * `cgroup.procs` files a process of the container is written to.
   */
  container(pod: PodIdentity, container: string, containerId: string, restart: number): string[] {
    let entry = this.#pods.get(pod.uid);
    if (!entry) this.#pods.set(pod.uid, entry = { dirs: [], logs: new Set() });
    const qos = pod.qosClass?.toLowerCase() ?? "besteffort";
    const path = `${this.prefix}/kubepods${qos === "guaranteed" ? "" : `/${qos}`}/pod${pod.uid}/` +
      containerId;
    const procs: string[] = [];
    for (const mount of this.#hierarchies) {
      let dir = mount;
      for (const segment of path.split("/").filter(Boolean)) {
        dir += `/${segment}`;
        if (exists(dir)) continue;
        Deno.mkdirSync(dir);
        entry.dirs.push(dir);
      }
      procs.push(`${dir}/cgroup.procs`);
    }
    const podDir = `${this.#root}/var/log/pods/${pod.namespace}_${pod.name}_${pod.uid}`;
    const logDir = `${podDir}/${container}`;
    Deno.mkdirSync(logDir, { recursive: true });
    Deno.writeTextFileSync(`${logDir}/${restart}.log`, "");
    const link =
      `${this.#root}/var/log/containers/${pod.name}_${pod.namespace}_${container}-${containerId}.log`;
    Deno.symlinkSync(`${logDir}/${restart}.log`, link);
    entry.logs.add(link).add(podDir);
    return procs;
  }

  /**
   * Removes a pod's cgroups (moving any process left to the hierarchy's
   * root first) and log files. Call once its processes are gone.
   */
  removePod(uid: string): void {
    const entry = this.#pods.get(uid);
    if (!entry) return;
    this.#pods.delete(uid);
    for (const dir of [...entry.dirs].reverse()) removeCgroupDir(dir);
    for (const path of entry.logs) {
      try {
        Deno.removeSync(path, { recursive: true });
      } catch {
        // already gone
      }
    }
  }

  /** Removes everything left, and the log directories this made. */
  close(): void {
    for (const uid of [...this.#pods.keys()]) this.removePod(uid);
    for (const mount of this.#hierarchies) removeCgroupTree(`${mount}${this.prefix}`);
    for (const dir of this.#createdLogDirs) {
      try {
        Deno.removeSync(dir); // only if empty
      } catch {
        // something else uses it now
      }
    }
  }

  /**
   * Cgroups of earlier test processes that died before cleaning up, and
   * the log files of their pods (found by the pod UIDs in the cgroups).
   */
  #removeStale(): void {
    const uids = new Set<string>();
    for (const mount of this.#hierarchies) {
      for (const entry of Deno.readDirSync(mount)) {
        const match = /^kube-apiserver-(\d+)-\d+$/.exec(entry.name);
        if (!match || !entry.isDirectory || exists(`/proc/${match[1]}`)) continue;
        this.#podUids(`${mount}/${entry.name}`, uids);
        removeCgroupTree(`${mount}/${entry.name}`);
      }
    }
    if (uids.size === 0) return;
    const logs = `${this.#root}/var/log`;
    for (const dir of ["pods", "containers"]) {
      if (!exists(`${logs}/${dir}`)) continue;
      for (const entry of Deno.readDirSync(`${logs}/${dir}`)) {
        const path = `${logs}/${dir}/${entry.name}`;
        // pods/<ns>_<pod>_<uid>; containers/<link> -> pods/<ns>_<pod>_<uid>/...
        let name = entry.name;
        try {
          if (dir === "containers") name = Deno.readLinkSync(path);
        } catch {
          continue; // not a link: not kubelet's
        }
        const uid = name.match(/_([0-9a-f-]{36})(?:\/|$)/)?.[1];
        if (uid && uids.has(uid)) Deno.removeSync(path, { recursive: true });
      }
    }
  }

  /** The pod UIDs of `pod<uid>` cgroups below `dir`. */
  #podUids(dir: string, uids: Set<string>): void {
    for (const entry of Deno.readDirSync(dir)) {
      if (!entry.isDirectory) continue;
      const match = /^pod([0-9a-f-]{36})$/.exec(entry.name);
      if (match) uids.add(match[1]);
      else this.#podUids(`${dir}/${entry.name}`, uids);
    }
  }
}
