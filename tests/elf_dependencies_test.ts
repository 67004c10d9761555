/**
 * The ELF reader and the library search of the agent image, against real
 * files and real tools: what `readelf` says of this machine's programs and
 * libraries, what `ldd` (the loader itself) resolves; and files that are
 * not what they claim (not ELF, 32-bit, big-endian, cut short, pointing
 * outside themselves), a library of the wrong kind before the right one,
 * and a missing library.
 */

import { assert, assertEquals, assertThrows } from "./helpers/assert.ts";
import { hasCommand } from "./helpers/privileges.ts";
import { TcpgadgetError } from "../core/errors.ts";
import { EMBEDDED_LIBBPF } from "../core/libbpf_embedded.ts";
import { elfDependencies, libraryDirectories } from "../k8s/image/elf_dependencies.ts";
import {
  elfLinkingOfBytes,
  elfLinkingOfFile,
  EM_X86_64,
  UnsupportedElfError,
} from "../k8s/image/elf_file.ts";

const FILE = "elf_dependencies_test.ts";
const decoder = new TextDecoder();
const x86 = Deno.build.arch === "x86_64";
const readelfSkip = !hasCommand("readelf")
  ? "readelf (binutils) not installed"
  : !x86
  ? "not x86-64"
  : undefined;
if (readelfSkip) console.warn(`SKIPPED (${FILE}, readelf checks): ${readelfSkip}`);
const lddSkip = !hasCommand("ldd") ? "ldd not installed" : !x86 ? "not x86-64" : undefined;
if (lddSkip) console.warn(`SKIPPED (${FILE}, ldd checks): ${lddSkip}`);

function output(command: string, args: string[]): string {
  const result = new Deno.Command(command, { args, env: { LC_ALL: "C" } }).outputSync();
  assert(result.success, decoder.decode(result.stderr));
  return decoder.decode(result.stdout);
}

/** What readelf says: the loader (PT_INTERP) and the needed libraries. */
function readelf(path: string): { interpreter?: string; needed: string[] } {
  const interpreter = output("readelf", ["-lW", path])
    .match(/\[Requesting program interpreter: ([^\]]+)\]/)?.[1];
  const needed = [
    ...output("readelf", ["-dW", path]).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g),
  ]
    .map((match) => match[1]);
  return interpreter === undefined ? { needed } : { interpreter, needed };
}

/** The programs and libraries of this machine the reader is compared on. */
const SAMPLES = [
  Deno.execPath(),
  "/usr/bin/ls",
  "/usr/bin/python3",
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/lib64/ld-linux-x86-64.so.2",
  "/lib/x86_64-linux-gnu/libselinux.so.1",
].filter((path) => {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
});

Deno.test({
  name: "elf: the loader and needed libraries are readelf's, for this machine's programs",
  ignore: readelfSkip !== undefined,
  fn: () => {
    assert(SAMPLES.length >= 4, `too few samples: ${SAMPLES}`);
    for (const path of SAMPLES) {
      const { machine, ...linking } = elfLinkingOfFile(path);
      assertEquals(machine, EM_X86_64, path);
      assertEquals(linking, readelf(Deno.realPathSync(path)), path);
    }
    // The embedded libbpf, read from memory.
    const dir = Deno.makeTempDirSync();
    try {
      Deno.writeFileSync(`${dir}/libbpf.so`, EMBEDDED_LIBBPF);
      const { machine: _, ...linking } = elfLinkingOfBytes(EMBEDDED_LIBBPF, "libbpf");
      assertEquals(linking, readelf(`${dir}/libbpf.so`));
      assertEquals(linking, { needed: ["libc.so.6", "ld-linux-x86-64.so.2"] });
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "elf: the libraries found are those the loader finds (ldd), recursively",
  ignore: lddSkip !== undefined,
  fn: () => {
    for (const path of [Deno.execPath(), "/usr/bin/ls", "/usr/bin/python3"]) {
      const found = elfDependencies([{ name: path, linking: elfLinkingOfFile(path) }]);
      const ldd = output("ldd", [path]);
      const resolved = [...ldd.matchAll(/^\s*(\S+) => (\S+)/gm)].map((match) => match[2]);
      const loader = ldd.match(/^\s*(\/\S+) \(0x/m)?.[1];
      assertEquals(found.interpreter?.path, loader, path);
      assertEquals(found.interpreter?.source, Deno.realPathSync(loader!));
      // Besides what ldd lists, the loader under the name libc needs it by.
      assertEquals(
        found.libraries.map((library) => library.path),
        [...resolved, "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"].sort(),
        path,
      );
      for (const library of found.libraries) {
        assertEquals(library.source, Deno.realPathSync(library.path));
        assert(Deno.lstatSync(library.source).isFile);
      }
    }
    assertEquals(libraryDirectories(EM_X86_64).slice(0, 2), [
      "/lib/x86_64-linux-gnu",
      "/usr/lib/x86_64-linux-gnu",
    ]);
  },
});

/** A 64-byte ELF header (x86-64 shared object, no program headers), to be spoiled. */
function header(): Uint8Array {
  const bytes = new Uint8Array(64);
  bytes.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  bytes[16] = 3;
  bytes[18] = EM_X86_64;
  return bytes;
}

Deno.test("elf: files that are not 64-bit little-endian ELF, or are damaged, are said so", () => {
  const check = (bytes: Uint8Array, message: string) =>
    assertThrows(() => elfLinkingOfBytes(bytes, "f"), UnsupportedElfError, message);
  assertEquals(elfLinkingOfBytes(header(), "f"), { machine: EM_X86_64, needed: [] });
  check(new TextEncoder().encode("#!/bin/sh\necho hi\n"), "f: not an ELF file");
  check(new Uint8Array(0), "f: not an ELF file");
  check(header().subarray(0, 40), "f: damaged ELF file (shorter than an ELF header)");
  let bytes = header();
  bytes[4] = 1;
  check(bytes, "f: 32-bit ELF is not supported (only 64-bit little-endian)");
  bytes = header();
  bytes[5] = 2;
  check(bytes, "f: big-endian ELF is not supported (only 64-bit little-endian)");
  bytes = header();
  bytes[16] = 1; // ET_REL: an object file
  check(bytes, "f: not an ELF executable or shared library");
  // Program headers said to be past the end of the file.
  bytes = header();
  new DataView(bytes.buffer).setBigUint64(32, 1n << 40n, true);
  new DataView(bytes.buffer).setUint16(54, 56, true);
  new DataView(bytes.buffer).setUint16(56, 3, true);
  check(bytes, "f: damaged ELF file (program headers lies outside the file)");
  // A real library cut short: its dynamic section is gone.
  const libc = Deno.readFileSync(Deno.realPathSync("/lib/x86_64-linux-gnu/libc.so.6"));
  assertThrows(
    () => elfLinkingOfBytes(libc.subarray(0, 4096), "libc"),
    UnsupportedElfError,
    /^libc: damaged ELF file \(/,
  );
});

Deno.test("elf: a library of another kind is passed over, a symlink followed, a missing one named", () => {
  const dir = Deno.makeTempDirSync({ prefix: "tcpgadget-elf-test-" });
  try {
    const [wrong, right, empty] = ["wrong", "right", "empty"].map((name) => `${dir}/${name}`);
    for (const path of [wrong, right, empty]) Deno.mkdirSync(path);
    // First in the search: a 32-bit libc.so.6 and a text file named libm.so.6.
    const i386 = header();
    i386[4] = 1;
    Deno.writeFileSync(`${wrong}/libc.so.6`, i386);
    Deno.writeTextFileSync(`${wrong}/libm.so.6`, "not a library");
    // Then the real ones, as symlinks (Debian's /lib is one too).
    const libc = Deno.realPathSync("/lib/x86_64-linux-gnu/libc.so.6");
    const libm = Deno.realPathSync("/lib/x86_64-linux-gnu/libm.so.6");
    const loader = Deno.realPathSync("/lib64/ld-linux-x86-64.so.2");
    Deno.symlinkSync(libc, `${right}/libc.so.6`);
    Deno.symlinkSync(libm, `${right}/libm.so.6`);
    Deno.symlinkSync(loader, `${right}/ld-linux-x86-64.so.2`);
    const program = {
      name: "prog",
      linking: {
        machine: EM_X86_64,
        interpreter: "/lib64/ld-linux-x86-64.so.2",
        needed: ["libm.so.6", "libc.so.6"],
      },
    };
    assertEquals(elfDependencies([program], { directories: [wrong, right] }), {
      interpreter: { path: "/lib64/ld-linux-x86-64.so.2", source: loader },
      libraries: [
        { path: `${right}/ld-linux-x86-64.so.2`, source: loader },
        { path: `${right}/libc.so.6`, source: libc },
        { path: `${right}/libm.so.6`, source: libm },
      ],
    });
    assertThrows(
      () => elfDependencies([program], { directories: [wrong, empty] }),
      TcpgadgetError,
      `library libm.so.6 (needed by prog) not found in ${wrong}, ${empty}`,
    );
    // What libc needs, missing: named with who needs it.
    Deno.symlinkSync(libc, `${empty}/libc.so.6`);
    Deno.symlinkSync(libm, `${empty}/libm.so.6`);
    assertThrows(
      () => elfDependencies([program], { directories: [empty] }),
      TcpgadgetError,
      `library ld-linux-x86-64.so.2 (needed by ${empty}/libm.so.6) not found in ${empty}`,
    );
    assertThrows(
      () =>
        elfDependencies([{ name: "p", linking: { machine: EM_X86_64, needed: ["../libc.so.6"] } }]),
      UnsupportedElfError,
      `p needs "../libc.so.6": only library names are supported`,
    );
    assertThrows(
      () =>
        elfDependencies([
          program,
          { name: "arm", linking: { machine: 183, needed: [] } },
        ]),
      UnsupportedElfError,
      "arm: ELF machine 183, not 62 as prog",
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
