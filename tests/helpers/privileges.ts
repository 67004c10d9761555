/**
 * Whether this machine can run the tests that load BPF into the kernel,
 * and why not. Such tests are registered with `ignore` and the reason is
 * printed, so a missing privilege never looks like a pass.
 *
 * @module
 */

import { errorLine } from "../../core/errors.ts";
import { requireBpfPrivileges } from "../../core/system.ts";

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
  try {
    requireBpfPrivileges();
  } catch (error) {
    return `not root: ${errorLine(error)}`;
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

/** Where Deno keeps its caches for this process. */
function denoDir(): string {
  const cache = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME")}/.cache`;
  return Deno.env.get("DENO_DIR") ?? `${cache}/deno`;
}

/** Why tests cannot run tcpgadget as another user here, or undefined. */
export function otherUserSkipReason(): string | undefined {
  if (BPF_SKIP_REASON) return BPF_SKIP_REASON;
  if (Deno.uid() !== 0) return "not root (setpriv needs root to change user)";
  if (!hasCommand("setpriv")) return "setpriv (util-linux) not installed";
  if (!hasCommand("unshare")) return "unshare (util-linux) not installed";
  return undefined;
}

/**
 * Wrapper words (for CliRun) that run the command as user and group `uid`
 * with exactly the capabilities `caps` (setpriv's names, e.g. ["bpf",
 * "perfmon"]), after a root shell snippet `setup`, all in a private mount
 * namespace. Deno's cache is bind-mounted where that user can read it (it
 * usually lives in root's home, mode 0700); the mounts vanish with the
 * namespace.
 */
export function asUser(uid: number, caps: string[], setup = "true"): string[] {
  const list = caps.map((cap) => `+${cap}`).join(",") || "-all";
  const cache = "/mnt/tgtest-deno-dir";
  return [
    "unshare",
    "--mount",
    "--propagation",
    "private",
    "sh",
    "-c",
    `mount -t tmpfs -o mode=0755 tgtest /mnt && mkdir ${cache} && ` +
    `mount --bind "$0" ${cache} && ${setup} && exec "$@"`,
    denoDir(),
    "env",
    `DENO_DIR=${cache}`,
    "HOME=/mnt",
    "setpriv",
    `--reuid=${uid}`,
    `--regid=${uid}`,
    "--clear-groups",
    `--inh-caps=${list}`,
    `--ambient-caps=${list}`,
    "--",
  ];
}
