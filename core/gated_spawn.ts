/**
 * Starting a command that a tracer must follow from its very first
 * instruction (`egress run -- COMMAND`): the child is held at a gate until
 * the caller has admitted its pid (into the kernel's process tree), so not
 * one connection of it, or of anything it starts, escapes.
 *
 * The gate is `/bin/sh -c 'read -r t </proc/OURS/fd/N && [ "$t" = TOKEN ]
 * || exit 125; exec "$@"'`: the shell waits on a pipe that only this
 * process holds, then execs COMMAND in place (same pid, COMMAND's own
 * stdin, stdout, stderr and exit status). The pipe is reopened through
 * /proc, so the child inherits no descriptor; if this process dies first,
 * the reopen or the read fails and the child exits without running COMMAND
 * (fail closed). The token tells our pipe from another process's
 * descriptor, should our pid be reused.
 *
 * @module
 */

import { TcpgadgetError } from "./errors.ts";
import { errno, O_CLOEXEC, openLibc, strerror } from "./libc.ts";

/** What {@link gatedSpawn} does with each standard stream (default `inherit`). */
export type Stdio = "inherit" | "piped" | "null";

/** Options of {@link gatedSpawn}. */
export interface GatedSpawnOptions {
  /**
   * Called with the child's pid while it waits at the gate; the child runs
   * COMMAND once this returns. If it throws, the child is killed, never
   * having run COMMAND, and the error is rethrown.
   */
  admit(pid: number): void | Promise<void>;
  stdin?: Stdio;
  stdout?: Stdio;
  stderr?: Stdio;
  /** Environment of COMMAND (default: this process's). */
  env?: Record<string, string>;
  /** Working directory of COMMAND (default: this process's). */
  cwd?: string;
}

/** The exit status of the gate when it was never opened (not COMMAND's). */
export const GATE_CLOSED_STATUS = 125;

/**
 * Starts `command` (argv: the program, found in PATH as a shell would, then
 * its arguments) behind the gate. Resolves once COMMAND runs; its pid is
 * the child's. Throws a one-line {@link TcpgadgetError} (exit status 127 or
 * 126, as a shell's) when the program is not found or not executable.
 *
 * @example
 * ```ts
 * import { gatedSpawn } from "./gated_spawn.ts";
 * import assert from "node:assert/strict";
 * const admitted: number[] = [];
 * const child = await gatedSpawn(["sh", "-c", "echo $$"], {
 *   admit: (pid) => void admitted.push(pid),
 *   stdout: "piped",
 * });
 * const { code, stdout } = await child.output();
 * assert.equal(code, 0);
 * assert.deepEqual(admitted, [child.pid]);
 * // exec in place: COMMAND is the admitted process itself
 * assert.equal(new TextDecoder().decode(stdout).trim(), String(child.pid));
 * ```
 */
export async function gatedSpawn(
  command: string[],
  options: GatedSpawnOptions,
): Promise<Deno.ChildProcess> {
  if (command.length === 0) throw new TcpgadgetError("no command to run", { exitCode: 2 });
  findProgram(command[0], options.env?.PATH ?? Deno.env.get("PATH") ?? DEFAULT_PATH);
  const libc = openLibc();
  const fds = new Int32Array(2);
  if (libc.pipe2(new Uint8Array(fds.buffer), O_CLOEXEC) !== 0) {
    throw new TcpgadgetError(`cannot make the gate's pipe: ${strerror(errno())}`);
  }
  const [readEnd, writeEnd] = fds;
  const token = crypto.randomUUID().replaceAll("-", "");
  const gate = `read -r t </proc/${Deno.pid}/fd/${readEnd} && [ "$t" = ${token} ] || ` +
    `exit ${GATE_CLOSED_STATUS}; exec "$@"`;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("/bin/sh", {
      args: ["-c", gate, "tcpgadget-gate", ...command],
      stdin: options.stdin ?? "inherit",
      stdout: options.stdout ?? "inherit",
      stderr: options.stderr ?? "inherit",
      env: options.env,
      clearEnv: options.env !== undefined,
      cwd: options.cwd,
    }).spawn();
  } catch (error) {
    libc.close(readEnd);
    libc.close(writeEnd);
    throw new TcpgadgetError(`cannot start /bin/sh for ${command[0]}: ${errorText(error)}`);
  }
  try {
    await options.admit(child.pid);
  } catch (error) {
    libc.close(writeEnd); // the gate reads end-of-file: it never opens
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
    libc.close(readEnd);
    throw error;
  }
  const line = new TextEncoder().encode(`${token}\n`);
  const written = Number(libc.write(writeEnd, line, BigInt(line.length)));
  libc.close(writeEnd);
  if (written !== line.length) {
    // A pipe takes 64 KiB before it blocks: this is not expected.
    child.kill("SIGKILL");
    await child.status;
    libc.close(readEnd);
    throw new TcpgadgetError(`cannot open the gate of ${command[0]}: ${strerror(errno())}`);
  }
  // Ours stays open until the child has read the token: it may not have
  // reopened the pipe yet.
  child.status.finally(() => libc.close(readEnd));
  return child;
}

const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin";

/**
 * The file `program` names, as a shell finds it: a path if it has a slash,
 * else the first executable regular file of that name in `path`.
 *
 * @example
 * ```ts
 * import { findProgram } from "./gated_spawn.ts";
 * import assert from "node:assert/strict";
 * assert.equal(findProgram("sh", "/nonexistent:/bin"), "/bin/sh");
 * assert.throws(() => findProgram("no-such-program", "/bin"), /command not found/);
 * ```
 */
export function findProgram(program: string, path: string): string {
  const candidates = program.includes("/")
    ? [program]
    : path.split(":").map((dir) => `${dir || "."}/${program}`);
  let found: string | undefined;
  for (const candidate of candidates) {
    let info: Deno.FileInfo;
    try {
      info = Deno.statSync(candidate);
    } catch {
      continue;
    }
    if (!info.isFile) continue;
    if (((info.mode ?? 0) & 0o111) !== 0) return candidate;
    found ??= candidate;
  }
  if (found !== undefined) {
    throw new TcpgadgetError(`${JSON.stringify(program)}: permission denied`, { exitCode: 126 });
  }
  throw new TcpgadgetError(`${JSON.stringify(program)}: command not found`, { exitCode: 127 });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
