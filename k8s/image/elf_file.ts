/**
 * What an ELF program or shared library needs to be loaded: its dynamic
 * loader (PT_INTERP) and the libraries it names (DT_NEEDED), read from its
 * program headers and dynamic section. 64-bit little-endian only (x86-64,
 * AArch64): anything else is said to be unsupported. The files come from
 * this machine's library directories, so every offset, size and string is
 * checked against the file before it is used.
 *
 * @module
 */

import { TcpgadgetError } from "../../core/errors.ts";

/** What an ELF file needs to be loaded. */
export interface ElfLinking {
  /** e_machine: 62 is x86-64, 183 AArch64. */
  machine: number;
  /** PT_INTERP: the loader the kernel starts first (none in a library or a static program). */
  interpreter?: string;
  /** DT_NEEDED, in the file's order. */
  needed: string[];
}

/** The file is not an ELF file tcpgadget can read (not ELF, 32-bit, big-endian, damaged). */
export class UnsupportedElfError extends TcpgadgetError {
  constructor(message: string) {
    super(message);
    this.name = "UnsupportedElfError";
  }
}

/** Reads `length` bytes at `offset`; fewer only where the file ends. */
export type ReadAt = (offset: number, length: number) => Uint8Array;

/** e_machine of x86-64. */
export const EM_X86_64 = 62;
/** e_machine of AArch64. */
export const EM_AARCH64 = 183;

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_STRSZ = 10n;
const ET_EXEC = 2;
const ET_DYN = 3;
// Sizes of the 64-bit ELF header, program header and dynamic entry.
const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const DYN_SIZE = 16;
// Beyond these a file is damaged or hostile, not a real program.
const MAX_NAME = 4096;
const MAX_DYNAMIC_ENTRIES = 1 << 16;

/**
 * Reads the loader and needed libraries of the ELF file that `read` gives
 * (`size` bytes long); `name` is how errors name it. Throws
 * {@link UnsupportedElfError} if it is not a 64-bit little-endian ELF
 * executable or shared object, or is damaged.
 *
 * @example
 * ```ts
 * import { elfLinking } from "./elf_file.ts";
 * import assert from "node:assert/strict";
 * // The smallest such file: an ELF header with no program headers.
 * const header = new Uint8Array(64);
 * header.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
 * header[16] = 3; // ET_DYN
 * header[18] = 62; // x86-64
 * const read = (offset: number, length: number) => header.slice(offset, offset + length);
 * assert.deepEqual(elfLinking(read, 64, "tiny"), { machine: 62, needed: [] });
 * header[4] = 1; // 32-bit
 * assert.throws(() => elfLinking(read, 64, "tiny"), /tiny: 32-bit ELF is not supported/);
 * ```
 */
export function elfLinking(read: ReadAt, size: number, name: string): ElfLinking {
  const damaged = (why: string) => new UnsupportedElfError(`${name}: damaged ELF file (${why})`);
  /** `length` bytes at `offset`, all inside the file. */
  const bytes = (offset: number, length: number, what: string): DataView => {
    if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > size) {
      throw damaged(`${what} lies outside the file`);
    }
    const got = read(offset, length);
    if (got.length !== length) throw damaged(`${what} cut short`);
    return new DataView(got.buffer, got.byteOffset, got.byteLength);
  };
  const number = (value: bigint, what: string): number => {
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw damaged(`${what} too large`);
    return Number(value);
  };

  if (size < 4 || bytes(0, 4, "magic").getUint32(0) !== 0x7f454c46) {
    throw new UnsupportedElfError(`${name}: not an ELF file`);
  }
  if (size < EHDR_SIZE) throw damaged("shorter than an ELF header");
  const header = bytes(0, EHDR_SIZE, "ELF header");
  if (header.getUint8(4) !== 2) {
    throw new UnsupportedElfError(
      `${name}: 32-bit ELF is not supported (only 64-bit little-endian)`,
    );
  }
  if (header.getUint8(5) !== 1) {
    throw new UnsupportedElfError(
      `${name}: big-endian ELF is not supported (only 64-bit little-endian)`,
    );
  }
  const type = header.getUint16(16, true);
  if (type !== ET_EXEC && type !== ET_DYN) {
    throw new UnsupportedElfError(`${name}: not an ELF executable or shared library`);
  }
  const machine = header.getUint16(18, true);
  const phoff = number(header.getBigUint64(32, true), "program header offset");
  const phentsize = header.getUint16(54, true);
  const phnum = header.getUint16(56, true);
  if (phnum > 0 && phentsize < PHDR_SIZE) throw damaged(`program header size ${phentsize}`);
  // 0xffff: the count is elsewhere (a section header); no real program has that many.
  if (phnum === 0xffff) throw damaged("too many program headers");

  interface Segment {
    type: number;
    offset: number;
    vaddr: bigint;
    filesz: number;
  }
  const segments: Segment[] = [];
  const table = bytes(phoff, phnum * phentsize, "program headers");
  for (let i = 0; i < phnum; i++) {
    const at = i * phentsize;
    segments.push({
      type: table.getUint32(at, true),
      offset: number(table.getBigUint64(at + 8, true), "segment offset"),
      vaddr: table.getBigUint64(at + 16, true),
      filesz: number(table.getBigUint64(at + 32, true), "segment size"),
    });
  }

  const linking: ElfLinking = { machine, needed: [] };
  const interp = segments.find((segment) => segment.type === PT_INTERP);
  if (interp) {
    linking.interpreter = cString(
      bytes(interp.offset, Math.min(interp.filesz, MAX_NAME), "PT_INTERP"),
      0,
      () => damaged("PT_INTERP is not a path"),
    );
    if (!linking.interpreter.startsWith("/")) throw damaged("PT_INTERP is not a path");
  }

  const dynamic = segments.find((segment) => segment.type === PT_DYNAMIC);
  if (!dynamic) return linking;
  const count = Math.min(Math.floor(dynamic.filesz / DYN_SIZE), MAX_DYNAMIC_ENTRIES);
  const entries = bytes(dynamic.offset, count * DYN_SIZE, "dynamic section");
  const neededOffsets: bigint[] = [];
  let strtab: bigint | undefined;
  let strsz: bigint | undefined;
  for (let i = 0; i < count; i++) {
    const tag = entries.getBigInt64(i * DYN_SIZE, true);
    const value = entries.getBigUint64(i * DYN_SIZE + 8, true);
    if (tag === DT_NULL) break;
    if (tag === DT_NEEDED) neededOffsets.push(value);
    else if (tag === DT_STRTAB) strtab = value;
    else if (tag === DT_STRSZ) strsz = value;
  }
  if (neededOffsets.length === 0) return linking;
  if (strtab === undefined) throw damaged("DT_NEEDED without DT_STRTAB");
  // DT_STRTAB is an address in memory: the file offset is where a loaded
  // segment (PT_LOAD) that holds it comes from.
  const load = segments.find((segment) =>
    segment.type === PT_LOAD && segment.vaddr <= strtab &&
    strtab < segment.vaddr + BigInt(segment.filesz)
  );
  if (!load) throw damaged("DT_STRTAB is in no loaded segment");
  const strtabOffset = number(strtab - load.vaddr, "DT_STRTAB") + load.offset;
  const strtabEnd = Math.min(
    load.offset + load.filesz,
    strsz === undefined ? size : strtabOffset + number(strsz, "DT_STRSZ"),
    size,
  );
  for (const offset of neededOffsets) {
    const start = strtabOffset + number(offset, "DT_NEEDED");
    if (start >= strtabEnd) throw damaged("DT_NEEDED outside the string table");
    const name = cString(
      bytes(start, Math.min(strtabEnd - start, MAX_NAME), "DT_NEEDED"),
      0,
      () => damaged("DT_NEEDED is not a name"),
    );
    linking.needed.push(name);
  }
  return linking;
}

/** The NUL-terminated, non-empty string at `at`; `bad()` if there is none. */
function cString(view: DataView, at: number, bad: () => Error): string {
  const bytes = new Uint8Array(view.buffer, view.byteOffset + at, view.byteLength - at);
  const end = bytes.indexOf(0);
  if (end <= 0) throw bad();
  return new TextDecoder("utf-8", { fatal: false }).decode(bytes.subarray(0, end));
}

/** {@link elfLinking} of bytes in memory (the embedded libbpf). */
export function elfLinkingOfBytes(bytes: Uint8Array, name: string): ElfLinking {
  return elfLinking(
    (offset, length) => bytes.subarray(offset, offset + length),
    bytes.length,
    name,
  );
}

/** {@link elfLinking} of a file, reading only its headers. */
export function elfLinkingOfFile(path: string): ElfLinking {
  using file = Deno.openSync(path);
  const size = file.statSync().size;
  const read: ReadAt = (offset, length) => {
    const buffer = new Uint8Array(length);
    file.seekSync(offset, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < length) {
      const n = file.readSync(buffer.subarray(filled));
      if (n === null) break;
      filled += n;
    }
    return buffer.subarray(0, filled);
  };
  return elfLinking(read, size, path);
}
