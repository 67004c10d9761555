/**
 * Compiles the kernel programs into their committed objects:
 * bpf/tcptracer.bpf.c into bpf/tcptracer.bpf.o (the TCP tracer) and
 * bpf/dnssnoop.bpf.c into bpf/dnssnoop.bpf.o (DNS answers, for egress).
 *
 *   deno task build:bpf          rebuild the objects
 *   deno task build:bpf --check  fail if a committed object is stale
 *
 * The build is reproducible: source paths mapped to bpf/-relative ones,
 * DWARF stripped (BTF and its line info kept, which CO-RE and the verifier
 * log need), so the same clang gives the same bytes in any checkout. The committed objects were built with
 * Debian 12's clang 14 (`apt-get install clang llvm libbpf-dev`).
 *
 * @module
 */

const BPF_DIR = new URL(".", import.meta.url).pathname;

/** The objects built here: each from one C source of bpf/. */
export const OBJECTS = [
  { source: "tcptracer.bpf.c", object: "tcptracer.bpf.o" },
  { source: "dnssnoop.bpf.c", object: "dnssnoop.bpf.o" },
] as const;

/** One of {@link OBJECTS}. */
export type BpfBuild = (typeof OBJECTS)[number];

/** The clang command line, relative to bpf/. */
export function clangArgs(source: string, output: string): string[] {
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
    source,
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

/** Builds `build`'s object into `output` (a path relative to bpf/ or absolute). */
export async function buildObject(build: BpfBuild, output: string): Promise<void> {
  const clang = await findTool(["clang", "clang-14"]);
  const strip = await findTool(["llvm-strip", "llvm-strip-14"]);
  await run(clang, clangArgs(build.source, output));
  await run(strip, ["-g", output]);
}

/** The clang version line, for messages. */
export async function clangVersion(): Promise<string> {
  const clang = await findTool(["clang", "clang-14"]);
  return (await run(clang, ["--version"])).split("\n")[0];
}

/** Rebuilds into a temporary file; true if it equals the committed object. */
export async function objectIsFresh(build: BpfBuild): Promise<boolean> {
  const temp = await Deno.makeTempFile({ suffix: ".bpf.o" });
  try {
    await buildObject(build, temp);
    const built = await Deno.readFile(temp);
    const committed = await Deno.readFile(`${BPF_DIR}${build.object}`);
    return built.length === committed.length && built.every((byte, i) => byte === committed[i]);
  } finally {
    await Deno.remove(temp);
  }
}

if (import.meta.main) {
  try {
    for (const build of OBJECTS) {
      if (Deno.args.includes("--check")) {
        if (!(await objectIsFresh(build))) {
          console.error(
            `bpf/${build.object} is stale against bpf/${build.source} (or was built by another clang than ${await clangVersion()}): run 'deno task build:bpf' and commit the result`,
          );
          Deno.exit(1);
        }
        console.log(`bpf/${build.object} is up to date`);
      } else {
        await buildObject(build, build.object);
        console.log(`built bpf/${build.object}`);
      }
    }
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
