/**
 * Which pod and container a cgroup belongs to, read from its path alone.
 *
 * Kubelet puts every pod in a cgroup named after the pod UID, below a
 * `kubepods` cgroup, and the container runtime puts each container in a
 * child of it named after the container id. The names depend on the cgroup
 * driver:
 *
 * - cgroupfs: `/kubepods/burstable/pod<uid>/<id>`, guaranteed pods without
 *   a QoS level: `/kubepods/pod<uid>/<id>`; CRI-O prefixes `crio-`.
 * - systemd: `/kubepods.slice/kubepods-burstable.slice/
 *   kubepods-burstable-pod<uid with _ for ->.slice/cri-containerd-<id>.scope`
 *   (`crio-<id>.scope`, `docker-<id>.scope`); guaranteed:
 *   `kubepods-pod<uid>.slice`.
 *
 * A cgroup root (`kind`'s `/kubelet.slice/kubelet-kubepods.slice/...`) or
 * an outer container (`/docker/<id>/kubepods/...`) may come before, and
 * sub-cgroups (crun's `/container`) after.
 *
 * Identity comes only from the levels kubelet and the runtime make: the
 * first kubepods root (`kubepods`, `kubepods.slice`, or one with a cgroup
 * root's prefix, `kubelet-kubepods.slice`), a QoS level directly below it
 * or none, the pod directly below that, the container directly below the
 * pod. Anything deeper is the container's own: one that may create cgroups
 * (privileged, or with cgroup delegation) could make
 * `<its own>/kubepods/besteffort/pod<victim-uid>/<victim-id>` and move into
 * it, so a pod segment found further down names nobody (and a cluster
 * nested in a pod is that pod's). Seen from another cgroup namespace the
 * path starts with `..` (`/../../kubepods-besteffort-pod<uid>.slice/...`),
 * from a level above the reader's own cgroup: the first level after the
 * `..` may then be the QoS level or the pod. Containerd with a cgroup
 * driver other than kubelet's takes the systemd form of a cgroups path as
 * a name (`kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`): the
 * first such segment names the container.
 *
 * @module
 */

/** The pod and container of a cgroup; empty strings when not known. */
export interface PodContainerIds {
  /** Pod UID, with dashes (`0f3c...-...`), or 32 hex digits for static pods. */
  podUid: string;
  /** Container id: 64 hex digits. */
  containerId: string;
}

/** One line of `/proc/<pid>/cgroup`. */
export interface ProcCgroupLine {
  /** Hierarchy id; 0 for the cgroup v2 (unified) line. */
  hierarchy: number;
  /** Controllers of a v1 hierarchy (`["cpu", "cpuacct"]`, `["name=systemd"]`); empty for v2. */
  controllers: string[];
  path: string;
}

// A UUID (dashes, or underscores in systemd unit names) or 32 hex digits
// (static pods: the UID is a hash of the manifest).
const UID = "[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12}|[0-9a-f]{32}";
// cgroupfs: pod<uid>
const CGROUPFS_POD = new RegExp(`^pod(${UID})$`);
// systemd: kubepods-pod<uid>.slice, kubepods-<qos>-pod<uid>.slice, with any
// prefix a cgroup root adds (kubelet-kubepods-...).
const SYSTEMD_POD = new RegExp(`^[a-z0-9_.-]*kubepods[a-z0-9-]*-pod(${UID})\\.slice$`);
// The kubepods root: cgroupfs kubepods, systemd kubepods.slice, or under a
// cgroup root (kind's /kubelet.slice/kubelet-kubepods.slice).
const KUBEPODS_ROOT = /^(?:kubepods|(?:[a-z0-9_.-]*-)?kubepods\.slice)$/;
// A QoS level: cgroupfs burstable, systemd kubepods-burstable.slice.
const QOS_LEVEL = /^(?:burstable|besteffort|[a-z0-9_.-]*kubepods-(?:burstable|besteffort)\.slice)$/;
// The systemd form of a cgroupsPath ("<slice>:<prefix>:<id>") taken as a
// plain path, as containerd does when its driver and kubelet's disagree.
const COLON_FORM = new RegExp(
  `^[a-z0-9_.-]*kubepods[a-z0-9-]*-pod(${UID})\\.slice:[^:]*:([0-9a-f]{64})$`,
);
// <id>, <runtime>-<id>, <runtime>-<id>.scope
const CONTAINER = /^(?:([a-z][a-z0-9-]*)-)?([0-9a-f]{64})(?:\.scope)?$/;

/**
 * The pod UID and container id in a cgroup path, or undefined if the path
 * is not in a pod. A cgroup of the pod itself has an empty `containerId`;
 * so has CRI-O's `crio-conmon-<id>` cgroup, whose monitor process runs on
 * the host, not in the container.
 *
 * @example
 * ```ts
 * import { parseCgroupPath } from "./cgroup_path.ts";
 * import assert from "node:assert/strict";
 * const ids = parseCgroupPath(
 *   "/kubepods.slice/kubepods-besteffort.slice/" +
 *     "kubepods-besteffort-pod0f3c8a56_2d1e_4b5a_9c7d_1e2f3a4b5c6d.slice/" +
 *     "cri-containerd-" + "ab".repeat(32) + ".scope",
 * );
 * assert.deepEqual(ids, {
 *   podUid: "0f3c8a56-2d1e-4b5a-9c7d-1e2f3a4b5c6d",
 *   containerId: "ab".repeat(32),
 * });
 * ```
 */
export function parseCgroupPath(path: string): PodContainerIds | undefined {
  if (!path.includes("kubepods")) return undefined;
  const segments = path.split("/").filter((s) => s !== "");
  // Seen from another cgroup namespace: up from the reader's cgroup.
  let at = 0;
  while (segments[at] === "..") at++;
  if (!QOS_LEVEL.test(segments[at]) && !isPod(segments[at])) {
    // Below a cgroup root or an outer container: the first kubepods root
    // (or, with the colon form, the first container) is kubelet's.
    while (at < segments.length) {
      const segment = segments[at];
      if (KUBEPODS_ROOT.test(segment) || COLON_FORM.test(segment)) break;
      at++;
    }
    if (KUBEPODS_ROOT.test(segments[at])) at++;
  }
  if (QOS_LEVEL.test(segments[at])) at++;
  const colon = COLON_FORM.exec(segments[at]);
  if (colon) return { podUid: normalizeUid(colon[1]), containerId: colon[2] };
  const pod = podUidOf(segments[at]);
  if (pod === undefined) return undefined;
  return { podUid: pod, containerId: containerIdOf(segments[at + 1]) };
}

function isPod(segment: string | undefined): boolean {
  return podUidOf(segment) !== undefined;
}

/** The pod UID of a pod segment (cgroupfs or systemd), else undefined. */
function podUidOf(segment: string | undefined): string | undefined {
  if (segment === undefined) return undefined;
  const match = CGROUPFS_POD.exec(segment) ?? SYSTEMD_POD.exec(segment);
  return match ? normalizeUid(match[1]) : undefined;
}

function containerIdOf(segment: string | undefined): string {
  if (segment === undefined) return "";
  const match = CONTAINER.exec(segment);
  if (!match) return "";
  // CRI-O's monitor (conmon) has a cgroup named after the container it watches.
  if (match[1] !== undefined && match[1].endsWith("conmon")) return "";
  return match[2];
}

function normalizeUid(uid: string): string {
  return uid.replaceAll("_", "-");
}

/**
 * Parses `/proc/<pid>/cgroup`. Paths may contain `:` (only the first two
 * separate fields).
 *
 * @example
 * ```ts
 * import { parseProcCgroup } from "./cgroup_path.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseProcCgroup("4:memory:/a\n0::/b\n"), [
 *   { hierarchy: 4, controllers: ["memory"], path: "/a" },
 *   { hierarchy: 0, controllers: [], path: "/b" },
 * ]);
 * ```
 */
export function parseProcCgroup(text: string): ProcCgroupLine[] {
  const lines: ProcCgroupLine[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const first = line.indexOf(":");
    const second = first < 0 ? -1 : line.indexOf(":", first + 1);
    if (second < 0) continue;
    const hierarchy = Number(line.slice(0, first));
    if (!Number.isInteger(hierarchy)) continue;
    const controllers = line.slice(first + 1, second);
    lines.push({
      hierarchy,
      controllers: controllers ? controllers.split(",") : [],
      path: line.slice(second + 1),
    });
  }
  return lines;
}

/**
 * The pod and container of a process from its `/proc/<pid>/cgroup`:
 * the cgroup v2 line (`0::`) if it is in a pod, else any v1 line that is
 * (on a v1 or hybrid host the v2 line may be `/`). A line with a container
 * id wins over one with only the pod. Undefined: not in a pod.
 *
 * @example
 * ```ts
 * import { podContainerOfProcCgroup } from "./cgroup_path.ts";
 * import assert from "node:assert/strict";
 * const id = "cd".repeat(32);
 * const ids = podContainerOfProcCgroup(
 *   `5:pids:/kubepods/besteffort/pod74ba62da-1a3d-11e7-bb11-080027cb0e22/${id}\n0::/\n`,
 * );
 * assert.deepEqual(ids, { podUid: "74ba62da-1a3d-11e7-bb11-080027cb0e22", containerId: id });
 * ```
 */
export function podContainerOfProcCgroup(text: string): PodContainerIds | undefined {
  const lines = parseProcCgroup(text);
  // v2 first: it is the hierarchy the kernel's cgroup id refers to.
  lines.sort((a, b) => (a.hierarchy === 0 ? 0 : 1) - (b.hierarchy === 0 ? 0 : 1));
  let podOnly: PodContainerIds | undefined;
  for (const line of lines) {
    const ids = parseCgroupPath(line.path);
    if (!ids) continue;
    if (ids.containerId) return ids;
    podOnly ??= ids;
  }
  return podOnly;
}
