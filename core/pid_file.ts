/**
 * A pid file naming the one process that does a job, taken over by the
 * next: an agent started in a pod after its event stream dropped stops the
 * agent of the dropped stream, which the exec API does not promise to end.
 *
 * @module
 */

import { TcpgadgetError } from "./errors.ts";

/**
 * Signals (SIGTERM) the process `path` names, if it is another process
 * whose command line names `path` too (so that a PID reused by some other
 * process is never signalled: in a pod with the host's PID namespace, that
 * may be any process of the node), then writes this process's PID there.
 * Returns the PID signalled, if any.
 *
 * @example
 * ```ts
 * import { takeOverPidFile } from "./pid_file.ts";
 * import assert from "node:assert/strict";
 * const path = `${await Deno.makeTempDir()}/agent.pid`;
 * // `sleep` was not started with this path in its command line: left alone.
 * const other = new Deno.Command("sleep", { args: ["30"] }).spawn();
 * Deno.writeTextFileSync(path, `${other.pid}\n`);
 * assert.equal(takeOverPidFile(path), undefined);
 * assert.equal(Deno.readTextFileSync(path), `${Deno.pid}\n`);
 * // One that names the file is stopped.
 * const agent = new Deno.Command("sh", { args: ["-c", "sleep 30", "sh", path] }).spawn();
 * Deno.writeTextFileSync(path, `${agent.pid}\n`);
 * assert.equal(takeOverPidFile(path), agent.pid);
 * assert.equal((await agent.status).signal, "SIGTERM");
 * other.kill();
 * await other.status;
 * Deno.removeSync(path.slice(0, path.lastIndexOf("/")), { recursive: true });
 * ```
 */
export function takeOverPidFile(path: string): number | undefined {
  let signalled: number | undefined;
  const previous = readPid(path);
  if (previous !== undefined && previous !== Deno.pid && commandLineNames(previous, path)) {
    try {
      Deno.kill(previous, "SIGTERM");
      signalled = previous;
    } catch {
      // Gone in between.
    }
  }
  try {
    Deno.writeTextFileSync(path, `${Deno.pid}\n`);
  } catch (error) {
    throw new TcpgadgetError(`cannot write the pid file ${path}: ${(error as Error).message}`);
  }
  return signalled;
}

function readPid(path: string): number | undefined {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
  const pid = Number(text.trim());
  return Number.isSafeInteger(pid) && pid > 1 ? pid : undefined;
}

function commandLineNames(pid: number, path: string): boolean {
  try {
    // NUL-separated arguments: "--agent-pid-file=PATH" is one of them.
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).includes(path);
  } catch {
    return false;
  }
}
