/**
 * Builds bpf/libbpf/libbpf-x86_64.so: Debian's static libbpf, libelf and zlib
 * linked into one shared object that needs nothing but glibc and exports
 * exactly the system libbpf.so.1's versioned API. tcpgadget embeds it
 * (core/libbpf_embedded.ts), so nodes need no libbpf, libelf or zlib.
 *
 *   deno run -A bpf/libbpf/build.ts               rebuild the library and manifest.json
 *   deno run -A bpf/libbpf/build.ts --check       rebuild into a temporary directory and
 *                                                 compare with the committed library
 *   deno run -A bpf/libbpf/build.ts --update-map  rewrite libbpf.map from the system's
 *                                                 libbpf.so.1 (after a libbpf upgrade)
 *
 * Needs `apt-get install gcc binutils libc6-dev libbpf-dev libelf-dev zlib1g-dev`.
 * BUILD.md explains the route (Debian's archives are PIE, not PIC, code).
 *
 * @module
 */

import { pathExists as exists } from "../../core/system.ts";
import { createHash } from "node:crypto";

/** This directory, with a trailing slash. */
export const LIBBPF_DIR: string = new URL(".", import.meta.url).pathname;
/** The committed library, relative to {@link LIBBPF_DIR}. */
export const LIBRARY = "libbpf-x86_64.so";
/** The build's record: package versions, commands, digest. */
export const MANIFEST = "manifest.json";
const MAP = "libbpf.map";
const SHIMS = "pic_shims.c";

const MULTIARCH = "/usr/lib/x86_64-linux-gnu";
/** The static archives linked in, and the Debian package of each. */
export const ARCHIVES = {
  libbpf: { path: `${MULTIARCH}/libbpf.a`, package: "libbpf-dev" },
  libelf: { path: `${MULTIARCH}/libelf.a`, package: "libelf-dev" },
  zlib: { path: `${MULTIARCH}/libz.a`, package: "zlib1g-dev" },
} as const;
/** The system library whose exports the embedded one must equal. */
export const SYSTEM_LIBBPF = `${MULTIARCH}/libbpf.so.1`;
// Recorded in the manifest: the code linked in and the toolchain that linked it.
const PACKAGES = ["libbpf-dev", "libelf-dev", "zlib1g-dev", "libc6-dev", "gcc-12", "binutils"];
const TOOLS = ["gcc", "ar", "objcopy", "readelf"];

/** NEEDED entries a library may have: glibc's own, present on every node. */
export const GLIBC_SONAMES: readonly string[] = [
  "libc.so.6",
  "ld-linux-x86-64.so.2",
  "libm.so.6",
  "libpthread.so.0",
  "libdl.so.2",
  "librt.so.1",
];

/** What build.ts writes to manifest.json. */
export interface Manifest {
  library: string;
  /** libbpf's release, from the libbpf-dev package version ("1.1.2"). */
  libbpf: string;
  /** What libbpf_version_string() returns ("v1.1"). */
  libbpfVersionString: string;
  sha256: string;
  size: number;
  /** Debian package name to installed version. */
  packages: Record<string, string>;
  /** The command that rebuilds the library, from the repository root. */
  rebuild: string;
  /** What that command runs, in a scratch directory ($WORK). */
  steps: string[];
}

/** Facts about a built library that the check compares. */
export interface LibraryFacts {
  soname: string;
  needed: string[];
  /** Defined dynamic symbols, "TYPE BIND name@@VERSION", sorted. */
  exports: string[];
  textrel: boolean;
  executableStack: boolean;
}

class CommandFailed extends Error {}

async function run(
  command: string,
  args: string[],
  cwd?: string,
  steps?: string[],
): Promise<string> {
  steps?.push([command, ...args].join(" "));
  let result: Deno.CommandOutput;
  try {
    result = await new Deno.Command(command, {
      args,
      cwd,
      env: { LC_ALL: "C", SOURCE_DATE_EPOCH: "0" },
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new CommandFailed(`${command} not found: ${INSTALL_HINT}`);
    }
    throw error;
  }
  if (!result.success) {
    throw new CommandFailed(
      `${command} ${args.join(" ")} failed:\n${new TextDecoder().decode(result.stderr)}`,
    );
  }
  return new TextDecoder().decode(result.stdout);
}

const INSTALL_HINT = "apt-get install -y gcc binutils libc6-dev libbpf-dev libelf-dev zlib1g-dev";

function commandWorks(command: string): boolean {
  try {
    return new Deno.Command(command, { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Why the library cannot be built here, or undefined if it can. */
export function missingPrerequisites(): string | undefined {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    return `the embedded libbpf is built for x86_64 Linux, this is ${Deno.build.target}`;
  }
  const tools = TOOLS.filter((tool) => !commandWorks(tool));
  if (tools.length) return `${tools.join(", ")} not installed (${INSTALL_HINT})`;
  const archives = Object.values(ARCHIVES).filter((a) => !exists(a.path));
  if (archives.length) {
    return `static libraries missing: ${
      archives.map((a) => `${a.path} (${a.package})`).join(", ")
    }`;
  }
  if (!exists("/usr/include/libintl.h")) return "libc6-dev not installed (libintl.h)";
  return undefined;
}

/** Installed version of each Debian package, "" if not installed. */
export async function packageVersions(names = PACKAGES): Promise<Record<string, string>> {
  const versions: Record<string, string> = {};
  for (const name of names) {
    try {
      versions[name] = (await run("dpkg-query", ["-W", "-f", "${Version}", name])).trim();
    } catch {
      versions[name] = "";
    }
  }
  return versions;
}

/** "1:1.1.2-0+deb12u1" to "1.1.2": the upstream part of a Debian version. */
export function upstreamVersion(debian: string): string {
  return debian.replace(/^\d+:/, "").replace(/-[^-]*$/, "");
}

/** Size in bytes of each named symbol in an object file's symbol table. */
async function symbolSizes(object: string, cwd: string): Promise<Map<string, number>> {
  const sizes = new Map<string, number>();
  for (const line of (await run("readelf", ["-sW", object], cwd)).split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 8 && /^\d+:$/.test(fields[0])) sizes.set(fields[7], Number(fields[2]));
  }
  return sizes;
}

/**
 * Links the library into `output` (absolute path) in a scratch directory.
 * Returns the commands it ran, the scratch directory written as $WORK.
 */
export async function buildLibrary(output: string): Promise<string[]> {
  const missing = missingPrerequisites();
  if (missing) throw new CommandFailed(`cannot build the embedded libbpf: ${missing}`);
  const work = await Deno.makeTempDir({ prefix: "tcpgadget-build-libbpf-" });
  const steps: string[] = [];
  try {
    await Deno.copyFile(`${LIBBPF_DIR}${MAP}`, `${work}/${MAP}`);
    await Deno.copyFile(`${LIBBPF_DIR}${SHIMS}`, `${work}/${SHIMS}`);
    await Deno.mkdir(`${work}/libelf`);
    const elfDir = `${work}/libelf`;

    // libelf.a with elf_error.o's code (local-exec TLS) removed and its
    // message tables made linkable by pic_shims.c.
    const members = (await run("ar", ["t", ARCHIVES.libelf.path], elfDir, steps)).trim()
      .split("\n");
    if (!members.includes("elf_error.o")) {
      throw new CommandFailed(`${ARCHIVES.libelf.path} has no elf_error.o: another libelf?`);
    }
    await run("ar", ["x", ARCHIVES.libelf.path], elfDir, steps);
    const sizes = await symbolSizes("elf_error.o", elfDir);
    const msgidx = sizes.get("msgidx");
    const msgstr = sizes.get("msgstr");
    if (msgidx === undefined || msgstr === undefined || msgidx % 8 !== 0) {
      throw new CommandFailed(
        "elf_error.o has no msgidx/msgstr tables of the expected shape (elfutils changed?): " +
          "update pic_shims.c",
      );
    }
    await run(
      "objcopy",
      [
        ...["-R", ".text", "-R", ".rela.text", "-R", ".tbss"],
        ...["-R", ".eh_frame", "-R", ".rela.eh_frame"],
        ...["--redefine-sym", "msgidx=__tcpgadget_elf_msgidx"],
        ...["--redefine-sym", "msgstr=__tcpgadget_elf_msgstr"],
        ...["--globalize-symbol", "__tcpgadget_elf_msgidx"],
        ...["--globalize-symbol", "__tcpgadget_elf_msgstr"],
        "elf_error.o",
        "elf_error_data.o",
      ],
      elfDir,
      steps,
    );
    const patched = members.map((m) => m === "elf_error.o" ? "elf_error_data.o" : m);
    await run("ar", ["rcD", "../libelf-pic.a", ...patched], elfDir, steps);

    await run(
      "gcc",
      [
        ...["-O2", "-fPIC", "-fvisibility=hidden", "-Wall", "-Wextra", "-Werror"],
        `-DELF_MSGIDX_COUNT=${msgidx / 8}`,
        `-DELF_MSGSTR_SIZE=${msgstr}`,
        ...["-c", SHIMS, "-o", "pic_shims.o"],
      ],
      work,
      steps,
    );

    await run(
      "gcc",
      [
        "-shared",
        ...["-o", "libbpf.so"],
        "-Wl,-soname,libbpf.so.1",
        "pic_shims.o",
        "-Wl,--whole-archive",
        ARCHIVES.libbpf.path,
        "-Wl,--no-whole-archive",
        "libelf-pic.a",
        ARCHIVES.zlib.path,
        // Only libbpf's API is exported; libelf and zlib stay private.
        "-Wl,--exclude-libs,libelf-pic.a:libz.a",
        `-Wl,--version-script=${MAP}`,
        // The PIE code assumes its calls bind inside the module.
        "-Wl,-Bsymbolic",
        "-Wl,-z,defs",
        "-Wl,-z,relro,-z,now",
        "-Wl,-z,noexecstack",
        "-Wl,--gc-sections",
        "-s",
      ],
      work,
      steps,
    );
    await Deno.copyFile(`${work}/libbpf.so`, output);
    return steps.map((step) => step.replaceAll(work, "$WORK"));
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

/** SONAME, NEEDED, exported symbols and flags of a shared object. */
export async function libraryFacts(path: string): Promise<LibraryFacts> {
  const dynamic = await run("readelf", ["-dW", path]);
  const needed = [...dynamic.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)]
    .map((m) => m[1]);
  const soname = dynamic.match(/\(SONAME\)\s+Library soname: \[([^\]]+)\]/)?.[1] ?? "";
  const exports: string[] = [];
  for (const line of (await run("readelf", ["--dyn-syms", "-W", path])).split("\n")) {
    const f = line.trim().split(/\s+/);
    // Num: Value Size Type Bind Vis Ndx Name
    if (f.length >= 8 && /^\d+:$/.test(f[0]) && f[6] !== "UND") {
      exports.push(`${f[3]} ${f[4]} ${f[7]}`);
    }
  }
  const stack = (await run("readelf", ["-lW", path])).split("\n")
    .find((line) => line.trim().startsWith("GNU_STACK")) ?? "";
  return {
    soname,
    needed,
    exports: exports.sort(),
    textrel: /\bTEXTREL\b/.test(dynamic),
    executableStack: /\bRWE\s/.test(stack),
  };
}

/** libbpf_version_string() of the library at `path`, through dlopen. */
export function libbpfVersionString(path: string): string {
  const library = Deno.dlopen(path, {
    libbpf_version_string: { parameters: [], result: "pointer" },
  });
  try {
    const pointer = library.symbols.libbpf_version_string();
    return pointer === null ? "" : Deno.UnsafePointerView.getCString(pointer);
  } finally {
    library.close();
  }
}

/** Problems that make a library unfit to embed; empty if none. */
export function libraryProblems(facts: LibraryFacts): string[] {
  const problems: string[] = [];
  const foreign = facts.needed.filter((name) => !GLIBC_SONAMES.includes(name));
  if (foreign.length) problems.push(`needs non-glibc libraries: ${foreign.join(", ")}`);
  if (facts.soname !== "libbpf.so.1") problems.push(`SONAME is "${facts.soname}"`);
  if (facts.textrel) problems.push("has text relocations");
  if (facts.executableStack) problems.push("asks for an executable stack");
  if (!facts.exports.some((e) => e.endsWith(" bpf_object__open_mem@@LIBBPF_0.0.6"))) {
    problems.push("does not export libbpf's versioned API");
  }
  return problems;
}

function setDifference(a: string[], b: string[]): string[] {
  const other = new Set(b);
  return a.filter((x) => !other.has(x));
}

/** Lines describing how two export lists differ; empty if they are equal. */
export function exportDifferences(
  expected: string[],
  actual: string[],
  expectedName: string,
  actualName: string,
): string[] {
  const missing = setDifference(expected, actual);
  const extra = setDifference(actual, expected);
  return [
    ...missing.map((e) => `only in ${expectedName}: ${e}`),
    ...extra.map((e) => `only in ${actualName}: ${e}`),
  ];
}

/** The version script that gives the system libbpf.so.1's exports, rendered. */
export async function mapFromSystemLibbpf(): Promise<string> {
  const facts = await libraryFacts(SYSTEM_LIBBPF);
  const byVersion = new Map<string, string[]>();
  for (const entry of facts.exports) {
    const name = entry.split(" ")[2];
    const match = name.match(/^(.+)@@(LIBBPF_[\d.]+)$/);
    if (!match) continue; // the version definitions' own ABS symbols
    byVersion.set(match[2], [...(byVersion.get(match[2]) ?? []), match[1]]);
  }
  const numeric = (v: string) => v.replace("LIBBPF_", "").split(".").map(Number);
  const versions = [...byVersion.keys()].sort((a, b) => {
    const [x, y] = [numeric(a), numeric(b)];
    for (let i = 0; i < Math.max(x.length, y.length); i++) {
      if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
    }
    return 0;
  });
  const blocks = versions.map((version, i) => {
    const symbols = byVersion.get(version)!.sort().map((s) => `\t\t${s};\n`).join("");
    const local = i === 0 ? "\tlocal: *;\n" : "";
    const parent = i === 0 ? "" : ` ${versions[i - 1]}`;
    return `${version} {\n\tglobal:\n${symbols}${local}}${parent};\n`;
  });
  return `/* Derived from ${SYSTEM_LIBBPF} by 'deno run -A bpf/libbpf/build.ts --update-map'. */\n\n${
    blocks.join("\n")
  }`;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Builds the committed library and writes manifest.json. */
export async function build(): Promise<Manifest> {
  const output = `${LIBBPF_DIR}${LIBRARY}`;
  const steps = await buildLibrary(output);
  const problems = libraryProblems(await libraryFacts(output));
  if (problems.length) throw new CommandFailed(`built ${LIBRARY}, but it ${problems.join("; ")}`);
  const bytes = await Deno.readFile(output);
  const packages = await packageVersions();
  const manifest: Manifest = {
    library: LIBRARY,
    libbpf: upstreamVersion(packages["libbpf-dev"]),
    libbpfVersionString: libbpfVersionString(output),
    sha256: sha256(bytes),
    size: bytes.length,
    packages,
    rebuild: "deno run -A bpf/libbpf/build.ts",
    steps,
  };
  await Deno.writeTextFile(`${LIBBPF_DIR}${MANIFEST}`, `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** The committed manifest. */
export async function readManifest(): Promise<Manifest> {
  return JSON.parse(await Deno.readTextFile(`${LIBBPF_DIR}${MANIFEST}`)) as Manifest;
}

/** The outcome of {@link check}. */
export interface CheckResult {
  /** Why the committed library is not what this machine rebuilds; empty if it is. */
  problems: string[];
  /** Differences that do not fail the check (bytes, package versions). */
  notes: string[];
}

/**
 * Rebuilds into a temporary directory and compares with the committed
 * library: same exports and symbol versions (also as the system
 * libbpf.so.1), same libbpf_version_string(), only glibc as NEEDED.
 */
export async function check(): Promise<CheckResult> {
  const problems: string[] = [];
  const notes: string[] = [];
  const committedPath = `${LIBBPF_DIR}${LIBRARY}`;
  const committed = await Deno.readFile(committedPath);
  const manifest = await readManifest();
  if (manifest.sha256 !== sha256(committed)) {
    problems.push(`${MANIFEST} does not describe the committed ${LIBRARY} (sha256 differs)`);
  }
  const committedFacts = await libraryFacts(committedPath);
  problems.push(...libraryProblems(committedFacts).map((p) => `committed ${LIBRARY} ${p}`));

  const scratch = await Deno.makeTempDir({ prefix: "tcpgadget-check-libbpf-" });
  try {
    const rebuiltPath = `${scratch}/${LIBRARY}`;
    await buildLibrary(rebuiltPath);
    const rebuilt = await Deno.readFile(rebuiltPath);
    const rebuiltFacts = await libraryFacts(rebuiltPath);
    problems.push(...libraryProblems(rebuiltFacts).map((p) => `rebuilt library ${p}`));
    problems.push(
      ...exportDifferences(committedFacts.exports, rebuiltFacts.exports, "committed", "rebuilt"),
    );
    if (committedFacts.needed.join() !== rebuiltFacts.needed.join()) {
      problems.push(
        `NEEDED differs: committed ${committedFacts.needed.join(", ")}, rebuilt ${
          rebuiltFacts.needed.join(", ")
        }`,
      );
    }
    const [committedVersion, rebuiltVersion] = [
      libbpfVersionString(committedPath),
      libbpfVersionString(rebuiltPath),
    ];
    if (committedVersion !== rebuiltVersion || committedVersion !== manifest.libbpfVersionString) {
      problems.push(
        `libbpf_version_string(): committed ${committedVersion}, rebuilt ${rebuiltVersion}, ` +
          `manifest ${manifest.libbpfVersionString}`,
      );
    }
    notes.push(
      sha256(rebuilt) === manifest.sha256
        ? "rebuilt library is byte-identical to the committed one"
        : `rebuilt library differs in bytes (${rebuilt.length} vs ${committed.length}), ` +
          "equivalent in exports, versions and dependencies",
    );
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }

  if (exists(SYSTEM_LIBBPF)) {
    const system = await libraryFacts(SYSTEM_LIBBPF);
    problems.push(
      ...exportDifferences(system.exports, committedFacts.exports, SYSTEM_LIBBPF, "committed"),
    );
  } else {
    notes.push(`${SYSTEM_LIBBPF} not installed: exports not compared with it`);
  }
  const installed = await packageVersions(Object.keys(manifest.packages));
  for (const [name, version] of Object.entries(manifest.packages)) {
    if (installed[name] !== version) {
      notes.push(`${name}: built with ${version}, installed here ${installed[name] || "none"}`);
    }
  }
  return { problems, notes };
}

if (import.meta.main) {
  try {
    if (Deno.args.includes("--update-map")) {
      await Deno.writeTextFile(`${LIBBPF_DIR}${MAP}`, await mapFromSystemLibbpf());
      console.log(`wrote bpf/libbpf/${MAP} from ${SYSTEM_LIBBPF}`);
    } else if (Deno.args.includes("--check")) {
      const { problems, notes } = await check();
      for (const note of notes) console.log(`note: ${note}`);
      if (problems.length) {
        for (const problem of problems) console.error(problem);
        console.error(
          `bpf/libbpf/${LIBRARY} is not what this machine builds: run 'deno run -A bpf/libbpf/build.ts' and commit the result`,
        );
        Deno.exit(1);
      }
      console.log(`bpf/libbpf/${LIBRARY} is equivalent to a rebuild`);
    } else {
      const manifest = await build();
      console.log(
        `built bpf/libbpf/${LIBRARY}: libbpf ${manifest.libbpf}, ${manifest.size} bytes, sha256 ${manifest.sha256}`,
      );
    }
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    Deno.exit(1);
  }
}
