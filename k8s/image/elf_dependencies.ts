/**
 * The files an ELF program needs beside itself to run in an otherwise
 * empty root: its dynamic loader, and every shared library it needs,
 * directly or through another library, found as the loader finds them with
 * no /etc/ld.so.cache and no LD_LIBRARY_PATH: by name (DT_NEEDED) in the
 * standard library directories, skipping a file of another architecture.
 * Each is put where it was found here, which that loader searches too; its
 * content is the file the path leads to (symlinks resolved).
 *
 * @module
 */

import { TcpgadgetError } from "../../core/errors.ts";
import {
  type ElfLinking,
  elfLinkingOfFile,
  EM_AARCH64,
  EM_X86_64,
  UnsupportedElfError,
} from "./elf_file.ts";

/** A file of the image: where it goes there, and the file here it is a copy of. */
export interface ImageFile {
  /** Absolute path in the image. */
  path: string;
  /** The regular file here (symlinks resolved). */
  source: string;
}

/** A program or library whose needs are to be found. */
export interface ElfProgram {
  /** How errors name it. */
  name: string;
  linking: ElfLinking;
}

/** The loader and the libraries some programs need, each path once (libraries sorted). */
export interface ElfDependencies {
  /** The programs' dynamic loader (PT_INTERP), if they have one. */
  interpreter?: ImageFile;
  libraries: ImageFile[];
}

// Beyond this many libraries something is wrong (deno needs 7).
const MAX_LIBRARIES = 512;

/**
 * The Debian multiarch name of an e_machine (what library directories are
 * named after).
 *
 * @example
 * ```ts
 * import { multiarch } from "./elf_dependencies.ts";
 * import assert from "node:assert/strict";
 * assert.equal(multiarch(62), "x86_64-linux-gnu");
 * assert.equal(multiarch(183), "aarch64-linux-gnu");
 * assert.throws(() => multiarch(40), /machine 40/);
 * ```
 */
export function multiarch(machine: number): string {
  if (machine === EM_X86_64) return "x86_64-linux-gnu";
  if (machine === EM_AARCH64) return "aarch64-linux-gnu";
  throw new UnsupportedElfError(`ELF machine ${machine} is not supported (only x86-64, AArch64)`);
}

/**
 * Where the loader looks for a library by default, in its order: the
 * multiarch directories (Debian, Ubuntu), /lib64 and /usr/lib64 (Fedora,
 * RHEL), then /lib and /usr/lib.
 *
 * @example
 * ```ts
 * import { libraryDirectories } from "./elf_dependencies.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(libraryDirectories(62), [
 *   "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
 * ]);
 * ```
 */
export function libraryDirectories(machine: number): string[] {
  const triplet = multiarch(machine);
  return [`/lib/${triplet}`, `/usr/lib/${triplet}`, "/lib64", "/usr/lib64", "/lib", "/usr/lib"];
}

/**
 * The loader and every library that `programs` need, found recursively.
 * `directories` replaces the standard ones (tests). Throws a
 * TcpgadgetError naming the library and who needs it when one is missing,
 * and {@link UnsupportedElfError} for a program or loader that cannot be
 * read.
 */
export function elfDependencies(
  programs: ElfProgram[],
  options: { directories?: string[] } = {},
): ElfDependencies {
  if (programs.length === 0) return { libraries: [] };
  const machine = programs[0].linking.machine;
  for (const program of programs) {
    if (program.linking.machine !== machine) {
      throw new UnsupportedElfError(
        `${program.name}: ELF machine ${program.linking.machine}, not ${machine} as ${
          programs[0].name
        }`,
      );
    }
  }
  const directories = options.directories ?? libraryDirectories(machine);
  const result: ElfDependencies = { libraries: [] };
  // Names to find, with who needs them (for errors), first found first.
  const queue: { name: string; by: string }[] = [];
  const seen = new Set<string>();
  const want = (linking: ElfLinking, by: string) => {
    for (const name of linking.needed) {
      if (!seen.has(name)) {
        seen.add(name);
        queue.push({ name, by });
      }
    }
  };

  const interpreters = new Set(
    programs.flatMap((program) => program.linking.interpreter ?? []),
  );
  if (interpreters.size > 1) {
    throw new UnsupportedElfError(
      `the programs need different loaders: ${[...interpreters].join(", ")}`,
    );
  }
  const [interpreter] = interpreters;
  if (interpreter !== undefined) {
    const source = realFile(interpreter, `the loader ${interpreter}`);
    const linking = elfLinkingOfFile(source);
    if (linking.machine !== machine) {
      throw new UnsupportedElfError(
        `${interpreter}: ELF machine ${linking.machine}, not ${machine}`,
      );
    }
    result.interpreter = { path: interpreter, source };
    want(linking, interpreter);
  }
  for (const program of programs) want(program.linking, program.name);

  for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
    const { name, by } = next;
    if (name.includes("/") || name === "." || name === "..") {
      throw new UnsupportedElfError(`${by} needs "${name}": only library names are supported`);
    }
    const found = findLibrary(name, directories, machine);
    if (!found) {
      throw new TcpgadgetError(
        `library ${name} (needed by ${by}) not found in ${directories.join(", ")}`,
      );
    }
    // Where the loader is also where libraries are (/lib64 on Fedora): once.
    if (found.path !== result.interpreter?.path) {
      result.libraries.push({ path: found.path, source: found.source });
    }
    if (result.libraries.length > MAX_LIBRARIES) {
      throw new TcpgadgetError(`more than ${MAX_LIBRARIES} libraries needed: giving up`);
    }
    want(found.linking, found.path);
  }
  result.libraries.sort((a, b) => a.path < b.path ? -1 : a.path > b.path ? 1 : 0);
  return result;
}

/** The first `name` in `directories` that is a 64-bit ELF of `machine`, as the loader picks. */
function findLibrary(
  name: string,
  directories: string[],
  machine: number,
): { path: string; source: string; linking: ElfLinking } | undefined {
  for (const directory of directories) {
    const path = `${directory}/${name}`;
    let source: string;
    try {
      source = Deno.realPathSync(path);
      if (!Deno.statSync(source).isFile) continue;
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) continue;
      throw new TcpgadgetError(`cannot read ${path}: ${(error as Error).message}`);
    }
    let linking: ElfLinking;
    try {
      linking = elfLinkingOfFile(source);
    } catch (error) {
      // The loader, too, passes over a file it cannot load (another
      // architecture's, 32-bit, not ELF) and looks further.
      if (error instanceof UnsupportedElfError) continue;
      throw new TcpgadgetError(`cannot read ${path}: ${(error as Error).message}`);
    }
    if (linking.machine === machine) return { path, source, linking };
  }
  return undefined;
}

/** The regular file `path` leads to; `what` names it in errors. */
function realFile(path: string, what: string): string {
  try {
    const source = Deno.realPathSync(path);
    if (Deno.statSync(source).isFile) return source;
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) {
      throw new TcpgadgetError(`cannot read ${what}: ${(error as Error).message}`);
    }
  }
  throw new TcpgadgetError(`${what} not found`);
}
