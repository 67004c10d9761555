/**
 * Small helpers shared by the cluster scripts: commands, progress lines,
 * waiting, files.
 *
 * @module
 */

/** An expected failure: printed as one line, without a stack trace. */
export class ClusterError extends Error {}

/** Progress goes to stderr: stdout's last line is the kubeconfig path. */
export function say(message: string): void {
  console.error(`cluster: ${message}`);
}

export interface RunOptions {
  env?: Record<string, string>;
  cwd?: string;
  stdin?: string;
  /** Return the result instead of throwing when the command fails. */
  allowFail?: boolean;
  /** Let the command's output through to stderr (long builds), instead of capturing it. */
  passthrough?: boolean;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command; a failure throws a ClusterError naming the command and its last output. */
export async function run(
  cmd: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      env: options.env,
      cwd: options.cwd,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: options.passthrough ? "inherit" : "piped",
      stderr: options.passthrough ? "inherit" : "piped",
    }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new ClusterError(`${cmd} is not installed (run .ci/run, or install it)`);
    }
    throw error;
  }
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(options.stdin));
    await writer.close();
  }
  const output = await child.output();
  const decoder = new TextDecoder();
  const result = {
    code: output.code,
    stdout: options.passthrough ? "" : decoder.decode(output.stdout),
    stderr: options.passthrough ? "" : decoder.decode(output.stderr),
  };
  if (result.code !== 0 && !options.allowFail) {
    const tail = (result.stderr || result.stdout).trim().split("\n").slice(-3).join(" | ");
    throw new ClusterError(
      `${cmd} ${args.join(" ")} failed (exit ${result.code})${tail ? `: ${tail}` : ""}`,
    );
  }
  return result;
}

/** Whether an executable of that name is on PATH (or that path exists). */
export function hasCommand(name: string): boolean {
  if (name.includes("/")) return exists(name);
  const path = Deno.env.get("PATH") ?? "";
  return path.split(":").some((dir) => dir && exists(`${dir}/${name}`));
}

export function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

export function readText(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** Writes a file atomically (a temporary name, then rename). */
export function writeFileAtomic(path: string, data: string, mode = 0o644): void {
  const tmp = `${path}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(tmp, data, { mode });
  Deno.renameSync(tmp, path);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` until it returns a value other than undefined, or throws a
 * ClusterError saying what did not happen after `seconds`.
 */
export async function waitFor<T>(
  what: string,
  seconds: number,
  check: () => Promise<T | undefined> | T | undefined,
  hint: string | (() => string) = "",
): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  let lastError = "";
  while (true) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      if (error instanceof ClusterError) throw error;
      lastError = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) {
      const why = typeof hint === "function" ? hint() : hint;
      throw new ClusterError(
        `${what}: not done after ${seconds} s${lastError ? ` (last error: ${lastError})` : ""}${
          why ? `; ${why}` : ""
        }`,
      );
    }
    await sleep(250);
  }
}

/** Seconds since `start` (a Date.now() value), one decimal. */
export function elapsed(start: number): string {
  return ((Date.now() - start) / 1000).toFixed(1);
}
