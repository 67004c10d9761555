/**
 * Compiles bpf/tcptracer.bpf.c into the committed bpf/tcptracer.bpf.o.
 *
 *   deno task build:bpf          rebuild the object
 *   deno task build:bpf --check  fail if the committed object is stale
 *
 * The build is reproducible: source paths mapped to bpf/-relative ones,
 * DWARF stripped (BTF and its line info kept, which CO-RE and the verifier
 * log need), so the same clang gives the same bytes in any checkout. The committed object was built with
 * Debian 12's clang 14 (`apt-get install clang llvm libbpf-dev`).
 *
 * @module
 */

const BPF_DIR = new URL(".", import.meta.url).pathname;
const SOURCE = "tcptracer.bpf.c";
const OBJECT = "tcptracer.bpf.o";

/** The clang command line, relative to bpf/. */
export function clangArgs(output: string): string[] {
  return [
    "-target",
    "bpf",
    "-g",
    "-O2",
    "-Wall",
    "-Werror",
    // The object records source paths: make them relative to bpf/, so
    // any checkout builds the same bytes.
    `-fdebug-prefix-map=${BPF_DIR.replace(/\/$/, "")}=.`,
    "-c",
    SOURCE,
    "-o",
    output,
  ];
}

async function run(command: string, args: string[]): Promise<string> {
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(command, {
      args,
      cwd: BPF_DIR,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error(`${command} not found: apt-get install clang llvm libbpf-dev`);
    }
    throw error;
  }
  if (!result.success) {
    throw new Error(
      `${command} ${args.join(" ")} failed:\n${new TextDecoder().decode(result.stderr)}`,
    );
  }
  return new TextDecoder().decode(result.stdout);
}

async function findTool(names: string[]): Promise<string> {
  for (const name of names) {
    try {
      await run(name, ["--version"]);
      return name;
    } catch {
      // try the next
    }
  }
  throw new Error(`none of ${names.join(", ")} found: apt-get install clang llvm`);
}

/** Builds the object into `output` (a path relative to bpf/ or absolute). */
export async function buildObject(output: string): Promise<void> {
  const clang = await findTool(["clang", "clang-14"]);
  const strip = await findTool(["llvm-strip", "llvm-strip-14"]);
  await run(clang, clangArgs(output));
  await run(strip, ["-g", output]);
}

/** The clang version line, for messages. */
export async function clangVersion(): Promise<string> {
  const clang = await findTool(["clang", "clang-14"]);
  return (await run(clang, ["--version"])).split("\n")[0];
}

/** Rebuilds into a temporary file; true if it equals the committed object. */
export async function objectIsFresh(): Promise<boolean> {
  const temp = await Deno.makeTempFile({ suffix: ".bpf.o" });
  try {
    await buildObject(temp);
    const built = await Deno.readFile(temp);
    const committed = await Deno.readFile(`${BPF_DIR}${OBJECT}`);
    return built.length === committed.length && built.every((byte, i) => byte === committed[i]);
  } finally {
    await Deno.remove(temp);
  }
}

if (import.meta.main) {
  try {
    if (Deno.args.includes("--check")) {
      if (!(await objectIsFresh())) {
        console.error(
          `bpf/${OBJECT} is stale against bpf/${SOURCE} (or was built by another clang than ${await clangVersion()}): run 'deno task build:bpf' and commit the result`,
        );
        Deno.exit(1);
      }
      console.log(`bpf/${OBJECT} is up to date`);
    } else {
      await buildObject(OBJECT);
      console.log(`built bpf/${OBJECT}`);
    }
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
