/**
 * Whether this machine can run the tests that load BPF into the kernel,
 * and why not. Such tests are registered with `ignore` and the reason is
 * printed, so a missing privilege never looks like a pass.
 *
 * @module
 */

import { effectiveCapabilities } from "../../core/system.ts";

function commandWorks(command: string, args: string[]): boolean {
  try {
    return new Deno.Command(command, { args, stdout: "null", stderr: "null" }).outputSync()
      .success;
  } catch {
    return false;
  }
}

function computeReason(): string | undefined {
  if (Deno.build.os !== "linux") return "not Linux";
  const caps = effectiveCapabilities();
  if ((caps >> 21n & 1n) === 0n && ((caps >> 38n & 1n) === 0n || (caps >> 39n & 1n) === 0n)) {
    return "not root (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)";
  }
  try {
    Deno.statSync("/sys/kernel/btf/vmlinux");
  } catch {
    return "kernel has no BTF (/sys/kernel/btf/vmlinux)";
  }
  if (!commandWorks("python3", ["--version"])) return "python3 not installed (test actors)";
  return undefined;
}

/** Why BPF tests cannot run here, or undefined if they can. */
export const BPF_SKIP_REASON: string | undefined = computeReason();

const announced = new Set<string>();

/**
 * `ignore` for Deno.test of a test that needs root and BPF; prints the
 * reason once per test file when it is skipped.
 */
export function needsBpf(file: string): boolean {
  if (BPF_SKIP_REASON === undefined) return false;
  if (!announced.has(file)) {
    announced.add(file);
    console.warn(`SKIPPED (${file}): ${BPF_SKIP_REASON}`);
  }
  return true;
}

/** Whether a command is available, for tests that need a tool. */
export function hasCommand(command: string, versionArg = "--version"): boolean {
  return commandWorks(command, [versionArg]);
}
