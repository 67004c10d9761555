/**
 * Checks of the host before anything is loaded, so that a missing
 * privilege or kernel feature is reported as one clear line instead of a
 * libbpf failure: privileges, kernel BTF, tracefs.
 *
 * What each part of tracing needs without root (measured on Linux 6.18):
 * loading and attaching the programs and running the task_file iterator,
 * CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN); the syscall tracepoints'
 * ids, read from tracefs, which is root's with mode 0700, CAP_DAC_READ_SEARCH
 * (and CAP_SYS_ADMIN to mount it where it is not mounted); naming the
 * containers of other users' processes from /proc/<pid>/ns/mnt, which
 * needs ptrace read access, CAP_SYS_PTRACE.
 *
 * @module
 */

import { PermissionError, UnsupportedError } from "./errors.ts";
import { cString, errno, openLibc, strerror } from "./libc.ts";

const CAP_SYS_PTRACE = 19;
const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

const EPERM = 1;

/** Paths the checks read; tests point them elsewhere. */
export interface HostPaths {
  procStatus: string;
  btf: string;
  tracefs: string[];
}

export const DEFAULT_HOST_PATHS: HostPaths = {
  procStatus: "/proc/self/status",
  btf: "/sys/kernel/btf/vmlinux",
  tracefs: ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"],
};

/** The effective capability set of this process, from /proc/self/status. */
export function effectiveCapabilities(statusPath = DEFAULT_HOST_PATHS.procStatus): bigint {
  const status = Deno.readTextFileSync(statusPath);
  const match = status.match(/^CapEff:\s*([0-9a-f]+)$/m);
  return match ? BigInt(`0x${match[1]}`) : 0n;
}

/**
 * Whether a capability set holds `cap` (its number, as in linux/capability.h).
 *
 * @example
 * ```ts
 * import { hasCapability } from "./system.ts";
 * import assert from "node:assert/strict";
 * assert.equal(hasCapability(1n << 39n, 39), true);
 * assert.equal(hasCapability(1n << 38n, 39), false);
 * ```
 */
export function hasCapability(caps: bigint, cap: number): boolean {
  return (caps >> BigInt(cap) & 1n) === 1n;
}

/** Where tracefs is, as far as this process can tell. */
export type TracefsState =
  | { kind: "readable"; path: string }
  /** Mounted, but this process may not read it (root's, mode 0700). */
  | { kind: "unreadable"; path: string; mode: number; uid: number }
  | { kind: "absent" };

/** The first candidate where tracefs can be read, else one where it cannot, else absent. */
export function tracefsState(candidates = DEFAULT_HOST_PATHS.tracefs): TracefsState {
  let unreadable: TracefsState | undefined;
  for (const path of candidates) {
    try {
      Deno.statSync(`${path}/events`);
      return { kind: "readable", path };
    } catch (error) {
      if (!(error instanceof Deno.errors.PermissionDenied) || unreadable) continue;
      const { mode, uid } = Deno.statSync(path);
      unreadable = { kind: "unreadable", path, mode: (mode ?? 0) & 0o7777, uid: uid ?? 0 };
    }
  }
  return unreadable ?? { kind: "absent" };
}

/** What a process without tracefs access lacks, in the words of the messages. */
function tracefsNeed(state: Extract<TracefsState, { kind: "unreadable" }>): string {
  return `CAP_DAC_READ_SEARCH to read tracepoint ids from tracefs (${state.path} is mode ${
    state.mode.toString(8).padStart(4, "0")
  }, owned by uid ${state.uid})`;
}

/**
 * Throws {@link PermissionError} unless BPF tracing programs may be loaded
 * and attached: the capabilities to load them, and access to tracefs. The
 * message names everything that is missing, at once.
 *
 * @example
 * ```ts
 * import { requireBpfPrivileges } from "./system.ts";
 * import assert from "node:assert/strict";
 * const bpf = (1n << 39n) | (1n << 38n);
 * assert.doesNotThrow(() => requireBpfPrivileges(bpf, { kind: "readable", path: "/t" }));
 * assert.throws(
 *   () => requireBpfPrivileges(1n << 39n, { kind: "readable", path: "/t" }),
 *   { message: "missing privileges: CAP_PERFMON (or CAP_SYS_ADMIN) to load BPF programs; run tcpgadget as root (sudo)" },
 * );
 * assert.throws(
 *   () => requireBpfPrivileges(bpf, { kind: "unreadable", path: "/t", mode: 0o700, uid: 0 }),
 *   { message: "missing privileges: CAP_DAC_READ_SEARCH to read tracepoint ids from tracefs (/t is mode 0700, owned by uid 0); run tcpgadget as root (sudo)" },
 * );
 * ```
 */
export function requireBpfPrivileges(
  caps = effectiveCapabilities(),
  tracefs: TracefsState = tracefsState(),
): void {
  const missing: string[] = [];
  if (!hasCapability(caps, CAP_SYS_ADMIN)) {
    const lacking = [[CAP_BPF, "CAP_BPF"], [CAP_PERFMON, "CAP_PERFMON"]] as const;
    const names = lacking.filter(([cap]) => !hasCapability(caps, cap)).map(([, name]) => name);
    if (names.length > 0) {
      missing.push(`${names.join(" and ")} (or CAP_SYS_ADMIN) to load BPF programs`);
    }
  }
  if (tracefs.kind === "unreadable") missing.push(tracefsNeed(tracefs));
  if (tracefs.kind === "absent" && !hasCapability(caps, CAP_SYS_ADMIN)) {
    missing.push(
      `CAP_SYS_ADMIN to mount tracefs, which is not mounted (or mount it: 'mount -t tracefs tracefs ${
        DEFAULT_HOST_PATHS.tracefs[0]
      }')`,
    );
  }
  if (missing.length > 0) {
    throw new PermissionError(
      `missing privileges: ${missing.join("; ")}; run tcpgadget as root (sudo)`,
    );
  }
}

/**
 * What cannot be told of containers without CAP_SYS_PTRACE, or undefined
 * with it: the mount namespace of a process of another user is read from
 * /proc/<pid>/ns/mnt, which the kernel shows only to who may ptrace it.
 *
 * @example
 * ```ts
 * import { containerNamingWarning } from "./system.ts";
 * import assert from "node:assert/strict";
 * assert.equal(containerNamingWarning(1n << 19n), undefined);
 * assert.match(containerNamingWarning(0n)!, /^without CAP_SYS_PTRACE/);
 * ```
 */
export function containerNamingWarning(caps = effectiveCapabilities()): string | undefined {
  if (hasCapability(caps, CAP_SYS_PTRACE)) return undefined;
  return "without CAP_SYS_PTRACE, other users' processes are placed in containers only by their cgroup v2 id, and -n, -p and -c cannot select them";
}

/** Throws {@link UnsupportedError} if the kernel exposes no BTF. */
export function requireKernelBtf(path = DEFAULT_HOST_PATHS.btf): void {
  try {
    Deno.statSync(path);
  } catch {
    throw new UnsupportedError(
      `kernel BTF not found at ${path}: tcpgadget needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since Linux 5.8)`,
    );
  }
}

/**
 * Makes sure tracefs is available (libbpf reads tracepoint ids from it):
 * mounts it at the first candidate path if no candidate has it. Returns the
 * path in use. The mount, if made, is left in place, as `mount -t tracefs`
 * by hand would be. A tracefs this process may not read is a
 * {@link PermissionError}, not a reason to mount another.
 */
export function ensureTracefs(candidates = DEFAULT_HOST_PATHS.tracefs): string {
  const state = tracefsState(candidates);
  if (state.kind === "readable") return state.path;
  if (state.kind === "unreadable") {
    throw new PermissionError(
      `missing privileges: ${tracefsNeed(state)}; run tcpgadget as root (sudo)`,
    );
  }
  const target = candidates[0];
  const libc = openLibc();
  const result = libc.mount(cString("tracefs"), cString(target), cString("tracefs"), 0n, null);
  if (result !== 0) {
    const err = errno();
    const needs = err === EPERM ? " (it needs CAP_SYS_ADMIN)" : "";
    throw new (err === EPERM ? PermissionError : UnsupportedError)(
      `tracefs is not mounted at ${target} and mounting it failed${needs} (${
        strerror(err)
      }): mount it with 'mount -t tracefs tracefs ${target}'`,
    );
  }
  return target;
}

/** Whether a path exists (any kind of file). */
export function pathExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}
