/**
 * The cgroup hierarchies of this machine that test processes can be put
 * in, and removal of cgroup directories made for them. Shared by the fake
 * containers of the tests and the fake kubelet of the test API server.
 *
 * @module
 */

import { pathExists } from "../../core/system.ts";

export const CGROUP_ROOT = "/sys/fs/cgroup";

/** Mount points: v1 (pids and name=systemd) and v2 (unified, or the root). */
export function cgroupHierarchyMounts(): { v1: string[]; v2: string[] } {
  const v1 = ["pids", "systemd"].map((h) => `${CGROUP_ROOT}/${h}`)
    .filter((path) => pathExists(`${path}/tasks`));
  const v2 = [`${CGROUP_ROOT}/unified`, CGROUP_ROOT]
    .filter((path) => pathExists(`${path}/cgroup.controllers`)).slice(0, 1);
  return { v1, v2 };
}

function mountOf(dir: string): string {
  const { v1, v2 } = cgroupHierarchyMounts();
  return [...v1, ...v2].sort((a, b) => b.length - a.length)
    .find((mount) => dir.startsWith(`${mount}/`)) ?? CGROUP_ROOT;
}

/**
 * Moves what is left in a cgroup to its hierarchy's root and removes it.
 * Returns why it could not, or undefined (also when it is already gone).
 */
export function removeCgroupDir(dir: string): string | undefined {
  if (!pathExists(dir)) return undefined;
  const mount = mountOf(dir);
  try {
    const procs = Deno.readTextFileSync(`${dir}/cgroup.procs`).split("\n").filter(Boolean);
    for (const pid of procs) {
      try {
        Deno.writeTextFileSync(`${mount}/cgroup.procs`, `${pid}\n`);
      } catch {
        // exited meanwhile
      }
    }
    Deno.removeSync(dir);
    return undefined;
  } catch (error) {
    return `${dir}: ${error instanceof Error ? error.message : String(error)}`;
  }
}

/** Removes a cgroup and every cgroup below it, deepest first. */
export function removeCgroupTree(dir: string): void {
  if (!pathExists(dir)) return;
  for (const entry of Deno.readDirSync(dir)) {
    if (entry.isDirectory) removeCgroupTree(`${dir}/${entry.name}`);
  }
  removeCgroupDir(dir);
}
