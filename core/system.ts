/**
 * Checks of the host before anything is loaded, so that a missing
 * privilege or kernel feature is reported as one clear line instead of a
 * libbpf failure: privileges, kernel BTF, tracefs.
 *
 * @module
 */

import { PermissionError, UnsupportedError } from "./errors.ts";
import { cString, errno, openLibc, strerror } from "./libc.ts";

const CAP_SYS_ADMIN = 21;
const CAP_PERFMON = 38;
const CAP_BPF = 39;

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

function has(caps: bigint, cap: number): boolean {
  return (caps >> BigInt(cap) & 1n) === 1n;
}

/** Throws {@link PermissionError} unless BPF tracing programs may be loaded. */
export function requireBpfPrivileges(caps = effectiveCapabilities()): void {
  if (has(caps, CAP_SYS_ADMIN) || (has(caps, CAP_BPF) && has(caps, CAP_PERFMON))) return;
  throw new PermissionError(
    "tcpgadget needs root to load BPF programs (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN): run it with sudo",
  );
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
 * by hand would be.
 */
export function ensureTracefs(candidates = DEFAULT_HOST_PATHS.tracefs): string {
  for (const path of candidates) {
    if (pathExists(`${path}/events`)) return path;
  }
  const target = candidates[0];
  const libc = openLibc();
  const result = libc.mount(cString("tracefs"), cString(target), cString("tracefs"), 0n, null);
  if (result !== 0) {
    const err = errno();
    throw new UnsupportedError(
      `tracefs is not mounted at ${target} and mounting it failed (${
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
