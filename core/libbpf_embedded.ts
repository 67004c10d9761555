/**
 * Where libbpf is loaded from: the copy embedded in tcpgadget, so nodes need
 * no libbpf, libelf or zlib of their own.
 *
 * The embedded library (bpf/libbpf/, built by bpf/libbpf/build.ts) has
 * libelf and zlib linked in statically and needs only glibc, so loading it
 * resolves nothing from the host's libraries. It is a module import, so
 * `deno compile` embeds it and `deno run` takes the same path. dlopen needs
 * a file: the bytes go to an anonymous memory file (memfd) opened as
 * `/proc/self/fd/N`, or, where that is impossible, to a private temporary
 * directory removed right after dlopen.
 *
 * Environment:
 * - `TCPGADGET_LIBBPF=/path`: load that library instead (debugging).
 * - `TCPGADGET_NO_MEMFD=1`: skip the memfd, use the temporary file.
 *
 * @module
 */

import libbpfBytes from "../bpf/libbpf/libbpf-x86_64.so" with { type: "bytes" };
import manifest from "../bpf/libbpf/manifest.json" with { type: "json" };
import {
  cString,
  EINTR,
  EINVAL,
  errno,
  MAP_PRIVATE,
  mapFailed,
  MFD_CLOEXEC,
  MFD_EXEC,
  O_CLOEXEC,
  O_RDONLY,
  openLibc,
  PROT_EXEC,
  PROT_READ,
  strerror,
} from "./libc.ts";
import { errorLine, TcpgadgetError } from "./errors.ts";

/** A library path for dlopen, how to describe it, and what to undo after. */
export interface ResolvedLibrary {
  path: string;
  source: string;
  /** Run right after dlopen, whether it succeeded or not. */
  cleanup: () => void;
}

/** The embedded libbpf shared object (x86_64). */
export const EMBEDDED_LIBBPF: Uint8Array = libbpfBytes;

/** The libbpf release embedded, e.g. "1.1.2". */
export const EMBEDDED_LIBBPF_VERSION: string = manifest.libbpf;

/** The memfd's name, as /proc/PID/maps shows it: "/memfd:tcpgadget-libbpf (deleted)". */
export const MEMFD_NAME = "tcpgadget-libbpf";

/** Prefix of the temporary directories of the fallback. */
export const TEMP_PREFIX = "tcpgadget-libbpf-";

/**
 * The library to dlopen: `TCPGADGET_LIBBPF` if set, else the embedded
 * libbpf in a memfd or, failing that, in a temporary file.
 */
export function resolveLibbpf(): ResolvedLibrary {
  const override = Deno.env.get("TCPGADGET_LIBBPF");
  if (override) {
    return { path: override, source: `${override} (TCPGADGET_LIBBPF)`, cleanup: () => {} };
  }
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    // Only an x86_64 build is embedded; elsewhere the host must provide one.
    return {
      path: "libbpf.so.1",
      source: `system libbpf.so.1 (no embedded libbpf for ${Deno.build.arch})`,
      cleanup: () => {},
    };
  }
  const label = `embedded libbpf ${EMBEDDED_LIBBPF_VERSION}`;
  let memfdFailure = "disabled by TCPGADGET_NO_MEMFD";
  if (["", "0"].includes(Deno.env.get("TCPGADGET_NO_MEMFD") ?? "")) {
    try {
      return { ...inMemfd(EMBEDDED_LIBBPF), source: `${label} (memfd)` };
    } catch (error) {
      memfdFailure = errorLine(error);
    }
  }
  try {
    return {
      ...inTemporaryFile(EMBEDDED_LIBBPF),
      source: `${label} (temporary file; memfd ${memfdFailure})`,
    };
  } catch (error) {
    throw new TcpgadgetError(
      `cannot stage the ${label} for loading: memfd ${memfdFailure}; ${errorLine(error)}`,
      { cause: error },
    );
  }
}

/** The bytes in a memfd; the path is valid until cleanup closes it. */
function inMemfd(bytes: Uint8Array): { path: string; cleanup: () => void } {
  const libc = openLibc();
  const name = cString(MEMFD_NAME);
  // MFD_EXEC: where vm.memfd_noexec makes memfds non-executable by default.
  let fd = libc.memfd_create(name, MFD_CLOEXEC | MFD_EXEC);
  if (fd < 0 && errno() === EINVAL) fd = libc.memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) throw new Error(`memfd_create: ${strerror(errno())}`);
  try {
    writeAll(fd, bytes);
    assertMappableAsCode(fd);
    const path = `/proc/self/fd/${fd}`;
    Deno.statSync(path); // dlopen needs /proc
    // The mapping dlopen makes keeps the memory alive; the fd is not needed.
    return { path, cleanup: () => libc.close(fd) };
  } catch (error) {
    libc.close(fd);
    throw error;
  }
}

function writeAll(fd: number, bytes: Uint8Array): void {
  const libc = openLibc();
  let offset = 0;
  while (offset < bytes.length) {
    const rest = bytes.subarray(offset);
    const written = Number(libc.write(fd, rest, BigInt(rest.length)));
    if (written < 0) {
      const err = errno();
      if (err === EINTR) continue;
      throw new Error(`write: ${strerror(err)}`);
    }
    offset += written;
  }
}

/**
 * Throws unless the file maps executable, as dlopen will map it: a noexec
 * mount or a noexec-sealed memfd fails here with a clear reason instead of
 * in dlopen.
 */
function assertMappableAsCode(fd: number): void {
  const libc = openLibc();
  const length = 4096n;
  const pointer = libc.mmap(null, length, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0n);
  if (mapFailed(pointer)) throw new Error(`cannot map it executable: ${strerror(errno())}`);
  libc.munmap(pointer, length);
}

/**
 * The bytes in a new mode-0700 directory under the first temporary
 * directory that allows executable mappings; cleanup removes the directory.
 */
function inTemporaryFile(bytes: Uint8Array): { path: string; cleanup: () => void } {
  const bases = [...new Set([Deno.env.get("TMPDIR"), "/tmp", "/var/tmp", "/dev/shm"])]
    .filter((base): base is string => Boolean(base));
  const failures: string[] = [];
  for (const base of bases) {
    let dir: string;
    try {
      dir = Deno.makeTempDirSync({ dir: base, prefix: TEMP_PREFIX });
    } catch (error) {
      failures.push(`${base}: ${errorLine(error)}`);
      continue;
    }
    const path = `${dir}/libbpf.so.1`;
    try {
      Deno.writeFileSync(path, bytes, { mode: 0o700 });
      const libc = openLibc();
      const fd = libc.open(cString(path), O_RDONLY | O_CLOEXEC);
      if (fd < 0) throw new Error(`open: ${strerror(errno())}`);
      try {
        assertMappableAsCode(fd);
      } finally {
        libc.close(fd);
      }
      return { path, cleanup: () => removeQuietly(dir) };
    } catch (error) {
      removeQuietly(dir);
      failures.push(`${base}: ${errorLine(error)}`);
    }
  }
  throw new Error(`no usable temporary directory (${failures.join("; ")})`);
}

function removeQuietly(dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch {
    // already gone; nothing else to do
  }
}
