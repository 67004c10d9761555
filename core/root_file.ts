/**
 * Reading a file as another process sees it (its root directory: a
 * container's file system), safely: the path is resolved inside that root
 * (an absolute symlink in a container points into the container, not at
 * the host's files), only a regular file is read, never blocking and never
 * more than a bound. The files of a traced system are untrusted.
 *
 * @module
 */

import {
  cString,
  ENOSYS,
  errno,
  O_CLOEXEC,
  O_DIRECTORY,
  O_NOCTTY,
  O_NONBLOCK,
  O_PATH,
  O_RDONLY,
  openLibc,
} from "./libc.ts";

/** What {@link readFileInRoot} found. */
export interface RootFile {
  /** Identifies the file's content: device, inode, size and modification time. */
  identity: string;
  /** Its first `maxBytes` bytes; absent if its identity was `knownIdentity`. */
  bytes?: Uint8Array;
}

const SYS_OPENAT2 = 437; // the same on x86_64 and arm64
const RESOLVE_NO_MAGICLINKS = 0x02;
const RESOLVE_IN_ROOT = 0x10;

/**
 * Reads `path` (absolute) inside the root directory `root` (such as
 * `/proc/PID/root`). Undefined if it is missing or not a regular file.
 * With `knownIdentity`, the content is not read again when unchanged.
 *
 * @example
 * ```ts
 * import { readFileInRoot } from "./root_file.ts";
 * import assert from "node:assert/strict";
 * const hosts = readFileInRoot("/proc/self/root", "/etc/hosts", { maxBytes: 1 << 20 });
 * assert.ok(hosts?.bytes);
 * const again = readFileInRoot("/proc/self/root", "/etc/hosts", {
 *   maxBytes: 1 << 20,
 *   knownIdentity: hosts.identity,
 * });
 * assert.deepEqual(again, { identity: hosts.identity });
 * assert.equal(readFileInRoot("/proc/self/root", "/etc", { maxBytes: 10 }), undefined);
 * ```
 */
export function readFileInRoot(
  root: string,
  path: string,
  options: { maxBytes: number; knownIdentity?: string },
): RootFile | undefined {
  const fd = openInRoot(root, path);
  if (fd < 0) return undefined;
  const libc = openLibc();
  try {
    let info: Deno.FileInfo;
    try {
      // The opened file itself, through its descriptor's magic link.
      info = Deno.statSync(`/proc/self/fd/${fd}`);
    } catch {
      return undefined;
    }
    if (!info.isFile) return undefined;
    const identity = `${info.dev}:${info.ino}:${info.size}:${info.mtime?.getTime()}`;
    if (identity === options.knownIdentity) return { identity };
    const buffer = new Uint8Array(Math.min(options.maxBytes, info.size + 1));
    let length = 0;
    while (length < buffer.length) {
      const read = Number(
        libc.read(fd, buffer.subarray(length), BigInt(buffer.length - length)),
      );
      if (read <= 0) break;
      length += read;
    }
    return { identity, bytes: buffer.subarray(0, length) };
  } finally {
    libc.close(fd);
  }
}

/** A read-only, non-blocking descriptor of `path` inside `root`, or -1. */
function openInRoot(root: string, path: string): number {
  const libc = openLibc();
  const flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
  const dir = libc.open(cString(root), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  try {
    // struct open_how { __u64 flags; __u64 mode; __u64 resolve; }
    const how = new BigUint64Array([
      BigInt(flags),
      0n,
      BigInt(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS),
    ]);
    const fd = Number(
      libc.syscall(
        BigInt(SYS_OPENAT2),
        BigInt(dir),
        cString(path),
        new Uint8Array(how.buffer),
        BigInt(how.byteLength),
      ),
    );
    if (fd >= 0 || errno() !== ENOSYS) return fd;
  } finally {
    libc.close(dir);
  }
  // Before Linux 5.6: resolved from our root if the path holds an
  // absolute symlink, but still bounded and never blocking.
  return libc.open(cString(`${root}${path}`), flags);
}
