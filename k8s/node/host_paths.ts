/**
 * The host's files seen from wherever tcpgadget runs: on the node (`/`) or
 * in a pod that mounts the node's `/` elsewhere (`--host-root /host`). Every
 * host path (`/proc`, `/var/log`, `/sys/fs/cgroup`) goes through here.
 *
 * @module
 */

/**
 * `path` (absolute, on the host) under `hostRoot`.
 *
 * @example
 * ```ts
 * import { hostPath } from "./host_paths.ts";
 * import assert from "node:assert/strict";
 * assert.equal(hostPath("/", "/proc/1/cgroup"), "/proc/1/cgroup");
 * assert.equal(hostPath("/host/", "/proc/1/cgroup"), "/host/proc/1/cgroup");
 * ```
 */
export function hostPath(hostRoot: string, path: string): string {
  const root = hostRoot.replace(/\/+$/, "");
  return root + path;
}

/**
 * The mount namespace id (inode number) of a host process, or undefined if
 * the process is gone or not readable. A link read, cheaper than a stat.
 *
 * @example
 * ```ts ignore
 * import { mountNamespaceOf } from "./host_paths.ts";
 * mountNamespaceOf("/", Deno.pid); // 4026531841
 * ```
 */
export function mountNamespaceOf(hostRoot: string, pid: number | string): number | undefined {
  let link: string;
  try {
    link = Deno.readLinkSync(hostPath(hostRoot, `/proc/${pid}/ns/mnt`));
  } catch {
    return undefined;
  }
  // "mnt:[4026531841]"
  const open = link.indexOf("[");
  const id = Number(link.slice(open + 1, -1));
  return open >= 0 && Number.isInteger(id) ? id : undefined;
}

/**
 * The host's own mount namespace: that of pid 1, or of pid 2 (kthreadd,
 * always in the initial namespaces) where pid 1 cannot be inspected.
 * Undefined if neither can.
 *
 * @example
 * ```ts ignore
 * import { hostMountNamespace } from "./host_paths.ts";
 * hostMountNamespace("/"); // 4026531841
 * ```
 */
export function hostMountNamespace(hostRoot: string): number | undefined {
  return mountNamespaceOf(hostRoot, 1) ?? mountNamespaceOf(hostRoot, 2);
}

/**
 * Where the host's cgroup v2 hierarchy is mounted: `/sys/fs/cgroup`
 * (unified), `/sys/fs/cgroup/unified` (hybrid), or undefined (v1 only).
 *
 * @example
 * ```ts ignore
 * import { cgroup2Mount } from "./host_paths.ts";
 * cgroup2Mount("/"); // "/sys/fs/cgroup"
 * ```
 */
export function cgroup2Mount(hostRoot: string): string | undefined {
  for (const candidate of ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]) {
    const path = hostPath(hostRoot, candidate);
    try {
      Deno.statSync(`${path}/cgroup.controllers`);
      return path;
    } catch {
      // not a cgroup2 mount
    }
  }
  return undefined;
}
