/**
 * The benchmark's C helpers (the load generator churn.c, the output
 * reader tap.c) are compiled with the system's C compiler into a
 * temporary directory at start.
 *
 * @module
 */

const COMPILERS = ["cc", "gcc", "clang"];

/**
 * Compiles `source` (a C file beside this module) into `output` with
 * `-O2 -Wall -Wextra` and `flags`, and returns `output`. Tries `cc`, then
 * `gcc` and `clang`.
 */
export async function compileC(
  source: string,
  output: string,
  flags: readonly string[] = [],
): Promise<string> {
  const path = new URL(`./${source}`, import.meta.url).pathname;
  const failures: string[] = [];
  for (const compiler of COMPILERS) {
    let result: Deno.CommandOutput;
    try {
      result = await new Deno.Command(compiler, {
        args: ["-O2", "-Wall", "-Wextra", ...flags, "-o", output, path],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw error;
    }
    const messages = new TextDecoder().decode(result.stderr).trim();
    if (result.success) {
      if (messages) console.error(`bench: ${compiler} warnings on ${source}:\n${messages}`);
      return output;
    }
    failures.push(`${compiler}: ${messages}`);
  }
  throw new Error(
    failures.length > 0
      ? `cannot compile ${path}:\n${failures.join("\n")}`
      : "no C compiler (cc, gcc or clang) found: install build-essential",
  );
}

/** Whether one of the C compilers is installed (for tests that need one). */
export function hasCompiler(): boolean {
  return COMPILERS.some((compiler) => {
    try {
      return new Deno.Command(compiler, { args: ["--version"], stdout: "null", stderr: "null" })
        .outputSync().success;
    } catch {
      return false;
    }
  });
}
