/**
 * Python packages from PyPI for tests that check tcpgadget's files with a
 * real consumer (a JUnit reader, a Markdown renderer): installed with pip
 * into a directory of their own, once per machine, and put on PYTHONPATH.
 * When they cannot be installed (no pip, no registry), the test is skipped
 * with the reason printed.
 *
 * @module
 */

/** Where the packages are, or why they cannot be had. */
export type PythonPackages = { path: string; skip?: undefined } | {
  path?: undefined;
  skip: string;
};

/**
 * Installs `specs` (pinned: `name==version`) into a directory named after
 * them under the temporary directory, unless a complete install is there.
 */
export async function pythonPackages(specs: string[]): Promise<PythonPackages> {
  const name = `tcpgadget-test-pip-${specs.join("-").replace(/[^A-Za-z0-9.-]+/g, "_")}`;
  const path = `${Deno.env.get("TMPDIR") ?? "/tmp"}/${name}`;
  try {
    Deno.statSync(`${path}/.complete`);
    return { path };
  } catch {
    // Not installed yet.
  }
  // Installed beside, then renamed: a concurrent run never sees half of it.
  const staging = `${path}.${Deno.pid}`;
  try {
    const result = await new Deno.Command("python3", {
      args: [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        staging,
        ...specs,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!result.success) {
      const reason = new TextDecoder().decode(result.stderr).trim().split("\n").pop();
      return { skip: `pip could not install ${specs.join(" ")}: ${reason}` };
    }
    Deno.writeTextFileSync(`${staging}/.complete`, "");
    try {
      Deno.renameSync(staging, path);
    } catch {
      // Another run installed it first.
    }
    return { path };
  } catch (error) {
    return { skip: `cannot run python3 -m pip: ${(error as Error).message}` };
  } finally {
    try {
      Deno.removeSync(staging, { recursive: true });
    } catch {
      // Renamed, or never made.
    }
  }
}

/** Runs a Python script with the packages on PYTHONPATH; its stdout. */
export async function runPython(packages: string, script: string, input: string): Promise<string> {
  const child = new Deno.Command("python3", {
    args: ["-c", script],
    env: { PYTHONPATH: packages },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const result = await child.output();
  if (!result.success) {
    throw new Error(`python3 failed: ${new TextDecoder().decode(result.stderr)}`);
  }
  return new TextDecoder().decode(result.stdout);
}
